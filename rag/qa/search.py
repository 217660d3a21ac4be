"""Hybrid search at clause level: bm25 (jieba + domain lexicon) and exact dense scores over the
vectors held in memory, each joined with its question hooks' score, fused by weighted
reciprocal rank fusion; a clause the question names comes first."""

from __future__ import annotations

import logging
import re
from typing import Protocol

import numpy as np

from rag.corpus.aliases import canonical_chinese, english_documents
from rag.corpus.lexicon import translate_terms
from rag.corpus.references import ClauseRef, find_reference
from rag.corpus.romanize import mentioned, romanised_names
from rag.index.clauses import ClauseTable, Filters, clause_key_of
from rag.index.dense import DenseIndex, standardise, top_indices
from rag.index.lexical import LexicalIndex, fold_english, query_tokens
from rag.models import Retriever, Score, ScoredChunk
from rag.qa.fusion import combine_with_hooks, rrf

log = logging.getLogger(__name__)


class Reranker(Protocol):
    def score(self, query: str, texts: list[str]) -> list[float]: ...


# Tuned on the dev split (eval/reports): dense carries English questions,
# bm25 the Chinese terms; see the closing note for the grid.
DEFAULT_WEIGHTS: dict[str, float] = {Retriever.BM25: 1.0, Retriever.DENSE: 1.0}
CANDIDATES = 60
DEFAULT_RETRIEVERS = (Retriever.BM25, Retriever.DENSE, Retriever.HOOKS)
EXACT_SCORE = 1.0  # fused score given to a clause the question names
DOC_BOOST = 0.012  # added to clauses of a document the question names (≈ a top-20 rank)
_NOTICE_WORDS = re.compile(r"工作方案|方案|措施|the plan|work plan|this plan|the notice|measure", re.I)


def _clause_key_from_id(hook_doc_id: str) -> tuple[str, int]:
    doc_id, _, ordinal = hook_doc_id.rpartition("\x00")
    return (doc_id, int(ordinal))


