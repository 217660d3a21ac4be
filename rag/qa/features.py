"""What the learned ranking stage sees of each candidate clause: pure functions from the raw
signals a search computed (scores, ranks, document and query facts) to a feature matrix."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FEATURE_NAMES = (
    "bm25_z", "dense_z", "hook_bm25_z", "hook_dense_z", "has_hooks",
    "bm25_rel", "dense_gap", "hook_bm25_rel", "hook_dense_gap",
    "rrf_bm25", "rrf_dense", "fused_rank_log", "first_fused",
    "doc_named", "coverage", "hook_coverage",
    "kind_measure", "kind_article", "kind_other",
    "type_notice", "type_law", "type_regulation", "type_other", "in_force",
    "clause_len_log", "query_len_log", "lang_en",
    "en_x_dense_z", "en_x_bm25_z", "en_x_hook_dense_z", "en_x_coverage",
)
MISSING_Z = -1.0  # a signal that did not reach this clause: below the population mean


@dataclass(frozen=True)
class CandidateSignals:
    """One candidate clause's raw signals for one query (None: the signal did not score it)."""

    bm25: float | None
    bm25_z: float | None
    dense: float | None
    dense_z: float | None
    hook_bm25: float | None
    hook_bm25_z: float | None
    hook_dense: float | None
    hook_dense_z: float | None
    has_hooks: bool
    bm25_rank: int | None  # in the bm25 list (joined with its hooks), from 1
    dense_rank: int | None
    fused_rank: int  # in the fused order, from 1
    doc_named: bool  # the question names the clause's document
    coverage: float  # share of the question's terms in the clause text (weighted)
    hook_coverage: float  # the same in the clause's question hooks
    kind: str  # measure | article | …
    doc_type: str  # 政策文件 | 法律 | 行政法规 | …
    in_force: bool
    tokens: int  # the clause's length in tokens


@dataclass(frozen=True)
class QueryFacts:
    english: bool
    length: int  # characters


def _z(value: float | None) -> float:
    return MISSING_Z if value is None else float(value)


def _rrf(rank: int | None, k: int = 60) -> float:
    """The reciprocal-rank share a list gives, scaled so the top rank is 1."""
    return 0.0 if rank is None else (k + 1) / (k + rank)


def feature_matrix(cands: list[CandidateSignals], query: QueryFacts) -> np.ndarray:
    """One row per candidate, columns in FEATURE_NAMES order."""
    best = {name: max((v for c in cands if (v := getattr(c, name)) is not None), default=None)
            for name in ("bm25", "dense", "hook_bm25", "hook_dense")}
    en = 1.0 if query.english else 0.0
    rows = []
    for c in cands:
        bm25_z, dense_z = _z(c.bm25_z), _z(c.dense_z)
        bm25_rel = (c.bm25 or 0.0) / best["bm25"] if best["bm25"] else 0.0
        dense_gap = (c.dense - best["dense"]) if c.dense is not None and best["dense"] is not None else -0.2
        hook_bm25_z, hook_dense_z, hook_coverage = _z(c.hook_bm25_z), _z(c.hook_dense_z), c.hook_coverage
        hook_bm25_rel = (c.hook_bm25 or 0.0) / best["hook_bm25"] if best["hook_bm25"] else 0.0
        hook_dense_gap = (c.hook_dense - best["hook_dense"]) \
            if c.hook_dense is not None and best["hook_dense"] is not None else -0.2
        row = {
            "bm25_z": bm25_z, "dense_z": dense_z, "hook_bm25_z": hook_bm25_z, "hook_dense_z": hook_dense_z,
            "has_hooks": float(c.has_hooks), "bm25_rel": bm25_rel, "dense_gap": dense_gap,
            "hook_bm25_rel": hook_bm25_rel, "hook_dense_gap": hook_dense_gap,
            "rrf_bm25": _rrf(c.bm25_rank), "rrf_dense": _rrf(c.dense_rank),
            "fused_rank_log": math.log(c.fused_rank), "first_fused": float(c.fused_rank == 1),
            "doc_named": float(c.doc_named), "coverage": c.coverage, "hook_coverage": hook_coverage,
            "kind_measure": float(c.kind == "measure"), "kind_article": float(c.kind == "article"),
            "kind_other": float(c.kind not in ("measure", "article")),
            "type_notice": float(c.doc_type == "政策文件"), "type_law": float(c.doc_type == "法律"),
            "type_regulation": float(c.doc_type == "行政法规"),
            "type_other": float(c.doc_type not in ("政策文件", "法律", "行政法规")),
            "in_force": float(c.in_force),
            "clause_len_log": math.log1p(c.tokens), "query_len_log": math.log1p(query.length), "lang_en": en,
            "en_x_dense_z": en * dense_z, "en_x_bm25_z": en * bm25_z, "en_x_hook_dense_z": en * hook_dense_z,
            "en_x_coverage": en * c.coverage,
        }
        rows.append([row[name] for name in FEATURE_NAMES])
    x = np.asarray(rows, dtype=np.float64).reshape(len(rows), len(FEATURE_NAMES))
    return drop_hooks(x, np.array([not c.has_hooks for c in cands], dtype=bool))


_HOOK_FROM_OWN = {"hook_bm25_z": "bm25_z", "hook_dense_z": "dense_z", "hook_coverage": "coverage",
                  "hook_bm25_rel": "bm25_rel", "hook_dense_gap": "dense_gap", "en_x_hook_dense_z": "en_x_dense_z"}


def drop_hooks(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The features of these rows as for a clause without hooks (a document a user added):
    has_hooks 0, and each hook signal said by the clause's own. Training applies it to random
    candidates too, so the model learns what missing hooks mean instead of punishing them."""
    x = x.copy()
    x[rows, FEATURE_NAMES.index("has_hooks")] = 0.0
    for hook, own in _HOOK_FROM_OWN.items():
        x[rows, FEATURE_NAMES.index(hook)] = x[rows, FEATURE_NAMES.index(own)]
    return x
