"""Hybrid search at clause level: bm25 (jieba + domain lexicon) and exact dense scores over the
vectors held in memory, each joined with its question hooks' score, fused by weighted
reciprocal rank fusion; a clause the question names comes first."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from rag.corpus.aliases import canonical_chinese, english_documents
from rag.corpus.lexicon import translate_terms
from rag.corpus.normalize import detect_language, normalize_query
from rag.corpus.references import ClauseRef, find_reference
from rag.corpus.romanize import mentioned, romanised_names
from rag.index.clauses import ClauseTable, Filters, clause_key_of
from rag.index.dense import DenseIndex, standardise, top_indices
from rag.index.lexical import (
    LexicalIndex,
    build_hook_field,
    fold_english,
    hook_field_clause,
    query_tokens,
)
from rag.models import IN_FORCE, Retriever, Score, ScoredChunk
from rag.qa.compose import coverage
from rag.qa.features import CandidateSignals, QueryFacts, feature_matrix
from rag.qa.followup import FollowUp
from rag.qa.fusion import combine_with_hooks, rrf
from rag.qa.ranker import POOL, LinearRanker, softmax

log = logging.getLogger(__name__)


class Reranker(Protocol):
    def score(self, query: str, texts: list[str]) -> list[float]: ...


# Tuned on the dev split (eval/reports): dense carries English questions,
# bm25 the Chinese terms; see the closing note for the grid.
DEFAULT_WEIGHTS: dict[str, float] = {Retriever.BM25: 1.0, Retriever.DENSE: 1.0}
CANDIDATES = 60
DEFAULT_RETRIEVERS = (Retriever.BM25, Retriever.DENSE, Retriever.HOOKS, Retriever.LEARNED)
EXACT_SCORE = 1.0  # fused score given to a clause the question names
DOC_BOOST = 0.012  # added to clauses of a document the question names (≈ a top-20 rank)
_NOTICE_WORDS = re.compile(r"工作方案|方案|措施|the plan|work plan|this plan|the notice|measure", re.I)


@dataclass
class _Run:
    """One query's scores over the whole index and the fused order (what search and the
    learned stage read)."""

    tokens: list[str]
    facts: QueryFacts
    all_tokens: list[str] = field(default_factory=list)  # with a carried turn's
    lex: np.ndarray | None = None  # bm25 per chunk (lexical.chunk_ids order)
    lex_mask: np.ndarray | None = None
    dense: np.ndarray | None = None  # cosine per chunk (dense.chunk_ids order)
    dense_mask: np.ndarray | None = None
    hook_lex: np.ndarray | None = None  # hook-field bm25 per hooked clause
    hook_lex_mask: np.ndarray | None = None
    hook_dense: np.ndarray | None = None  # best hook cosine per hooked clause
    hook_dense_mask: np.ndarray | None = None
    rankings: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    raw: dict[str, dict[tuple[str, int], float]] = field(default_factory=dict)
    fused: dict[tuple[str, int], float] = field(default_factory=dict)
    order: list[tuple[str, int]] = field(default_factory=list)
    mentioned: set[str] = field(default_factory=set)
    exact_keys: set[tuple[str, int]] = field(default_factory=set)

    zs: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def exact_count(self) -> int:
        return len(self.exact_keys)

    def z(self, name: str) -> np.ndarray | None:
        """The z-scores of one of the score arrays above over its allowed population, computed
        once (the hook fusion and the learned stage both read them)."""
        values, mask = getattr(self, name), getattr(self, f"{name}_mask")
        if values is None:
            return None
        if name not in self.zs:
            self.zs[name] = standardise(values, mask)
        return self.zs[name]


def _best(values: np.ndarray | None, positions: dict[str, int], chunk_ids: list[str]) -> float | None:
    """A clause's value: the best of its chunks'."""
    if values is None:
        return None
    found = [float(values[positions[c]]) for c in chunk_ids if c in positions]
    return max(found) if found else None


def _at(values: np.ndarray | None, index: int | None) -> float | None:
    return None if values is None or index is None else float(values[index])


class HybridSearcher:
    def __init__(self, table: ClauseTable, lexical: LexicalIndex, dense: DenseIndex, embedder,
                 english_to_short: dict[str, str], hook_lexical: LexicalIndex | None = None,
                 zh_aliases: dict[str, str] | None = None, hook_texts: dict[tuple[str, int], str] | None = None,
                 ranker: LinearRanker | None = None) -> None:
        self.table = table
        self.hook_texts = hook_texts or {}  # clause → its question hooks' text (a feature)
        self.ranker = ranker
        self.lexical = lexical
        self.dense = dense
        self.hook_lexical = hook_lexical
        self.embedder = embedder
        self.english_to_short = english_to_short
        self.known_titles = {c.short_title for c in table.chunks}
        self.zh_aliases = zh_aliases or {}
        self.romanised = {short: names for short in self.known_titles if (names := romanised_names(short))}
        self._mask_cache: dict[tuple[str, Filters], np.ndarray] = {}
        self._hook_keys = [hook_field_clause(i) for i in hook_lexical.chunk_ids] if hook_lexical else []
        self._clause_chunks: dict[tuple[str, int], list[str]] = {}
        for c in table.chunks:
            self._clause_chunks.setdefault(clause_key_of(c), []).append(c.chunk_id)
        self._position_cache: dict[int, dict[str, int]] = {}
        self._array_cache: dict[tuple, np.ndarray] = {}
        self._index_cache: dict[tuple, dict[tuple[str, int], int]] = {}
        # Why the dense side failed in the last search ("" = it worked); callers read it
        # under the same lock as the search.
        self.dense_error = ""

    def without_hooks(self, drop: Callable[[tuple[str, int]], bool]) -> HybridSearcher:
        """The same searcher with the hooks of the clauses `drop` names taken out of both hook
        indexes, as if those documents had none (for ablations)."""
        return self.with_hooks([i for i, key in enumerate(self.dense.hook_clauses) if not drop(key)],
                               {key: text for key, text in self.hook_texts.items() if not drop(key)})

    def with_hooks(self, rows: list[int], hook_texts: dict[tuple[str, int], str]) -> HybridSearcher:
        """The same searcher over other hooks: these rows of the hook vectors, and this text per
        clause for the hooks' lexical field (ablations, and training on held-out hooks)."""
        dense = replace(self.dense, hook_clauses=[self.dense.hook_clauses[i] for i in rows],
                        hook_kinds=[self.dense.hook_kinds[i] for i in rows], hooks=self.dense.hooks[rows])
        return HybridSearcher(self.table, self.lexical, dense, self.embedder, self.english_to_short,
                              hook_lexical=build_hook_field(hook_texts) if hook_texts else None,
                              zh_aliases=self.zh_aliases, hook_texts=hook_texts, ranker=self.ranker)

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

    def follow_up_args(self, follow: FollowUp, filters: Filters | None = None) -> dict[str, Any]:
        """The `search` arguments that carry a follow-up's previous turn: its words, or the
        document a search for it alone answers from."""
        if follow.context:
            return {"extra_query": normalize_query(follow.context)}
        if follow.topic:
            before = self.follow_up_args(follow.topic_follows, filters) if follow.topic_follows else {}
            top = self.search(normalize_query(follow.topic), k=1, filters=filters, **before)
            return {"context_documents": frozenset(r.chunk.short_title for r in top)}
        return {}

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
               query_vector: np.ndarray | Exception | None = None,
               context_documents: frozenset[str] = frozenset()) -> list[ScoredChunk]:
        """`query` is normalised; `extra_query` (a previous turn) widens recall only.
        `query_vector`: what `query_vector(query, extra_query)` returned or raised beforehand.
        With `Retriever.LEARNED` the shipped model reorders the fused top POOL; `reranker`
        then reorders the top 20 (a clause the question names stays first either way)."""
        run = self._fuse(query, filters or Filters(), retrievers, weights or DEFAULT_WEIGHTS, extra_query,
                         query_vector, context_documents)
        order = run.order
        confidence: dict[tuple[str, int], float] = {}
        if Retriever.LEARNED in retrievers and self.ranker is not None:
            pool, x = self._pool(run)
            if pool:
                scores = self.ranker.score(x)
                confidence = {key: float(p) for key, p in zip(pool, softmax(scores), strict=True)}
                pool = [pool[i] for i in np.argsort(-scores, kind="stable")]
            order = order[:run.exact_count] + pool + order[run.exact_count + POOL:]
        if reranker is not None:
            order = self._rerank(reranker, query, order, run.raw, exact_count=run.exact_count)
        results = []
        for rank, key in enumerate(order[:k], start=1):
            clause = self.table.clauses[key]
            scores_of = {name.value: run.raw[name].get(key) for name in Score if name in run.raw}
            text = clause.text.lower()
            matched = [t for t in run.tokens if t in text]
            results.append(ScoredChunk(chunk=clause, rank=rank, fused=round(run.fused[key], 6),
                                       scores=scores_of, matched_terms=matched, exact=key in run.exact_keys,
                                       confidence=confidence.get(key)))
        return results

    def candidates(self, query: str, *, filters: Filters | None = None,
                   retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, extra_query: str = "",
                   query_vector: np.ndarray | Exception | None = None,
                   context_documents: frozenset[str] = frozenset()
                   ) -> tuple[list[tuple[str, int]], np.ndarray, int]:
        """What the learned stage sees (for training it): the fused top POOL clauses after any
        the question names, their feature matrix, and how many named clauses came first."""
        run = self._fuse(query, filters or Filters(), retrievers, DEFAULT_WEIGHTS, extra_query, query_vector,
                         context_documents)
        return (*self._pool(run), run.exact_count)

    def _pool(self, run: _Run) -> tuple[list[tuple[str, int]], np.ndarray]:
        """The fused top POOL clauses after those the question names, and their features."""
        pool = run.order[run.exact_count:run.exact_count + POOL]
        return pool, feature_matrix(self.candidate_signals(run, pool), run.facts)

    def _fuse(self, query: str, filters: Filters, retrievers: tuple[str, ...], weights: dict[str, float],
              extra_query: str, query_vector: np.ndarray | Exception | None,
              context_documents: frozenset[str] = frozenset()) -> _Run:
        """Every list scored and fused, clauses the question names first."""
        run = _Run(tokens=query_tokens(query), facts=QueryFacts(english=detect_language(query) == "en",
                                                                length=len(query)))
        toks = run.tokens + [t for t in query_tokens(extra_query) if t not in run.tokens]
        run.all_tokens = toks
        if "bm25" in retrievers:
            run.lex, run.lex_mask = self.lexical.scores(toks, self._mask(filters)), self._mask(filters)
            run.rankings["bm25"], run.raw["bm25"] = self._to_clauses(self.lexical.ranked(run.lex, CANDIDATES))
        hook_dense = Retriever.HOOKS in retrievers or Retriever.HOOKS_DENSE in retrievers
        hook_lex = Retriever.HOOKS in retrievers or Retriever.HOOKS_LEX in retrievers
        vec = self._vector(query, extra_query, retrievers, query_vector)
        if vec is not None:
            run.dense = cosines = self.dense.chunk_scores(vec)
            run.dense_mask = chunk_mask = self._mask(filters, "dense")
            top = top_indices(cosines, CANDIDATES, chunk_mask)
            run.rankings["dense"], run.raw["dense"] = self._to_clauses(
                [(self.dense.chunk_ids[i], float(cosines[i])) for i in top])
            if hook_dense and self.dense.hook_clauses:
                run.hook_dense = best = self.dense.best_hook_per_clause(vec)
                run.hook_dense_mask = seg_mask = self._mask(filters, "hook_segments")
                top_h = top_indices(best, CANDIDATES, seg_mask)
                run.raw[Score.HOOKS_DENSE] = {self.dense.segment_clauses[i]: round(float(best[i]), 6)
                                              for i in top_h}
                run.rankings["dense"] = self._calibrated(
                    run.z("dense"), run.rankings["dense"], run.z("hook_dense"), seg_mask, top_h)
        if run.lex is not None and hook_lex and self.hook_lexical is not None:
            run.hook_lex_mask = hook_mask = self._mask(filters, "hooks_lexical")
            run.hook_lex = hook_bm25 = self.hook_lexical.scores(fold_english(toks), hook_mask)
            top_h = top_indices(hook_bm25, CANDIDATES, hook_mask * (hook_bm25 > 0))
            run.raw[Score.HOOKS_BM25] = {self._hook_keys[i]: round(float(hook_bm25[i]), 6) for i in top_h}
            if top_h.size:
                # The clause text's bm25, scored once above, joined with its hooks'.
                run.rankings["bm25"] = self._calibrated(run.z("lex"), run.rankings.get("bm25", []),
                                                        run.z("hook_lex"), hook_mask, top_h, ids=self.lexical.chunk_ids,
                                                        hook_keys=self._hook_keys)
        run.fused = fused = rrf(dict(run.rankings), weights)
        run.mentioned = self.mentioned_documents(query) | (
            self.mentioned_documents(extra_query) if extra_query else set()) | context_documents
        if run.mentioned:
            for key in fused:
                if self.table.clauses[key].short_title in run.mentioned:
                    fused[key] += DOC_BOOST
        ref = self.reference(query)
        run.exact_keys = {clause_key_of(c) for c in (self.table.lookup(ref, filters) if ref else [])}
        for key in run.exact_keys:
            fused[key] = EXACT_SCORE + fused.get(key, 0.0)
        run.order = sorted(fused, key=lambda key: -fused[key])
        return run

    def _vector(self, query: str, extra_query: str, retrievers: tuple[str, ...],
                query_vector: np.ndarray | Exception | None) -> np.ndarray | None:
        """The query vector, or None when dense is off or the embedder failed (then the
        lexical side answers alone and `dense_error` says why)."""
        self.dense_error = ""
        if "dense" not in retrievers:
            return None
        try:
            if isinstance(query_vector, Exception):
                raise query_vector  # the embedder failed before the search began
            return query_vector if query_vector is not None else self.query_vector(query, extra_query)
        except Exception as exc:  # the embedder failed: the lexical side still answers
            log.warning("dense retrieval failed: %s", exc)
            self.dense_error = f"{type(exc).__name__}: {exc}"[:300]
            if "bm25" not in retrievers:
                raise
            return None

    def candidate_signals(self, run: _Run, keys: list[tuple[str, int]]) -> list[CandidateSignals]:
        """The raw signals of these clauses in this run (see rag/qa/features.py)."""
        lex_z, dense_z, hook_lex_z, hook_dense_z = run.z("lex"), run.z("dense"), run.z("hook_lex"), run.z("hook_dense")
        lex_pos, dense_pos = self._positions(self.lexical.chunk_ids), self._positions(self.dense.chunk_ids)
        hook_lex_at, hook_dense_at = self._hook_index(self._hook_keys), self._hook_index(self.dense.segment_clauses)
        bm25_rank = {key: i for i, key in enumerate(run.rankings.get("bm25", []), start=1)}
        dense_rank = {key: i for i, key in enumerate(run.rankings.get("dense", []), start=1)}
        fused_rank = {key: i for i, key in enumerate(run.order, start=1)}
        out = []
        for key in keys:
            clause = self.table.clauses[key]
            chunk_ids = self._clause_chunks.get(key, [])
            hooks_text = self.hook_texts.get(key, "")
            out.append(CandidateSignals(
                bm25=_best(run.lex, lex_pos, chunk_ids), bm25_z=_best(lex_z, lex_pos, chunk_ids),
                dense=_best(run.dense, dense_pos, chunk_ids), dense_z=_best(dense_z, dense_pos, chunk_ids),
                hook_bm25=_at(run.hook_lex, hook_lex_at.get(key)), hook_bm25_z=_at(hook_lex_z, hook_lex_at.get(key)),
                hook_dense=_at(run.hook_dense, hook_dense_at.get(key)),
                hook_dense_z=_at(hook_dense_z, hook_dense_at.get(key)),
                has_hooks=bool(hooks_text), bm25_rank=bm25_rank.get(key), dense_rank=dense_rank.get(key),
                fused_rank=fused_rank[key], doc_named=clause.short_title in run.mentioned,
                coverage=coverage(clause.text + clause.section_path, run.all_tokens),
                hook_coverage=coverage(hooks_text, run.all_tokens) if hooks_text else 0.0,
                kind=clause.kind, doc_type=clause.doc_type, in_force=clause.status == IN_FORCE,
                tokens=clause.token_count))
        return out

    def _calibrated(self, z_own: np.ndarray | None, own_ranking: list[tuple[str, int]],
                    z_hook: np.ndarray | None, hook_mask: np.ndarray, hook_top: np.ndarray,
                    ids: list[str] | None = None, hook_keys: list[tuple[str, int]] | None = None) -> list[tuple[str, int]]:
        """One list from a clause signal and its hook signal, both as z-scores over this
        query's population (`_Run.z`), ρ their correlation over the hooked clauses, then
        `combine_with_hooks`."""
        assert z_own is not None and z_hook is not None
        ids = ids if ids is not None else self.dense.chunk_ids
        hook_keys = hook_keys if hook_keys is not None else self.dense.segment_clauses
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