class HybridSearcher:
    def __init__(self, table: ClauseTable, lexical: LexicalIndex, dense: DenseIndex, embedder,
                 english_to_short: dict[str, str], hook_lexical: LexicalIndex | None = None,
                 zh_aliases: dict[str, str] | None = None) -> None:
        self.table = table
        self.lexical = lexical
        self.dense = dense
        self.hook_lexical = hook_lexical
        self.embedder = embedder
        self.english_to_short = english_to_short
        self.known_titles = {c.short_title for c in table.chunks}
        self.zh_aliases = zh_aliases or {}
        self.romanised = {short: names for short in self.known_titles if (names := romanised_names(short))}
        self._mask_cache: dict[tuple[str, Filters], np.ndarray] = {}
        self._hook_keys = [_clause_key_from_id(i) for i in hook_lexical.chunk_ids] if hook_lexical else []
        self._clause_chunks: dict[tuple[str, int], list[str]] = {}
        for c in table.chunks:
            self._clause_chunks.setdefault(clause_key_of(c), []).append(c.chunk_id)
        self._position_cache: dict[int, dict[str, int]] = {}
        self._array_cache: dict[tuple, np.ndarray] = {}
        self._index_cache: dict[tuple, dict[tuple[str, int], int]] = {}
        # Why the dense side failed in the last search ("" = it worked); callers read it
        # under the same lock as the search.
        self.dense_error = ""

    def _mask(self, filters: Filters, which: str = "lexical") -> np.ndarray:
        if (which, filters) not in self._mask_cache:
            if which == "hooks_lexical":
                allowed = [filters.allows(self.table.clauses[k]) for k in self._hook_keys]
            elif which == "hook_segments":
                allowed = [filters.allows(self.table.clauses[k]) for k in self.dense.segment_clauses]
            else:
                ids = self.lexical.chunk_ids if which == "lexical" else self.dense.chunk_ids
                allowed = [filters.allows(self.table.by_id[cid]) for cid in ids]
            self._mask_cache[(which, filters)] = np.array(allowed, dtype=np.float32)
        return self._mask_cache[(which, filters)]

    def mentioned_documents(self, query: str) -> set[str]:
        """Short titles of the documents a question names (外商投资法, the Energy Law, the plan)."""
        found: set[str] = set()
        rest = canonical_chinese(query, self.zh_aliases, self.known_titles)
        for title in sorted(self.known_titles, key=len, reverse=True):
            if len(title) >= 3 and title in rest:
                found.add(title)
                rest = rest.replace(title, " ")  # 外商投资法实施条例 hides 外商投资法
        found.update(english_documents(query, self.english_to_short, self.known_titles))
        found |= {short for short, names in self.romanised.items() if mentioned(query, names)}
        if _NOTICE_WORDS.search(query) and "工作方案" in self.known_titles:
            found.add("工作方案")
        return found

    def reference(self, query: str) -> ClauseRef | None:
        return find_reference(query, self.known_titles, self.english_to_short, self.zh_aliases)

    def query_vector(self, query: str, extra_query: str = "") -> np.ndarray:
        """The e5 vector `search` scores with (it may raise what the embedder raises).

        Callers that hold a lock around `search` compute it before taking the lock, so
        concurrent requests embed in parallel (the engine releases the GIL)."""
        # English questions also carry the Chinese terms of the glossary, which
        # pulls the multilingual embedding towards the Chinese clauses.
        terms = " ".join(translate_terms(query)) if re.search(r"[A-Za-z]{3}", query) else ""
        return np.asarray(self.embedder.embed_query(f"{extra_query} {query} {terms}".strip()),
                          dtype=np.float32)

    def search(self, query: str, *, k: int = 5, filters: Filters | None = None,
               retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, reranker: Reranker | None = None,
               weights: dict[str, float] | None = None, extra_query: str = "",
               query_vector: np.ndarray | Exception | None = None) -> list[ScoredChunk]:
        """`query` is normalised; `extra_query` (a previous turn) widens recall only.
        `query_vector`: what `query_vector(query, extra_query)` returned or raised beforehand.
        `reranker`: reorders the top 20 after fusion (a clause the question names stays first)."""
        filters = filters or Filters()
        weights = weights or DEFAULT_WEIGHTS
        rankings: dict[str, list[tuple[str, int]]] = {}
        raw: dict[str, dict[tuple[str, int], float]] = {}
        tokens = query_tokens(query)
        if "bm25" in retrievers:
            toks = tokens + [t for t in query_tokens(extra_query) if t not in tokens]
            lex_scores = self.lexical.scores(toks, self._mask(filters))
            rankings["bm25"], raw["bm25"] = self._to_clauses(self.lexical.ranked(lex_scores, CANDIDATES))
        hook_dense = Retriever.HOOKS in retrievers or Retriever.HOOKS_DENSE in retrievers
        hook_lex = Retriever.HOOKS in retrievers or Retriever.HOOKS_LEX in retrievers
        self.dense_error = ""
        vec: np.ndarray | None = None
        if "dense" in retrievers:
            try:
                if isinstance(query_vector, Exception):
                    raise query_vector  # the embedder failed before the search began
                vec = query_vector if query_vector is not None else self.query_vector(query, extra_query)
            except Exception as exc:  # the embedder failed: the lexical side still answers
                log.warning("dense retrieval failed: %s", exc)
                self.dense_error = f"{type(exc).__name__}: {exc}"[:300]
                if "bm25" not in retrievers:
                    raise
        if vec is not None:
            cosines = self.dense.chunk_scores(vec)
            chunk_mask = self._mask(filters, "dense")
            top = top_indices(cosines, CANDIDATES, chunk_mask)
            rankings["dense"], raw["dense"] = self._to_clauses(
                [(self.dense.chunk_ids[i], float(cosines[i])) for i in top])
            if hook_dense and self.dense.hook_clauses:
                best = self.dense.best_hook_per_clause(vec)
                seg_mask = self._mask(filters, "hook_segments")
                top_h = top_indices(best, CANDIDATES, seg_mask)
                raw[Score.HOOKS_DENSE] = {self.dense.segment_clauses[i]: round(float(best[i]), 6) for i in top_h}
                rankings["dense"] = self._calibrated(
                    cosines, chunk_mask, rankings["dense"], best, seg_mask, top_h)
        if "bm25" in retrievers and hook_lex and self.hook_lexical is not None:
            lex_mask = self._mask(filters)
            own = lex_scores  # the clause text's bm25, scored once above
            hook_mask = self._mask(filters, "hooks_lexical")
            hook_bm25 = self.hook_lexical.scores(fold_english(toks), hook_mask)
            top_h = top_indices(hook_bm25, CANDIDATES, hook_mask * (hook_bm25 > 0))
            raw[Score.HOOKS_BM25] = {self._hook_keys[i]: round(float(hook_bm25[i]), 6) for i in top_h}
            if top_h.size:
                rankings["bm25"] = self._calibrated(own, lex_mask, rankings.get("bm25", []), hook_bm25, hook_mask,
                                                    top_h, ids=self.lexical.chunk_ids,
                                                    hook_keys=self._hook_keys)
        fused = rrf({name: ranking for name, ranking in rankings.items()}, weights)
        mentioned = self.mentioned_documents(query) | (self.mentioned_documents(extra_query) if extra_query else set())
        if mentioned:
            for key in fused:
                if self.table.clauses[key].short_title in mentioned:
                    fused[key] += DOC_BOOST
        ref = self.reference(query)
        exact = self.table.lookup(ref, filters) if ref else []
        exact_keys = {clause_key_of(c) for c in exact}
        for key in exact_keys:
            fused[key] = EXACT_SCORE + fused.get(key, 0.0)
        order = sorted(fused, key=lambda key: -fused[key])
        if reranker is not None:
            order = self._rerank(reranker, query, order, raw, exact_count=len(exact))
        results = []
        for rank, key in enumerate(order[:k], start=1):
            clause = self.table.clauses[key]
            scores: dict[str, float | None] = {name.value: raw[name].get(key) for name in Score if name in raw}
            text = clause.text.lower()
            matched = [t for t in tokens if t in text]
            results.append(ScoredChunk(chunk=clause, rank=rank, fused=round(fused[key], 6),
                                       scores=scores, matched_terms=matched, exact=key in exact_keys))
        return results

    def _calibrated(self, own: np.ndarray, own_mask: np.ndarray, own_ranking: list[tuple[str, int]],
                    hook: np.ndarray, hook_mask: np.ndarray, hook_top: np.ndarray,
                    ids: list[str] | None = None, hook_keys: list[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
        """One list from a clause signal and its hook signal: both as z-scores over this
        query's population, ρ their correlation over the hooked clauses, then
        `combine_with_hooks`."""
        ids = ids if ids is not None else self.dense.chunk_ids
        hook_keys = hook_keys if hook_keys is not None else self.dense.segment_clauses
        z_own = standardise(own, own_mask)
        z_hook = standardise(hook, hook_mask)
        pos = self._positions(ids)
        # The own score of each hooked clause (its first chunk's), aligned with z_hook.
        first = self._first_chunk_index(ids, hook_keys)
        valid = (first >= 0) & (hook_mask > 0)
        own_at_hook = np.where(first >= 0, z_own[np.maximum(first, 0)], 0.0)
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant signal has no correlation
            rho = float(np.corrcoef(own_at_hook[valid], z_hook[valid])[0, 1]) if valid.sum() > 2 else 0.0
        hook_index = self._hook_index(hook_keys)
        own_best: dict[tuple[str, int], float] = {}
        hook_best: dict[tuple[str, int], float] = {}
        for key in dict.fromkeys(list(own_ranking) + [hook_keys[i] for i in hook_top]):
            own_best[key] = max((float(z_own[pos[cid]]) for cid in self._clause_chunks.get(key, []) if cid in pos),
                                default=float("-inf"))
            j = hook_index.get(key)
            if j is not None and hook_mask[j] > 0:
                hook_best[key] = float(z_hook[j])
        return combine_with_hooks(own_best, hook_best, rho)

    def _first_chunk_index(self, ids: list[str], hook_keys: list[tuple[str, int]]) -> np.ndarray:
        cache_key = ("first", id(ids), id(hook_keys))
        if cache_key not in self._array_cache:
            pos = self._positions(ids)
            self._array_cache[cache_key] = np.array(
                [pos.get(self._clause_chunks.get(k, [""])[0], -1) for k in hook_keys], dtype=np.int64)
        return self._array_cache[cache_key]

    def _hook_index(self, hook_keys: list[tuple[str, int]]) -> dict[tuple[str, int], int]:
        cache_key = ("index", id(hook_keys))
        if cache_key not in self._index_cache:
            self._index_cache[cache_key] = {k: i for i, k in enumerate(hook_keys)}
        return self._index_cache[cache_key]

    def _positions(self, ids: list[str]) -> dict[str, int]:
        cache = self._position_cache.get(id(ids))
        if cache is None:
            cache = {cid: i for i, cid in enumerate(ids)}
            self._position_cache[id(ids)] = cache
        return cache

    def _to_clauses(self, hits: list[tuple[str, float]]) -> tuple[list[tuple[str, int]], dict[tuple[str, int], float]]:
        ranked: list[tuple[str, int]] = []
        best: dict[tuple[str, int], float] = {}
        for cid, score in hits:
            chunk = self.table.by_id.get(cid)
            if chunk is None:
                continue
            key = clause_key_of(chunk)
            if key not in best:
                ranked.append(key)
                best[key] = round(score, 6)
        return ranked, best

    def _rerank(self, reranker: Reranker, query: str, order: list[tuple[str, int]], raw: dict, exact_count: int) -> list[tuple[str, int]]:
        head, pool = order[:exact_count], order[exact_count : exact_count + 20]
        if not pool:
            return order
        scores = reranker.score(query, [self.table.clauses[key].text for key in pool])
        raw[Score.RERANK] = {key: round(float(s), 6) for key, s in zip(pool, scores, strict=True)}
        pool = sorted(pool, key=lambda key: -raw[Score.RERANK][key])
        return head + pool + order[exact_count + 20 :]
