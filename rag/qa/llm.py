"""Optional LLM mode (any OpenAI-compatible endpoint through langchain-openai).

The model sees the numbered clauses, fitted to a token budget. Its output is
checked before anyone relies on it: a sentence whose marker names no given
clause, that has no marker at all, or that quotes words not found verbatim in
the clause it cites is removed and reported. If nothing survives, the
extractive answer is used instead.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from langchain_core.language_models import BaseChatModel

from rag.corpus.chunk import count_tokens
from rag.corpus.normalize import fold_for_match
from rag.errors import LLMError
from rag.llm_client import load_prompt
from rag.models import Chunk, Citation, ScoredChunk
from rag.qa.compose import make_citation, source_line
from rag.settings import Settings

log = logging.getLogger(__name__)

NO_BASIS = "NO_BASIS"
_MARKER = re.compile(r"\[(\d+)\]")
_QUOTE = re.compile(r"「([^」]+)」|“([^”]+)”")


class LLMTimeout(TimeoutError):
    """The whole reply took longer than RAG_LLM_TIMEOUT."""


class LLMStoppedEarly(ConnectionError):
    """The stream ended without the endpoint saying the reply was finished."""


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (clients wrap the socket's error in their own)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 8:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def describe_failure(exc: BaseException, settings: Settings) -> str:
    """One line for the user: what went wrong with the endpoint and what to check."""
    chain = _causes(exc)
    names = {type(e).__name__ for e in chain}
    status = next((s for e in chain if isinstance(s := getattr(e, "status_code", None), int)), None)
    where = settings.llm_base_url or "the default OpenAI endpoint"
    if any(isinstance(e, LLMTimeout | TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        what = f"did not answer within {settings.llm_timeout:g} s (RAG_LLM_TIMEOUT)"
    elif status in (401, 403):
        what = f"refused the API key (HTTP {status}); check OPENAI_API_KEY"
    elif status is not None:
        what = f"answered HTTP {status}; check RAG_LLM_MODEL and the server's log"
    elif any(isinstance(e, LLMStoppedEarly) for e in chain) or names & {"RemoteProtocolError", "ReadError"}:
        what = "stopped in the middle of its reply"
    elif any(isinstance(e, ConnectionRefusedError) for e in chain) or names & {"ConnectError", "APIConnectionError"}:
        what = f"could not be reached at {where}; check OPENAI_BASE_URL"
    elif any(isinstance(e, ValueError | KeyError | TypeError) for e in chain):
        what = f"sent a reply that could not be read ({type(chain[-1]).__name__})"
    else:
        what = f"failed ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
    return f"the language model {what}; showing the extractive answer"


def _reports_finish(model: BaseChatModel) -> bool:
    """OpenAI-compatible streams end with a finish_reason; a stream cut short has none."""
    return any(k.__name__ == "BaseChatOpenAI" for k in type(model).__mro__)


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
    """Sentences of a model's answer with their markers: 'A。[1] B。[2]' → ['A。[1]', 'B。[2]'];
    the same in English. Not `chunk.split_sentences`: here a marker after the full stop belongs
    to the sentence before it, and an English full stop ends a sentence (in clause text "5.5"
    and "No. 12" do not)."""
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


def complete_prefix(text: str) -> int:
    """Length of the part of a streaming reply made of finished sentences: a sentence is
    finished once something other than a marker follows its end."""
    done = 0
    for m in _END.finditer(text):
        end = m.end()
        if trailing := _TRAILING_MARKERS.match(text, end):
            end = trailing.end()
        rest = text[end:].lstrip()
        if not rest or rest[0] == "[":  # more markers, or more of this one, may follow
            break
        done = end
    return done


def _trigrams(text: str) -> set[str]:
    folded = fold_for_match(_MARKER.sub(" ", text))
    return {folded[i:i + 3] for i in range(len(folded) - 2)}


@lru_cache(maxsize=1)
def _instruction_trigrams() -> frozenset[str]:
    return frozenset(_trigrams(re.sub(r"\{[a-z]+\}", " ", load_prompt("answer"))))


def echoes_instructions(sentence: str) -> bool:
    """Does the sentence mostly repeat the prompt's rules? A weak model echoes them, and
    the markers it copies ("like [1] or [2][3]") would otherwise pass the checks."""
    grams = _trigrams(sentence)
    return len(grams) >= 4 and len(grams & _instruction_trigrams()) / len(grams) >= 0.6


def check_sentence(sentence: str, folded_clauses: dict[int, str]) -> str:
    """Why the sentence cannot be shown ("" when it passes)."""
    markers = [int(m) for m in _MARKER.findall(sentence)]
    if not markers:
        return f"no clause marker: {sentence!r}"
    unknown = [m for m in markers if m not in folded_clauses]
    if unknown:
        return f"marker [{unknown[0]}] names no given clause: {sentence!r}"
    bad = [q for q in (a or b for a, b in _QUOTE.findall(sentence))
           if not any(fold_for_match(q) in folded_clauses[m] for m in markers)]
    if bad:
        return f"quote not found in the cited clause: 「{bad[0]}」"
    if echoes_instructions(sentence):
        return f"repeats the instructions, not the clause: {sentence!r}"
    return ""


def verify(answer: str, clauses: dict[int, str]) -> tuple[list[str], list[str]]:
    """(kept sentences, reasons for the removed ones)."""
    checker = SentenceChecker(clauses)
    checker.feed(answer)
    checker.finish()
    return checker.kept, checker.removed


class SentenceChecker:
    """Checks a reply while it streams: each finished sentence is checked, and only the
    ones that pass are released, their markers renumbered in order of first use."""

    def __init__(self, clauses: dict[int, str]) -> None:
        self._folded = {n: fold_for_match(t) for n, t in clauses.items()}
        self._pending = ""
        self.raw = ""
        self.kept: list[str] = []  # with the model's own markers
        self.shown: list[str] = []  # the same, renumbered as released
        self.removed: list[str] = []  # reasons
        self.renumber: dict[int, int] = {}

    def feed(self, text: str) -> list[str]:
        """Sentences released by this piece of the reply, ready to show."""
        self.raw += text
        self._pending += text
        cut = complete_prefix(self._pending)
        if not cut:
            return []
        done, self._pending = self._pending[:cut], self._pending[cut:]
        return self._check(done)

    def finish(self) -> list[str]:
        done, self._pending = self._pending, ""
        return self._check(done)

    def _check(self, text: str) -> list[str]:
        shown = []
        for sentence in split_answer(text):
            reason = check_sentence(sentence, self._folded)
            if reason:
                self.removed.append(reason)
                continue
            self.kept.append(sentence)
            for m in _MARKER.findall(sentence):
                self.renumber.setdefault(int(m), len(self.renumber) + 1)
            shown.append(_MARKER.sub(lambda m: f"[{self.renumber[int(m.group(1))]}]", sentence))
        self.shown += shown
        return shown


def condense_question(model: BaseChatModel, question: str, history: list[dict[str, str]]) -> str:
    turns = "\n".join(f"{h.get('role', 'user')}: {h.get('content', '')}" for h in history[-6:])
    prompt = load_prompt("condense").format(history=turns, question=question)
    try:
        reply = model.invoke(prompt)
    except Exception as exc:  # network and API errors vary by provider
        raise LLMError(f"the language model could not be reached: {exc}",
                       hint="check OPENAI_BASE_URL / OPENAI_API_KEY, or use --mode extractive") from exc
    text = str(reply.content).strip()
    # One line, and not an essay: a weak model may answer instead of rewriting.
    text = text.splitlines()[0].strip() if text else ""
    return text if 0 < len(text) <= 4 * len(question) + 200 else question


def _stream_reply(model: BaseChatModel, prompt: str, timeout: float) -> Iterator[str]:
    """The reply's text pieces; raises when the endpoint fails, stalls or stops early."""
    deadline = time.monotonic() + timeout
    finished = not _reports_finish(model)
    stream = model.stream(prompt)
    try:
        for piece in stream:
            if piece.response_metadata.get("finish_reason"):
                finished = True
            text = str(piece.content)
            if text:
                yield text
            if time.monotonic() > deadline:
                raise LLMTimeout(f"no complete reply within {timeout:g} s")
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()  # frees the connection when the reply is abandoned
    if not finished:
        raise LLMStoppedEarly("the stream ended without a finish reason")


