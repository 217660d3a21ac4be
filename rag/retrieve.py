"""Hybrid retrieval: bm25 (jieba + domain lexicon) and dense (Chroma), fused with
weighted reciprocal rank fusion, at clause level, with exact clause lookup first."""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np

from .aliases import canonical_chinese, english_documents
from .dense import DenseIndex, standardise, top_indices
from .lexical import LexicalIndex, fold_english, query_tokens
from .lexicon import translate_terms
from .models import IN_FORCE, Chunk, ScoredChunk
from .references import ClauseRef, find_reference
from .romanize import mentioned, romanised_names

log = logging.getLogger(__name__)

RRF_K = 60
# Tuned on the dev split (eval/reports): dense carries English questions,
# bm25 the Chinese terms; see the closing note for the grid.
DEFAULT_WEIGHTS = {"bm25": 1.0, "dense": 1.0}
CANDIDATES = 60
DEFAULT_RETRIEVERS = ("bm25", "dense", "hooks")
EXACT_SCORE = 1.0  # fused score given to a clause the question names
DOC_BOOST = 0.012  # added to clauses of a document the question names (≈ a top-20 rank)
# A clause that another document's clause explains ("企业所得税法第二十八条第二款所称…")
# passes this share of its fused score to up to LINK_FANOUT such clauses, so a hit on a law
# article brings up the regulation article that holds the detail. 0 turns it off: measured on
# dev (hybrid, 132 answerable), share 0.5 lowered hit@1 from 0.659 to 0.606 (hit@5 0.833 both;
# 9 items moved down, none up), so it stays off.
LINK_SHARE = 0.0
LINK_FANOUT = 3
LINK_PARENTS = 3  # only the top fused clauses pass a share on
_NOTICE_WORDS = re.compile(r"工作方案|方案|措施|the plan|work plan|this plan|the notice|measure", re.I)


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()
    doc_types: tuple[str, ...] = ()
    in_force_only: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Filters:
        data = data or {}
        return cls(doc_ids=tuple(data.get("doc_ids") or ()), doc_types=tuple(data.get("doc_types") or ()),
                   in_force_only=bool(data.get("in_force_only", True)))

    def allows(self, chunk: Chunk) -> bool:
        if self.doc_ids and chunk.doc_id not in self.doc_ids:
            return False
        if self.doc_types and chunk.doc_type not in self.doc_types:
            return False
        return not (self.in_force_only and chunk.status != IN_FORCE)

    def where(self) -> dict[str, Any] | None:
        conds: list[dict[str, Any]] = []
        if self.doc_ids:
            conds.append({"doc_id": {"$in": list(self.doc_ids)}})
        if self.doc_types:
            conds.append({"doc_type": {"$in": list(self.doc_types)}})
        if self.in_force_only:
            conds.append({"status": IN_FORCE})
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else {"$and": conds}


K = TypeVar("K", bound=Hashable)


def rrf(rankings: Mapping[str, Sequence[K]], weights: dict[str, float], k: int = RRF_K) -> dict[K, float]:
    """Weighted reciprocal rank fusion: Σ w_r / (k + rank_r), ranks from 1."""
    fused: dict[K, float] = {}
    for name, ranked in rankings.items():
        w = weights.get(name, 1.0)
        for rank, key in enumerate(ranked, start=1):
            fused[key] = fused.get(key, 0.0) + w / (k + rank)
    return fused


def clause_key_of(chunk: Chunk) -> tuple[str, int]:
    return (chunk.doc_id, chunk.ordinal)


def merge_parts(parts: list[Chunk]) -> Chunk:
    """The parts of one over-long clause, back as the whole clause."""
    parts = sorted(parts, key=lambda c: c.part)
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return replace(first, text="".join(p.text for p in parts), end=parts[-1].end,
                   token_count=sum(p.token_count for p in parts), part=1, parts=1)


