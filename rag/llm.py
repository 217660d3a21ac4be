"""Optional LLM mode (any OpenAI-compatible endpoint through langchain-openai).

The model sees the numbered clauses, fitted to a token budget. Its output is
checked before anyone relies on it: a sentence whose marker names no given
clause, that has no marker at all, or that quotes words not found verbatim in
the clause it cites is removed and reported. If nothing survives, the
extractive answer is used instead.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.language_models import BaseChatModel

from .answer import abstention_text, make_citation, source_line, status_warnings
from .chunk import count_tokens
from .errors import LLMError, MissingExtraError
from .models import AskResult, Chunk, ScoredChunk
from .normalize import fold_for_match
from .settings import PACKAGE_ROOT, Settings

PROMPTS = PACKAGE_ROOT / "prompts"
NO_BASIS = "NO_BASIS"
_MARKER = re.compile(r"\[(\d+)\]")
_QUOTE = re.compile(r"「([^」]+)」|“([^”]+)”")


def load_prompt(name: str) -> str:
    return (PROMPTS / f"{name}.md").read_text(encoding="utf-8")


def build_chat_model(settings: Settings) -> BaseChatModel:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as exc:
        raise MissingExtraError("llm mode", "llm", "langchain-openai") from exc
    kwargs: dict[str, Any] = {"model": settings.llm_model, "temperature": 0, "streaming": True}
    if settings.llm_base_url:
        kwargs["base_url"] = settings.llm_base_url
    # Local servers (Ollama, vLLM) accept any key; the client insists on one.
    kwargs["api_key"] = settings.llm_api_key or "not-needed"
    return ChatOpenAI(**kwargs)


def fit_clauses(results: list[ScoredChunk], budget: int) -> list[Chunk]:
    """Clauses in rank order while their numbered text fits in `budget` tokens (at least one)."""
    chosen: list[Chunk] = []
    used = 0
    for r in results:
        cost = count_tokens(r.chunk.text) + 20
        if chosen and used + cost > budget:
            break
        chosen.append(r.chunk)
        used += cost
    return chosen


def format_clauses(chunks: list[Chunk]) -> str:
    return "\n\n".join(f"[{n}] {c.label}（{c.status}）\n{c.text}" for n, c in enumerate(chunks, start=1))


_END = re.compile(r"[。！？!?]+|\.(?=\s|$)|\n")
_TRAILING_MARKERS = re.compile(r"(?:\s*\[\d+\])+")


def split_answer(text: str) -> list[str]:
    """Sentences with their markers: 'A。[1] B。[2]' → ['A。[1]', 'B。[2]']; the same in English."""
    sentences, start = [], 0
    for m in _END.finditer(text):
        end = m.end()
        if trailing := _TRAILING_MARKERS.match(text, end):
            end = trailing.end()
        if end <= start:
            continue
        sentences.append(text[start:end])
        start = end
    sentences.append(text[start:])
    return [s.strip() for s in sentences if s.strip() and not _TRAILING_MARKERS.fullmatch(s.strip())]


def verify(answer: str, clauses: dict[int, str]) -> tuple[list[str], list[str]]:
    """(kept sentences, reasons for the removed ones)."""
    kept, removed = [], []
    folded = {n: fold_for_match(t) for n, t in clauses.items()}
    for sentence in split_answer(answer):
        markers = [int(m) for m in _MARKER.findall(sentence)]
        if not markers:
            removed.append(f"no clause marker: {sentence!r}")
            continue
        unknown = [m for m in markers if m not in clauses]
        if unknown:
            removed.append(f"marker [{unknown[0]}] names no given clause: {sentence!r}")
            continue
        bad = [q for q in (a or b for a, b in _QUOTE.findall(sentence))
               if not any(fold_for_match(q) in folded[m] for m in markers)]
        if bad:
            removed.append(f"quote not found in the cited clause: 「{bad[0]}」")
            continue
        kept.append(sentence)
    return kept, removed


def condense_question(model: BaseChatModel, question: str, history: list[dict[str, str]]) -> str:
    turns = "\n".join(f"{h.get('role', 'user')}: {h.get('content', '')}" for h in history[-6:])
    prompt = load_prompt("condense").format(history=turns, question=question)
    try:
        reply = model.invoke(prompt)
    except Exception as exc:  # network and API errors vary by provider
        raise LLMError(f"the language model could not be reached: {exc}",
                       hint="check OPENAI_BASE_URL / OPENAI_API_KEY, or use --mode extractive") from exc
    text = str(reply.content).strip()
    return text or question


def llm_answer_stream(model: BaseChatModel, settings: Settings, question: str, lang: str,
                      results: list[ScoredChunk], base: dict[str, Any], timings: dict[str, float],
                      t0: float, extractive: Callable[[], tuple[str, list, dict]]) -> Iterator[str | AskResult]:
    chunks = fit_clauses(results, settings.llm_max_context_tokens)
    prompt = load_prompt("answer").format(
        language="English" if lang == "en" else "Chinese (简体中文)", clauses=format_clauses(chunks),
        question=question)
    parts: list[str] = []
    try:
        for piece in model.stream(prompt):
            text = str(piece.content)
            if text:
                parts.append(text)
                yield text
    except Exception as exc:  # provider errors vary; the user needs one clear line
        raise LLMError(f"the language model failed: {exc}",
                       hint="check the RAG_LLM settings, or use --mode extractive") from exc
    raw = "".join(parts).strip()
    numbered = {n: c for n, c in enumerate(chunks, start=1)}
    if raw.startswith(NO_BASIS):
        text = abstention_text(lang, results[:3])
        timings["total"] = (time.perf_counter() - t0) * 1000
        yield AskResult(answer=text, abstained=True, citations=[], timings_ms=timings,
                        related=[r.chunk.label for r in results[:3]], warnings=["the model found no basis"], **base)
        return
    kept, removed = verify(raw, {n: c.text for n, c in numbered.items()})
    warnings = [f"removed from the model's answer: {r}" for r in removed]
    if not kept:
        text, citations, cited_chunks = extractive()
        warnings.append("nothing in the model's answer passed the checks; showing the extractive answer")
    else:
        used = sorted({int(m) for s in kept for m in _MARKER.findall(s)})
        renumber = {old: new for new, old in enumerate(used, start=1)}
        body = [_MARKER.sub(lambda m: f"[{renumber[int(m.group(1))]}]", s) for s in kept]
        citations, cited_chunks = [], {}
        for old, new in renumber.items():
            quotes = [q for s in kept if f"[{old}]" in s for a, b in _QUOTE.findall(s) if (q := a or b)]
            citations.append(make_citation(new, numbered[old], quotes))
            cited_chunks[new] = numbered[old]
        text = "\n".join(body) + "\n\n" + ("Sources:" if lang == "en" else "来源：") + "\n"
        text += "\n".join(source_line(c, lang) for c in citations)
    status = status_warnings(citations, cited_chunks, lang)
    if status:
        text += "\n\n" + "\n".join(("Note: " if lang == "en" else "注意：") + w for w in status)
    timings["total"] = (time.perf_counter() - t0) * 1000
    yield AskResult(answer=text, abstained=False, citations=citations, timings_ms=timings,
                    warnings=status + warnings, **base)