@dataclass
class LLMReply:
    """What the model's reply came to, once streamed and checked. `body` and `citations` hold
    the checked sentences with their sources; empty when nothing passed or the endpoint failed
    (`failure`: one line why), and the answer falls back to the extractive one."""

    no_basis: bool = False
    body: str = ""
    citations: list[Citation] = field(default_factory=list)
    chunks: dict[int, Chunk] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # what the checks removed
    failure: str = ""


def llm_reply(model: BaseChatModel, settings: Settings, question: str, lang: str,
              results: list[ScoredChunk]) -> Iterator[str | LLMReply]:
    """Yields the checked sentences as they pass, then the LLMReply. Nothing unchecked is
    yielded: when the endpoint fails (refused, timeout, wrong key, killed mid-reply,
    malformed), the reply says why and holds no sentence of its own."""
    chunks = fit_clauses(results, settings.llm_max_context_tokens)
    prompt = load_prompt("answer").format(
        language="English" if lang == "en" else "Chinese (简体中文)", clauses=format_clauses(chunks),
        question=question)
    numbered = {n: c for n, c in enumerate(chunks, start=1)}
    checker = SentenceChecker({n: c.text for n, c in numbered.items()})
    failure = ""
    try:
        for text in _stream_reply(model, prompt, settings.llm_timeout):
            for sentence in checker.feed(text):
                yield sentence + "\n"
        for sentence in checker.finish():
            yield sentence + "\n"
    except Exception as exc:  # provider errors vary; the user gets one clear line
        log.warning("llm mode: %s: %s", type(exc).__name__, exc)
        failure = describe_failure(exc, settings)
    if not failure and checker.raw.strip().startswith(NO_BASIS):
        yield LLMReply(no_basis=True)
        return
    # A weak model may echo the whole prompt: the first reasons, then a count.
    warnings = [f"removed from the model's answer: {r}" for r in checker.removed[:3]]
    if len(checker.removed) > 3:
        warnings.append(f"removed {len(checker.removed) - 3} more sentences of the model's answer")
    if failure or not checker.kept:
        yield LLMReply(warnings=warnings, failure=failure or
                       "nothing in the model's answer passed the checks; showing the extractive answer")
        return
    citations, cited = [], {}
    for old, new in checker.renumber.items():
        quotes = [q for s in checker.kept if f"[{old}]" in s for a, b in _QUOTE.findall(s) if (q := a or b)]
        citations.append(make_citation(new, numbered[old], quotes))
        cited[new] = numbered[old]
    body = "\n".join(checker.shown) + "\n\n" + ("Sources:" if lang == "en" else "来源：") + "\n"
    body += "\n".join(source_line(c, lang) for c in citations)
    yield LLMReply(body=body, citations=citations, chunks=cited, warnings=warnings)
