"""The one settings object, built at the edge from RAG_* variables and CLI flags."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parent

# Calibrated on the dev split: with the scope checks (rag/qa/scope.py) doing most of the
# work, F1 on dev was 0.95 at 0.0-0.05, 0.92 at 0.1, 0.90 at 0.2, 0.88 at 0.3.
DEFAULT_ABSTAIN_THRESHOLD = 0.05
# The learned stage's probability that its first clause is the answer, under which the answer
# abstains (listing the clauses as related). Chosen on the development sets (dev, blind-dev,
# stard-dev, 374 items): at 0.25, 2 of 210 right answers become abstentions and so do 11 of 110
# wrong ones (answerable items answered from a wrong first clause, or unanswerable ones); on
# the documents a user adds (local-dev/test) 3 of 9 wrong ones and no right one.
DEFAULT_ABSTAIN_CONFIDENCE = 0.25


def default_cache_dir(env: dict[str, str] | None = None) -> Path:
    """One embedding cache per user, shared by every data dir (XDG cache dir)."""
    env = dict(os.environ) if env is None else env
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "etdz-rag"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".rag")
    cache_dir: Path = field(default_factory=default_cache_dir)
    chroma_url: str = ""
    embedder: str = "e5-small"
    token_cap: int = 400
    embed_workers: int = 0  # processes embedding texts without a vector; 0 = one per core
    corpus_dir: Path = REPO_ROOT / "corpus"
    k: int = 5
    mode: str = "extractive"
    reranker: str = ""  # a sentence-transformers CrossEncoder name or path; "" = off
    abstain_threshold: float = DEFAULT_ABSTAIN_THRESHOLD
    abstain_confidence: float = DEFAULT_ABSTAIN_CONFIDENCE
    llm: str = ""  # "openai" (any OpenAI-compatible endpoint: OpenAI, vLLM, Ollama) or ""
    llm_model: str = "gpt-4o-mini"
    llm_base_url: str = ""
    llm_api_key: str = ""
    llm_max_context_tokens: int = 3000
    # Seconds without a byte from the endpoint (and for a whole reply) before the
    # extractive answer is shown instead; a local model on 2 cores answers in ~10 s.
    llm_timeout: float = 60.0
    auth_token: str = field(default="", repr=False)  # rag serve: Bearer token for the API, UI password
    rate_limit: int = 60  # rag serve: /api/ask requests per minute per client address; 0 = off
    # rag serve: web chat sessions kept in memory (each ~175 KB, least recently used
    # dropped first); Gradio's own default of 10,000 would let RSS grow by ~1.7 GB.
    ui_sessions: int = 1000
    as_of: str = ""  # YYYY-MM-DD: versions are chosen as in force on this date; "" = today
    feedback_max: int = 10_000  # rows kept in <data_dir>/feedback.sqlite3 (the oldest 👍 go first)

    @property
    def as_of_date(self) -> str:
        return self.as_of or dt.date.today().isoformat()

    @property
    def laws_manifest(self) -> Path:
        return self.corpus_dir / "laws.yaml"

    @property
    def vectors_dir(self) -> Path:
        return self.corpus_dir / "vectors"

    @property
    def documents_dir(self) -> Path:
        return self.corpus_dir / "documents"

    def with_overrides(self, **overrides: Any) -> Settings:
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


_ENV = {
    "data_dir": "RAG_DATA_DIR", "cache_dir": "RAG_CACHE_DIR", "chroma_url": "RAG_CHROMA_URL", "embedder": "RAG_EMBEDDER",
    "embed_workers": "RAG_EMBED_WORKERS", "token_cap": "RAG_TOKEN_CAP", "corpus_dir": "RAG_CORPUS_DIR", "k": "RAG_K", "mode": "RAG_MODE",
    "reranker": "RAG_RERANKER", "abstain_threshold": "RAG_ABSTAIN_THRESHOLD",
    "abstain_confidence": "RAG_ABSTAIN_CONFIDENCE", "llm": "RAG_LLM",
    "llm_model": "RAG_LLM_MODEL", "llm_base_url": "OPENAI_BASE_URL",
    "llm_api_key": "OPENAI_API_KEY", "llm_max_context_tokens": "RAG_LLM_MAX_CONTEXT_TOKENS",
    "llm_timeout": "RAG_LLM_TIMEOUT",
    "auth_token": "RAG_AUTH_TOKEN", "rate_limit": "RAG_RATE_LIMIT", "ui_sessions": "RAG_UI_SESSIONS",
    "as_of": "RAG_AS_OF", "feedback_max": "RAG_FEEDBACK_MAX",
}
ENV_DOC = {
    "RAG_DATA_DIR": "where the index, caches and remembered sources live (default .rag)",
    "RAG_CACHE_DIR": "embedding cache shared by all data dirs (default ~/.cache/etdz-rag)",
    "RAG_CHROMA_URL": "http://host:port of a Chroma server; unset = embedded store under RAG_DATA_DIR",
    "RAG_EMBEDDER": "e5-small (default, offline), st:<model or path>, hash (tests only)",
    "RAG_EMBED_WORKERS": "processes embedding texts without a shipped or cached vector (default: one per core)",
    "RAG_TOKEN_CAP": "max tokens of one chunk; longer clauses split on sentences (default 400)",
    "RAG_CORPUS_DIR": "folder with documents/ and laws.yaml (default: the repository's corpus/)",
    "RAG_K": "number of clauses retrieved (default 5)",
    "RAG_MODE": "extractive (default) or llm",
    "RAG_RERANKER": "sentence-transformers CrossEncoder for reranking; unset = off",
    "RAG_ABSTAIN_THRESHOLD": "evidence score under which the answer abstains",
    "RAG_ABSTAIN_CONFIDENCE": "probability (learned stage) that the first clause answers, under which the answer abstains (default 0.25)",
    "RAG_LLM": "openai to enable llm mode (any OpenAI-compatible server)",
    "RAG_LLM_MODEL": "model name for llm mode (default gpt-4o-mini)",
    "OPENAI_BASE_URL": "endpoint for llm mode, e.g. http://127.0.0.1:11434/v1 for Ollama",
    "OPENAI_API_KEY": "key for llm mode",
    "RAG_LLM_MAX_CONTEXT_TOKENS": "token budget of the clauses given to the model (default 3000)",
    "RAG_LLM_TIMEOUT": "seconds llm mode waits for the endpoint before showing the extractive answer (default 60)",
    "RAG_AUTH_TOKEN": "rag serve: API needs 'Authorization: Bearer <token>', the UI asks for it; needed off loopback",
    "RAG_RATE_LIMIT": "rag serve: /api/ask requests per minute per client address (default 60, 0 = off)",
    "RAG_UI_SESSIONS": "rag serve: web chat sessions kept in memory, least recently used dropped first (default 1000)",
    "RAG_AS_OF": "YYYY-MM-DD: index and cite the law versions in force on this date (default today)",
    "RAG_FEEDBACK_MAX": "feedback rows kept in the data dir; past it the oldest thumbs-up go first (default 10000)",
}


def from_env(env: dict[str, str] | None = None, **overrides: Any) -> Settings:
    env = dict(os.environ) if env is None else env
    values: dict[str, Any] = {}
    types = {f.name: f.type for f in fields(Settings)}
    for name, var in _ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        kind = types[name]
        try:
            if kind in ("int", int):
                values[name] = int(raw)
            elif kind in ("float", float):
                values[name] = float(raw)
            elif kind in ("Path", Path):
                values[name] = Path(raw)
            else:
                values[name] = raw
        except ValueError as exc:
            raise ConfigError(f"{var}={raw!r} is not a valid {kind}", hint=f"fix or unset {var}") from exc
    values.setdefault("cache_dir", default_cache_dir(env))
    settings = Settings(**values).with_overrides(**overrides)
    if settings.mode not in ("extractive", "llm"):
        raise ConfigError(f"unknown answer mode {settings.mode!r}", hint="use extractive or llm")
    if not 1 <= settings.k <= 50:
        raise ConfigError(f"k={settings.k} is out of range", hint="use a k between 1 and 50")
    if settings.ui_sessions < 1:
        raise ConfigError(f"RAG_UI_SESSIONS={settings.ui_sessions} must be at least 1",
                          hint="give the number of web chat sessions to keep, e.g. 1000")
    if not settings.llm_timeout > 0:
        raise ConfigError(f"RAG_LLM_TIMEOUT={settings.llm_timeout} must be positive",
                          hint="give the seconds llm mode waits for the endpoint, e.g. 60")
    if settings.embed_workers < 0:
        raise ConfigError(f"RAG_EMBED_WORKERS={settings.embed_workers} is negative",
                          hint="use 0 (one per core), 1 (no worker processes) or more")
    if settings.rate_limit < 0:
        raise ConfigError(f"RAG_RATE_LIMIT={settings.rate_limit} is negative", hint="use 0 (off) or a positive number")
    if settings.as_of:
        try:
            dt.date.fromisoformat(settings.as_of)
        except ValueError as exc:
            raise ConfigError(f"RAG_AS_OF={settings.as_of!r} is not a date",
                              hint="write it as YYYY-MM-DD, e.g. RAG_AS_OF=2026-01-15, or unset it") from exc
    if not 0 <= settings.abstain_confidence < 1:
        raise ConfigError(f"RAG_ABSTAIN_CONFIDENCE={settings.abstain_confidence} is not a probability",
                          hint="give a number from 0 (never abstain for it) to below 1, e.g. 0.25")
    if settings.feedback_max < 1:
        raise ConfigError(f"RAG_FEEDBACK_MAX={settings.feedback_max} must be at least 1",
                          hint="give the number of feedback rows to keep, e.g. 10000")
    if settings.token_cap < 50:
        raise ConfigError(f"token cap {settings.token_cap} is too small", hint="use at least 50")
    return settings
