"""One question to one answer: prepare the question (follow-ups, llm rewrite), search the live
index, decide whether the corpus holds a basis (else abstain), then quote the clauses or let the
LLM write from them; both finish through `compose.finish`."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from rag.corpus.lexicon import stem_words
from rag.corpus.normalize import detect_language, normalize_query, replace_lone_surrogates
from rag.errors import ConfigError, LLMError
from rag.index.clauses import Filters
from rag.models import IN_FORCE, AskResult, Retriever, ScoredChunk
from rag.qa.compose import (
    AnswerFrame,
    abstain,
    answer_tokens,
    compose,
    evidence_of,
    finish,
    pick_quotes,
    sentence_score,
    sentences_of,
)
from rag.qa.followup import FollowUp, follow_up
from rag.qa.live import LiveIndex
from rag.qa.loaded import LoadedIndex
from rag.qa.scope import asks_for_figure, has_figure, unanswered_ask, unknown_names
from rag.settings import Settings

log = logging.getLogger(__name__)

MODES = ("extractive", "llm")
DENSE_UNAVAILABLE = "dense retrieval unavailable; answered from the keyword (bm25) index only"
Picked = list[tuple[ScoredChunk, list[str]]]


@dataclass
class Request:
    """One question as the answerer sees it, after validation."""

    question: str
    history: list[dict[str, str]]
    k: int
    mode: str
    filters: Filters
    retrievers: tuple[str, ...]
    reranker: Any  # a CrossEncoderReranker, or None

    @classmethod
    def of(cls, question: str, history: list[dict[str, str]] | None, k: int, mode: str, filters: Filters,
           retrievers: tuple[str, ...], reranker: Any, llm_available: bool) -> Request:
        """A request from what a caller sent; ConfigError names what cannot be answered."""
        # Lone surrogates (JSON "\\ud800") cannot be encoded in the answer: U+FFFD instead.
        question = replace_lone_surrogates(question or "").strip()
        history = [{**m, "content": replace_lone_surrogates(m.get("content") or "")} for m in history or []]
        if not question:
            raise ConfigError("the question is empty", hint="type a question")
        if mode == "llm" and not llm_available:
            raise ConfigError("llm mode is not configured",
                              hint="set RAG_LLM=openai and OPENAI_BASE_URL / OPENAI_API_KEY / RAG_LLM_MODEL")
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}", hint="use extractive or llm")
        return cls(question, history, k, mode, filters, retrievers, reranker)


@dataclass
class Prepared:
    query: str  # the normalised question (rewritten by the LLM for a follow-up in llm mode)
    context: str  # a previous turn carried along (normalised; "" when none)
    resolved: str  # the question as answered, for the record
    model: Any  # the chat model, or None: extractive
    follow: FollowUp = FollowUp()  # what the search takes from the previous turns


class Answerer:
    def __init__(self, settings: Settings, live: LiveIndex, chat_model: Callable[[], Any]) -> None:
        self.settings = settings
        self.live = live
        self._chat_model = chat_model  # builds or returns the configured chat model

    def stream(self, req: Request) -> Iterator[str | AskResult]:
        """Yields answer text pieces as they are produced, then the final AskResult."""
        notes: list[str] = []  # problems of this answer's retrieval, shown with the answer
        for piece in self._stream(req, notes):
            if isinstance(piece, AskResult):
                piece.warnings = notes + [w for w in piece.warnings if w not in notes]
            yield piece

    def _stream(self, req: Request, notes: list[str]) -> Iterator[str | AskResult]:
        t0 = time.perf_counter()
        lang = detect_language(req.question)
        prep = self._prepare(req, notes)
        t1 = time.perf_counter()
        idx, results, exact = self._retrieve(req, prep, notes)
        frame = AnswerFrame(question=req.question, language=lang, mode=req.mode, resolved_question=prep.resolved,
                            retrieved=results, today=dt.date.fromisoformat(self.settings.as_of_date),
                            see_also=idx.see_also, other_version=idx.other_version, t0=t0,
                            timings={"prepare": (t1 - t0) * 1000, "retrieve": (time.perf_counter() - t1) * 1000})
        picked, reason = self._decide(req.question, prep, idx, results, exact)
        if reason:
            result = abstain(frame, reason)
            yield result.answer
            yield result
            return
        extractive = lambda: compose(frame.answer_language, picked, idx.gist)  # noqa: E731
        if prep.model is None:
            result = finish(frame, *extractive())
            yield from result.answer.splitlines(keepends=True)
            yield result
            return
        from rag.qa.llm import LLMReply, llm_reply

        for piece in llm_reply(prep.model, self.settings, prep.query, frame.answer_language, results):
            if not isinstance(piece, LLMReply):
                yield piece
            elif piece.no_basis:
                yield abstain(frame, "the model found no basis")
            elif piece.failure:
                yield finish(frame, *extractive(), warnings=[*piece.warnings, piece.failure])
            else:
                yield finish(frame, piece.body, piece.citations, piece.chunks, warnings=piece.warnings)

    def _prepare(self, req: Request, notes: list[str]) -> Prepared:
        query = normalize_query(req.question)
        follow = follow_up(query, req.history)
        context = follow.context
        prep = Prepared(query, normalize_query(context) if context else "",
                        f"{context} {req.question}".strip() if context else req.question, None, follow)
        if req.mode != "llm":
            return prep
        from rag.qa.llm import condense_question, describe_failure

        prep.model = self._chat_model()
        if req.history:
            # The model rewrites a follow-up into a standalone question instead of carrying
            # the previous turn along.
            try:
                prep.resolved = condense_question(prep.model, req.question, req.history)
                prep.query, prep.context, prep.follow = normalize_query(prep.resolved), "", FollowUp()
            except LLMError as exc:
                # The endpoint is down: asking it again for the answer would only wait once
                # more. The follow-up keeps the previous turn as context.
                log.warning("llm mode: %s", exc)
                notes.append(describe_failure(exc.__cause__ or exc, self.settings))
                prep.model = None
        return prep

    def _retrieve(self, req: Request, prep: Prepared,
                  notes: list[str]) -> tuple[LoadedIndex, list[ScoredChunk], bool]:
        """(the build searched, its results, whether the question names the top clause)."""
        live = self.live
        searcher = live.current.searcher
        # The query is embedded before the lock, so concurrent requests embed in parallel;
        # a failure is left to `search`, which answers from bm25 and reports it.
        vector: np.ndarray | Exception | None = None
        if Retriever.DENSE in req.retrievers:
            try:
                vector = searcher.query_vector(prep.query, prep.context)
            except Exception as exc:  # the search reports it and answers from bm25
                vector = exc
        search = dict(k=req.k, filters=req.filters, retrievers=req.retrievers, reranker=req.reranker,
                      extra_query=prep.context)
        with live.lock:
            live.reload_if_switched()
            idx = live.current
            if prep.follow.topic:
                # The previous question's document is looked up in the build this search uses.
                search |= idx.searcher.follow_up_args(prep.follow, req.filters)
            results = idx.searcher.search(prep.query, **search,
                                          query_vector=vector if idx.searcher is searcher else None)
            if idx.searcher.dense_error and live.reload_if_switched(check_registry=True):
                # The old build's collection was gone after a switch: ask the new one.
                idx = live.current
                results = idx.searcher.search(prep.query, **search)
            if idx.searcher.dense_error:
                notes.append(DENSE_UNAVAILABLE)
        return idx, results, bool(results and results[0].exact)

    def _decide(self, question: str, prep: Prepared, idx: LoadedIndex, results: list[ScoredChunk],
                exact: bool) -> tuple[Picked, str]:
        """(the quotes to answer with, why to abstain instead: "" = answer)."""
        tokens = answer_tokens(prep.query, prep.context)
        evidence = evidence_of(results, answer_tokens(prep.query, ""), exact)
        picked = pick_quotes(results, tokens, exact)
        threshold = self.settings.abstain_threshold
        if not results:
            return picked, "nothing retrieved"
        unknown = [] if exact else unknown_names(
            question, lambda name: name in idx.corpus_text,
            lambda name: all(w in idx.english_words for w in stem_words(name).split()))
        if unknown:
            return picked, "the question names " + "、".join(unknown) + ", which the corpus never mentions"
        if evidence.score < threshold:
            return picked, f"evidence score {evidence.score:.2f} < threshold {threshold:.2f}"
        confidence, least = results[0].confidence, self.settings.abstain_confidence
        if confidence is not None and confidence < least:
            return picked, f"the best clause is uncertain: confidence {confidence:.2f} < {least:.2f}"
        quoted = "".join(r.chunk.text for r, _ in picked)
        if not exact and (missing := unanswered_ask(question, quoted)):
            return picked, f"the question asks for {missing} and the matching clauses state none"
        # The figure may sit outside the best-matching sentence, so look at the quoted clauses whole.
        if not exact and asks_for_figure(question) and not has_figure(quoted):
            # A linked clause may hold it: the law article a regulation article explains.
            linked = linked_figure(idx, picked, tokens)
            if linked is None:
                return picked, "the question asks for a figure and the matching clauses give none"
            picked = [*picked, linked]
        return picked, ""


def linked_figure(idx: LoadedIndex, picked: Picked, tokens: list[str]) -> tuple[ScoredChunk, list[str]] | None:
    """The first in-force clause linked to the top quoted clause whose text has a figure, with
    its best figure sentences."""
    if not picked:
        return None
    for label in idx.see_also(picked[0][0].chunk):
        found = idx.find(label)
        if not found or found[0].status != IN_FORCE or not has_figure(found[0].text):
            continue
        clause = found[0]
        scored = sorted(((sentence_score(t, tokens), i, t) for i, t in enumerate(sentences_of(clause))
                         if has_figure(t)), key=lambda x: (-x[0], x[1]))
        if not scored or scored[0][0] <= 0:
            continue
        quotes = [t for _, _, t in sorted(scored[:2], key=lambda x: x[1])]
        return ScoredChunk(chunk=clause, rank=len(picked) + 1, fused=0.0, scores={}), quotes
    return None
