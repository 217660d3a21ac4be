"""The chat model behind llm mode and `rag enrich` (any OpenAI-compatible endpoint, through
langchain-openai, the `llm` extra), and the prompts it is given (rag/prompts/*.md)."""

from __future__ import annotations

from typing import Any

from langchain_core.language_models import BaseChatModel

from rag.errors import MissingExtraError
from rag.settings import PACKAGE_ROOT, Settings

PROMPTS = PACKAGE_ROOT / "prompts"


def load_prompt(name: str) -> str:
    return (PROMPTS / f"{name}.md").read_text(encoding="utf-8")


def build_chat_model(settings: Settings) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingExtraError("llm mode", "llm", "langchain-openai") from exc
    # No retries: a retry repeats the wait, and the extractive answer is ready at once.
    kwargs: dict[str, Any] = {"model": settings.llm_model, "temperature": 0, "streaming": True,
                              "timeout": settings.llm_timeout, "max_retries": 0}
    if settings.llm_base_url:
        kwargs["base_url"] = settings.llm_base_url
    # Local servers (Ollama, vLLM) accept any key; the client insists on one.
    kwargs["api_key"] = settings.llm_api_key or "not-needed"
    return ChatOpenAI(**kwargs)