@dataclass
class ClauseTable:
    """All chunks in memory, grouped by clause, for lookups and filtering."""

    chunks: list[Chunk]
    by_id: dict[str, Chunk] = field(init=False)
    clauses: dict[tuple[str, int], Chunk] = field(init=False)
    by_label: dict[tuple[str, str], tuple[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {c.chunk_id: c for c in self.chunks}
        groups: dict[tuple[str, int], list[Chunk]] = {}
        for c in self.chunks:
            groups.setdefault(clause_key_of(c), []).append(c)
        self.clauses = {k: merge_parts(v) for k, v in groups.items()}
        self.by_label = {}
        for key, c in self.clauses.items():
            self.by_label.setdefault((c.short_title, c.clause_key), key)

    def lookup(self, ref: ClauseRef, filters: Filters) -> list[Chunk]:
        # Naming a clause overrides "in force only" (the answer flags its status),
        # but not a choice of documents or types.
        filters = replace(filters, in_force_only=False)
        if ref.short_title:
            key = self.by_label.get((ref.short_title, ref.clause_key))
            return [self.clauses[key]] if key and filters.allows(self.clauses[key]) else []
        # "第二十一条" alone: only meaningful when the filters leave one document.
        hits = [c for (short, ck), key in self.by_label.items() if ck == ref.clause_key
                and filters.allows(c := self.clauses[key])]
        return hits if len(hits) == 1 else []


@dataclass(frozen=True)
class HookFusion:
    """How hook evidence joins the clause's own in each list (dense, bm25); see
    `combine_with_hooks`. The offsets (in standard deviations) are subtracted from the hook
    side; 0 measured best on dev."""

    dense_offset: float = 0.0
    lexical_offset: float = 0.0


def combine_with_hooks(own: Mapping[K, float], hook: Mapping[K, float], rho: float,
                       offset: float = 0.0) -> list[K]:
    """Keys ranked best first by their z-score: a key with a hook z scores
    (own + hook − offset) / sqrt(2 + 2ρ) — unit variance again, for ρ the correlation of the
    two signals — and a key without one keeps its own z, so fusion is neutral to coverage
    while a clause whose text and hooks agree rises (pure)."""
    scale = float(np.sqrt(max(2.0 + 2.0 * (rho if np.isfinite(rho) else 0.0), 1e-6)))
    merged = {key: (z + hook[key] - offset) / scale if key in hook else z for key, z in own.items()}
    return sorted(merged, key=lambda key: -merged[key])


def _clause_key_from_id(hook_doc_id: str) -> tuple[str, int]:
    doc_id, _, ordinal = hook_doc_id.rpartition("\x00")
    return (doc_id, int(ordinal))


class HybridSearcher:
    def __init__(self, table: ClauseTable, lexical: LexicalIndex, dense: DenseIndex, embedder,
                 english_to_short: dict[str, str], reranker=None, hook_lexical: LexicalIndex | None = None,
                 fusion: HookFusion | None = None, zh_aliases: dict[str, str] | None = None) -> None:
        self.table = table
        self.lexical = lexical
        self.dense = dense
        self.hook_lexical = hook_lexical
        self.fusion = fusion or HookFusion()
        self.embedder = embedder
        self.english_to_short = english_to_short
        self.reranker = reranker
        self.known_titles = {c.short_title for c in table.chunks}
        self.zh_aliases = zh_aliases or {}
        # (short_title, clause_key) → clauses of other documents that cite it (rag/links.py)
        self.explained_by: dict[tuple[str, str], list[tuple[str, str]]] = {}
        self.link_share = LINK_SHARE
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
               retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, rerank: bool = False,
               weights: dict[str, float] | None = None, extra_query: str = "",
               query_vector: np.ndarray | Exception | None = None) -> list[ScoredChunk]:
        """`query` is normalised; `extra_query` (a previous turn) widens recall only.
        `query_vector`: what `query_vector(query, extra_query)` returned or raised beforehand."""
        filters = filters or Filters()
        weights = weights or DEFAULT_WEIGHTS
        rankings: dict[str, list[tuple[str, int]]] = {}
        raw: dict[str, dict[tuple[str, int], float]] = {}
        tokens = query_tokens(query)
        if "bm25" in retrievers:
            toks = tokens + [t for t in query_tokens(extra_query) if t not in tokens]
            lex_scores = self.lexical.scores(toks, self._mask(filters))
            rankings["bm25"], raw["bm25"] = self._to_clauses(self.lexical.ranked(lex_scores, CANDIDATES))
        hook_dense = "hooks" in retrievers or "hooks-dense" in retrievers
        hook_lex = "hooks" in retrievers or "hooks-lex" in retrievers
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
                raw["hooks_dense"] = {self.dense.segment_clauses[i]: round(float(best[i]), 6) for i in top_h}
                rankings["dense"] = self._calibrated(
                    cosines, chunk_mask, rankings["dense"], best, seg_mask, top_h, self.fusion.dense_offset)
        if "bm25" in retrievers and hook_lex and self.hook_lexical is not None:
            lex_mask = self._mask(filters)
            own = lex_scores  # the clause text's bm25, scored once above
            hook_mask = self._mask(filters, "hooks_lexical")
            hook_bm25 = self.hook_lexical.scores(fold_english(toks), hook_mask)
            top_h = top_indices(hook_bm25, CANDIDATES, hook_mask * (hook_bm25 > 0))
            raw["hooks_bm25"] = {self._hook_keys[i]: round(float(hook_bm25[i]), 6) for i in top_h}
            if top_h.size:
                rankings["bm25"] = self._calibrated(own, lex_mask, rankings.get("bm25", []), hook_bm25, hook_mask,
                                                    top_h, self.fusion.lexical_offset, ids=self.lexical.chunk_ids,
                                                    hook_keys=self._hook_keys)
        fused = rrf({name: ranking for name, ranking in rankings.items()}, weights)
        mentioned = self.mentioned_documents(query) | (self.mentioned_documents(extra_query) if extra_query else set())
        if mentioned:
            for key in fused:
                if self.table.clauses[key].short_title in mentioned:
                    fused[key] += DOC_BOOST
        if self.link_share and self.explained_by:
            self._pass_to_explaining(fused, filters)
        ref = self.reference(query)
        exact = self.table.lookup(ref, filters) if ref else []
        for c in exact:
            fused[clause_key_of(c)] = EXACT_SCORE + fused.get(clause_key_of(c), 0.0)
        order = sorted(fused, key=lambda key: -fused[key])
        if rerank and self.reranker is not None:
            order = self._rerank(query, order, raw, exact_count=len(exact))
        results = []
        for rank, key in enumerate(order[:k], start=1):
            clause = self.table.clauses[key]
            scores: dict[str, float | None] = {name: raw[name].get(key) for name in
                                               ("bm25", "dense", "hooks_bm25", "hooks_dense") if name in raw}
            if "rerank" in raw:
                scores["rerank"] = raw["rerank"].get(key)
            text = clause.text.lower()
            matched = [t for t in tokens if t in text]
            results.append(ScoredChunk(chunk=clause, rank=rank, fused=round(fused[key], 6),
                                       scores=scores, matched_terms=matched))
        return results

    def _pass_to_explaining(self, fused: dict[tuple[str, int], float], filters: Filters) -> None:
        parents = sorted(fused, key=lambda key: -fused[key])[:LINK_PARENTS]
        for key in parents:
            parent = self.table.clauses[key]
            for title, clause_key in self.explained_by.get((parent.short_title, parent.clause_key), [])[:LINK_FANOUT]:
                child = self.table.by_label.get((title, clause_key))
                if child is None or not filters.allows(self.table.clauses[child]):
                    continue
                fused[child] = fused.get(child, 0.0) + self.link_share * fused[key]

    def _calibrated(self, own: np.ndarray, own_mask: np.ndarray, own_ranking: list[tuple[str, int]],
                    hook: np.ndarray, hook_mask: np.ndarray, hook_top: np.ndarray, offset: float,
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
        return combine_with_hooks(own_best, hook_best, rho, offset)

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

    def _rerank(self, query: str, order: list[tuple[str, int]], raw: dict, exact_count: int) -> list[tuple[str, int]]:
        head, pool = order[:exact_count], order[exact_count : exact_count + 20]
        if not pool:
            return order
        scores = self.reranker.score(query, [self.table.clauses[key].text for key in pool])
        raw["rerank"] = {key: round(float(s), 6) for key, s in zip(pool, scores, strict=True)}
        pool = sorted(pool, key=lambda key: -raw["rerank"][key])
        return head + pool + order[exact_count + 20 :]
