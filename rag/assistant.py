"""The one entry point that the CLI, the UI, the API and the benchmark call."""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from . import lexical, store
from .aliases import chinese_aliases, english_aliases
from .answer import (
    abstention_text,
    add_links_and_versions,
    answer_tokens,
    compose,
    evidence_of,
    link_lines,
    pick_quotes,
    resolve_follow_up,
    status_warnings,
)
from .dense import DenseIndex, limit_blas_threads
from .embed import get_embedder
from .errors import ConfigError, LLMError
from .laws import short_title
from .lexicon import glossary_words, stem_words
from .links import ClauseText, build_links
from .models import IN_FORCE, NOT_YET_IN_FORCE, AskResult, Chunk, Document, ScoredChunk
from .normalize import NORMALIZER_VERSION, detect_language, normalize_query, replace_lone_surrogates
from .retrieve import DEFAULT_RETRIEVERS, ClauseTable, Filters, HybridSearcher
from .scope import asks_for_figure, has_figure, unknown_names
from .settings import Settings, from_env
from .titles import english_law_titles

log = logging.getLogger(__name__)

__all__ = ["Assistant", "DocumentSummary", "Filters", "load_assistant"]


@dataclass(frozen=True)
class DocumentSummary:
    doc_id: str
    title: str
    short_title: str
    doc_type: str
    issuer: str
    date: str
    status: str
    chunk_count: int
    clause_count: int
    english_title: str = ""
    effective_date: str = ""
    hooked_clauses: int = 0  # clauses with question hooks
    part_count: int = 0  # 一、二、… headings of a policy document
    measure_count: int = 0  # （一）…（十六）


DENSE_UNAVAILABLE = "dense retrieval unavailable; answered from the keyword (bm25) index only"
# Queries score the vectors loaded in memory, so a Chroma outage does not touch answers;
# health says so, because ingest and a reload need the store.
STORE_UNREACHABLE = "the index store (Chroma) is unreachable; answers continue from the loaded index, ingest needs it"


def answer_language(lang: str) -> str:
    return "zh" if lang == "zh" else "en"


class Assistant:
    """Holds the loaded index (Chroma + lexical) and the embedder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.RLock()
        self._reranker: Any = None
        self.chat_model = None  # a LangChain chat model; tests put a fake one here
        limit_blas_threads()
        self._load()

    # ---- loading -------------------------------------------------------------

    def _load(self) -> None:
        # jieba's dictionary loads while Chroma is read: a shorter cold start.
        threading.Thread(target=lexical.warm_up, daemon=True).start()
        s = self.settings
        client = store.make_client(s.data_dir, s.chroma_url)
        info = store.require_index(client, s.embedder, NORMALIZER_VERSION)
        collection = store.get_collection(client, info.chunks_name)  # a deleted one: DamagedIndexError
        chunks, _ = store.read_chunks(client, info)
        docs = store.read_documents(client, info)
        folder = s.data_dir / "lexical" / info.build
        chunk_ids = {c.chunk_id for c in chunks}
        lex = lexical.load(folder)
        if lex is None or set(lex.chunk_ids) != chunk_ids:
            # A Chroma server filled from another machine: rebuild the derived files here.
            lex = lexical.build_and_save(chunks, folder)
        table = ClauseTable(chunks)
        dense = DenseIndex.load(folder)
        if dense is None or set(dense.chunk_ids) != chunk_ids or len(dense.hook_clauses) != info.hooks:
            dense = self._dense_from_store(client, info, table, folder)
        hook_lex = lexical.load(folder / "hooks") if info.hooks else None
        if info.hooks and hook_lex is None:
            from .ingest import match_hooks, save_hook_lexical

            save_hook_lexical(match_hooks(s, chunks), folder)
            hook_lex = lexical.load(folder / "hooks")
        self._embedder = get_embedder(s.embedder)
        english_to_short = {en: short_title(zh) for zh, en in english_law_titles().items()}
        english_to_short |= {d.english_title: d.short_title for d in docs
                             if d.english_title and d.status == IN_FORCE}
        english_to_short |= english_aliases()
        from .ingest import match_hooks

        hook_match = match_hooks(s, chunks, table)
        links = build_links(ClauseText(c.short_title, c.clause_key, c.text)
                            for c in table.clauses.values() if c.kind == "article")
        coming = {d.title: d for d in docs if d.status == NOT_YET_IN_FORCE}
        self._coming = {d.short_title: coming[d.title] for d in docs
                        if d.status == IN_FORCE and d.title in coming}
        searcher = HybridSearcher(table, lex, dense, self._embedder, english_to_short,
                                  self._reranker, hook_lexical=hook_lex, zh_aliases=chinese_aliases())
        searcher.explained_by = {target: [src for src in sources if src[0] != target[0]]
                                 for target, sources in links.cited_by.items()}
        self.links = links
        # Romanised place names of the documents (Ningbo, Daxie) are known English words.
        english_words = (set(lex.vocabulary()) | glossary_words()
                         | {w for names in searcher.romanised.values() for n in names for w in n.split()})
        # Everything is built before anything is replaced: a reload swaps a whole index
        # while requests keep using the old one (they hold the lock only to search).
        self._client, self._collection, self.info, self.docs, self.table = client, collection, info, docs, table
        self._corpus_text = "\n".join(d.text for d in docs)
        self.hook_match = hook_match
        self._gists = {key: e.gist_en for key, e in hook_match.by_clause.items()}
        self._english_words = english_words
        self.searcher = searcher
        log.info("index %s loaded: %d documents, %d chunks", info.build, len(docs), len(chunks))

    def _dense_from_store(self, client, info, table: ClauseTable, folder) -> DenseIndex:
        _, vectors = store.read_chunks(client, info, with_vectors=True)
        rows, hook_vectors = store.read_hook_rows(client, info)
        rows_ok = sorted((i for i, r in enumerate(rows) if r[0] in table.clauses), key=lambda i: rows[i][0])
        ids = sorted(vectors)
        dense = DenseIndex.build(ids, [vectors[i] for i in ids], info.dim, [rows[i][0] for i in rows_ok],
                                 [rows[i][1] for i in rows_ok], [hook_vectors[i] for i in rows_ok])
        dense.save(folder)
        return dense

    def hook_coverage(self) -> dict[str, tuple[int, int]]:
        """doc_id → (clauses with question hooks, clauses)."""
        return self.hook_match.coverage(self.table.clauses)

    def gist(self, chunk: Chunk) -> str:
        """The clause's unofficial English gist ("" when it has none)."""
        return self._gists.get((chunk.doc_id, chunk.ordinal), "")

    def reload(self) -> None:
        with self._lock:
            self._load()

    def _registry_switched(self) -> bool:
        """Does the store's registry name another build than the one loaded?"""
        try:
            active = store.active_info(self._client)
        except Exception:
            return False
        return active is not None and active.build != self.info.build

    def _reload_if_switched(self, check_registry: bool = False) -> bool:
        """Called under the lock; True when another build was loaded. A failed reload
        keeps the index in use answering."""
        marker = store.read_marker(self.settings.data_dir)
        # The marker (written right after the switch) is a cheap stat per question; the
        # registry is asked when the old build's collection was found gone.
        if not ((marker and marker != self.info.build) or (check_registry and self._registry_switched())):
            return False
        old = self.info.build
        try:
            self._load()
        except Exception as exc:
            log.error("index %s is active but cannot be loaded (%s); still serving %s", marker, exc, old)
            return False
        log.warning("switched from index %s to %s", old, self.info.build)
        return True

    # ---- answering ------------------------------------------------------------

    def ask(self, question: str, *, history: list[dict[str, str]] | None = None, k: int | None = None,
            mode: str | None = None, filters: Filters | None = None,
            retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, rerank: bool | None = None) -> AskResult:
        result: AskResult | None = None
        for piece in self.ask_stream(question, history=history, k=k, mode=mode, filters=filters,
                                     retrievers=retrievers, rerank=rerank):
            if isinstance(piece, AskResult):
                result = piece
        assert result is not None
        return result

    def ask_stream(self, question: str, *, history: list[dict[str, str]] | None = None,
                   k: int | None = None, mode: str | None = None, filters: Filters | None = None,
                   retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS,
                   rerank: bool | None = None) -> Iterator[str | AskResult]:
        """Yields answer text pieces as they are produced, then the final AskResult."""
        notes: list[str] = []  # problems of this answer's retrieval, shown with the answer
        for piece in self._ask_stream(question, history, k, mode, filters, retrievers, rerank, notes):
            if isinstance(piece, AskResult):
                piece.warnings = notes + [w for w in piece.warnings if w not in notes]
            yield piece

    def _ask_stream(self, question: str, history: list[dict[str, str]] | None, k: int | None,
                    mode: str | None, filters: Filters | None, retrievers: tuple[str, ...],
                    rerank: bool | None, notes: list[str]) -> Iterator[str | AskResult]:
        t0 = time.perf_counter()
        # Lone surrogates (JSON "\\ud800") cannot be encoded in the answer: U+FFFD instead.
        question = replace_lone_surrogates(question or "").strip()
        history = [{**m, "content": replace_lone_surrogates(m.get("content") or "")} for m in history or []]
        if not question:
            raise ConfigError("the question is empty", hint="type a question")
        k = k or self.settings.k
        mode = mode or self.settings.mode
        if mode == "llm" and not self.llm_available:
            raise ConfigError("llm mode is not configured",
                              hint="set RAG_LLM=openai and OPENAI_BASE_URL / OPENAI_API_KEY / RAG_LLM_MODEL")
        if mode not in ("extractive", "llm"):
            raise ConfigError(f"unknown mode {mode!r}", hint="use extractive or llm")
        lang = detect_language(question)
        q_norm = normalize_query(question)
        _, context = resolve_follow_up(q_norm, history)
        context_norm = normalize_query(context) if context else ""
        model = None
        resolved = f"{context} {question}".strip() if context else question
        if mode == "llm":
            from .llm import build_chat_model, condense_question, describe_failure

            model = self.chat_model or build_chat_model(self.settings)
            if history:
                # The model rewrites a follow-up into a standalone question instead
                # of carrying the previous turn along.
                try:
                    resolved = condense_question(model, question, history)
                    q_norm, context, context_norm = normalize_query(resolved), "", ""
                except LLMError as exc:
                    # The endpoint is down: asking it again for the answer would only
                    # wait once more. The follow-up keeps the previous turn as context.
                    log.warning("llm mode: %s", exc)
                    notes.append(describe_failure(exc.__cause__ or exc, self.settings))
                    model = None
        use_rerank = self.reranker_available if rerank is None else (rerank and self.reranker_available)
        t1 = time.perf_counter()
        # The query is embedded before the lock, so concurrent requests embed in parallel;
        # a failure is left to `search`, which answers from bm25 and reports it.
        searcher = self.searcher
        vector: np.ndarray | Exception | None = None
        if "dense" in retrievers:
            try:
                vector = searcher.query_vector(q_norm, context_norm)
            except Exception as exc:  # the search reports it and answers from bm25
                vector = exc
        with self._lock:
            self._reload_if_switched()
            results = self.searcher.search(q_norm, k=k, filters=filters or Filters(),
                                           retrievers=retrievers, rerank=use_rerank,
                                           extra_query=context_norm,
                                           query_vector=vector if self.searcher is searcher else None)
            if self.searcher.dense_error and self._reload_if_switched(check_registry=True):
                # The old build's collection was gone after a switch: ask the new one.
                results = self.searcher.search(q_norm, k=k, filters=filters or Filters(),
                                               retrievers=retrievers, rerank=use_rerank,
                                               extra_query=context_norm)
            if self.searcher.dense_error:
                notes.append(DENSE_UNAVAILABLE)
            ref = self.searcher.reference(q_norm) or (
                self.searcher.reference(context_norm) if context_norm else None)
        t2 = time.perf_counter()
        exact = bool(ref and results and results[0].fused >= 1.0)
        tokens = answer_tokens(q_norm, context_norm)
        evidence = evidence_of(results, answer_tokens(q_norm, ""), exact)
        out_lang = answer_language(lang)
        picked = pick_quotes(results, tokens, exact)
        unknown = [] if exact else unknown_names(
            question, lambda name: name in self._corpus_text,
            lambda name: all(w in self._english_words for w in stem_words(name).split()))
        timings = {"prepare": (t1 - t0) * 1000, "retrieve": (t2 - t1) * 1000}
        base: dict[str, Any] = dict(question=question, language=lang, retrieved=results, mode=mode,
                    resolved_question=resolved)
        reason = ""
        if not results:
            reason = "nothing retrieved"
        elif unknown:
            reason = "the question names " + "、".join(unknown) + ", which the corpus never mentions"
        elif evidence.score < self.settings.abstain_threshold:
            reason = (f"evidence score {evidence.score:.2f} < threshold "
                      f"{self.settings.abstain_threshold:.2f}")
        elif not exact and asks_for_figure(question):
            # The figure may sit outside the best-matching sentence, so look at the
            # quoted clauses whole.
            quoted = "".join(r.chunk.text for r, _ in picked)
            if not has_figure(quoted):
                # A linked clause may hold it: the law article a regulation article explains.
                linked = self._linked_figure(picked, tokens)
                if linked:
                    picked = [*picked, linked]
                else:
                    reason = "the question asks for a figure and the matching clauses give none"
        if reason:
            related = results[:3]
            text = abstention_text(out_lang, related)
            yield text
            timings["total"] = (time.perf_counter() - t0) * 1000
            yield AskResult(answer=text, abstained=True, citations=[], timings_ms=_round(timings),
                            related=[r.chunk.label for r in related], warnings=[reason], **base)
            return
        if model is not None:
            from .llm import llm_answer_stream

            for piece in llm_answer_stream(model, self.settings, q_norm, out_lang, results, base, timings, t0,
                                           extractive=lambda: compose(out_lang, picked, self.gist)):
                if isinstance(piece, AskResult):
                    by_label = {r.chunk.label: r.chunk for r in results}
                    add_links_and_versions(piece.citations, {c.n: by_label[c.label] for c in piece.citations
                                                             if c.label in by_label},
                                           self.see_also, self.other_version)
                yield piece
            return
        text, citations, chunks = compose(out_lang, picked, self.gist)
        add_links_and_versions(citations, chunks, self.see_also, self.other_version)
        text = "\n".join([text, *link_lines(citations, out_lang)])
        warnings = status_warnings(citations, chunks, out_lang,
                                   today=dt.date.fromisoformat(self.settings.as_of_date))
        if warnings:
            text += "\n\n" + "\n".join(("Note: " if out_lang == "en" else "注意：") + w for w in warnings)
        yield from text.splitlines(keepends=True)
        timings["total"] = (time.perf_counter() - t0) * 1000
        yield AskResult(answer=text, abstained=False, citations=citations, timings_ms=_round(timings),
                        warnings=warnings, **base)

    def _linked_figure(self, picked: list[tuple[ScoredChunk, list[str]]],
                       tokens: list[str]) -> tuple[ScoredChunk, list[str]] | None:
        """The first in-force clause linked to the top quoted clause whose text has a figure,
        with its best figure sentences."""
        from .answer import _sentences, sentence_score

        if not picked:
            return None
        for label in self.see_also(picked[0][0].chunk):
            found = self.find(label)
            if not found or found[0].status != IN_FORCE or not has_figure(found[0].text):
                continue
            clause = found[0]
            scored = sorted(((sentence_score(t, tokens), i, t) for i, t in enumerate(_sentences(clause))
                             if has_figure(t)), key=lambda x: (-x[0], x[1]))
            if not scored or scored[0][0] <= 0:
                continue
            quotes = [t for _, _, t in sorted(scored[:2], key=lambda x: x[1])]
            return ScoredChunk(chunk=clause, rank=len(picked) + 1, fused=0.0, scores={}), quotes
        return None

    def see_also(self, chunk: Chunk) -> list[str]:
        """Labels of the clauses linked to this one (rag/links.py)."""
        keys = [self.table.by_label.get(k) for k in self.links.see_also((chunk.short_title, chunk.clause_key))]
        return [self.table.clauses[k].label for k in keys if k is not None]

    def other_version(self, chunk: Chunk) -> dict[str, str] | None:
        """The same clause in a version adopted but not yet in force, if the corpus has one."""
        doc = self._coming.get(chunk.short_title)
        if doc is None:
            return None
        key = self.table.by_label.get((doc.short_title, chunk.clause_key))
        label = self.table.clauses[key].label if key else f"《{doc.short_title}》"
        return {"label": label, "status": doc.status, "effective_date": doc.effective_date, "date": doc.date}

    def search(self, query: str, *, k: int = 10, filters: Filters | None = None,
               retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, rerank: bool | None = None) -> list[ScoredChunk]:
        use_rerank = self.reranker_available if rerank is None else (rerank and self.reranker_available)
        with self._lock:
            return self.searcher.search(normalize_query(query), k=k, filters=filters or Filters(),
                                        retrievers=retrievers, rerank=use_rerank)

    # ---- corpus ----------------------------------------------------------------

    def documents(self) -> list[DocumentSummary]:
        counts: dict[str, int] = {}
        for c in self.table.chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        clause_counts: dict[str, int] = {}
        measures: dict[str, int] = {}
        parts: dict[str, set[str]] = {}
        for (doc_id, _), c in self.table.clauses.items():
            clause_counts[doc_id] = clause_counts.get(doc_id, 0) + 1
            if c.kind == "measure":
                measures[doc_id] = measures.get(doc_id, 0) + 1
            if c.kind in ("part", "measure") and "、" in c.section_path.split(" > ")[0]:
                parts.setdefault(doc_id, set()).add(c.section_path.split(" > ")[0])
        hooked = self.hook_coverage()
        docs = [DocumentSummary(d.doc_id, d.title, d.short_title, d.doc_type, d.issuer, d.date, d.status,
                                counts.get(d.doc_id, 0), clause_counts.get(d.doc_id, 0),
                                d.english_title, d.effective_date, hooked.get(d.doc_id, (0, 0))[0],
                                len(parts.get(d.doc_id, ())), measures.get(d.doc_id, 0)) for d in self.docs]
        # The work plan first, then by type and title, as people browse them.
        return sorted(docs, key=lambda d: (d.doc_type != "政策文件", d.doc_type, d.title))

    def document_records(self) -> list[Document]:
        return list(self.docs)

    def clauses(self, doc_id: str) -> list[Chunk]:
        return sorted((c for (d, _), c in self.table.clauses.items() if d == doc_id), key=lambda c: c.ordinal)

    def find(self, label_or_id: str) -> list[Chunk]:
        """A clause by label (《工作方案》（十三）, 外商投资法第二十一条), a chunk id, or a doc_id."""
        text = normalize_query(label_or_id).strip()
        if text in self.table.by_id:
            c = self.table.by_id[text]
            return [self.table.clauses[(c.doc_id, c.ordinal)]]
        if m := re.match(r"^《([^》]+)》(.+)$", text):
            key = self.table.by_label.get((short_title(m.group(1)), m.group(2).strip()))
            if key:
                return [self.table.clauses[key]]
        ref = self.searcher.reference(text)
        if ref and ref.short_title:
            key = self.table.by_label.get((ref.short_title, ref.clause_key))
            if key:
                return [self.table.clauses[key]]
        if any(d.doc_id == text for d in self.docs):
            return self.clauses(text)
        return []

    def health(self) -> dict[str, Any]:
        problem = ""
        with self._lock:
            self._reload_if_switched()
            collection = self._collection
        try:
            collection.count()  # one cheap call: the store answers and the collection exists
        except Exception as exc:
            problem = f"{STORE_UNREACHABLE}: {type(exc).__name__}: {exc}"[:300]
        return {
            "status": "degraded" if problem else "ok",
            **({"problem": problem} if problem else {}),
            "index": {"build": self.info.build, "documents": len(self.docs), "chunks": len(self.table.chunks),
                      "clauses": len(self.table.clauses), "created": self.info.created,
                      "normalizer": self.info.normalizer},
            "embedder": {"name": self.info.embedder, "dim": self.info.dim, "loaded": True},
            "store": "chroma-http" if self.settings.chroma_url else "chroma-embedded",
            "llm": self.llm_available,
            "reranker": self.settings.reranker or None,
            "as_of": self.settings.as_of_date,
        }

    def add_files(self, paths: list[str]) -> dict[str, Any]:
        from .ingest import ingest

        summary = ingest(self.settings, add_paths=paths, progress=False)  # questions go on meanwhile
        with self._lock:
            self._reload_if_switched(check_registry=True)
        return {"lines": summary.lines(), "added": summary.added, "updated": summary.updated,
                "skipped": [{"path": s.path, "reason": s.reason} for s in summary.skipped]}

    # ---- optional parts ----------------------------------------------------------

    @property
    def embedder(self) -> Embeddings:
        return self._embedder

    @property
    def llm_available(self) -> bool:
        return bool(self.settings.llm) or self.chat_model is not None

    @property
    def reranker_available(self) -> bool:
        if not self.settings.reranker:
            return False
        if self._reranker is None:
            from .rerank import CrossEncoderReranker

            self._reranker = CrossEncoderReranker(self.settings.reranker)
            self.searcher.reranker = self._reranker
        return True


def _round(timings: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in timings.items()}


_assistants: dict[Settings, Assistant] = {}


def load_assistant(settings: Settings | None = None) -> Assistant:
    """One loaded assistant per settings object in this process."""
    settings = settings or from_env()
    if settings not in _assistants:
        _assistants[settings] = Assistant(settings)
    return _assistants[settings]
