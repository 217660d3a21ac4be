"""Fusion of ranked lists (pure functions over plain data): weighted reciprocal rank fusion,
and the z-score sum that joins a clause's own score with its question hooks' score."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import TypeVar

import numpy as np

RRF_K = 60
K = TypeVar("K", bound=Hashable)


def rrf(rankings: Mapping[str, Sequence[K]], weights: dict[str, float], k: int = RRF_K) -> dict[K, float]:
    """Weighted reciprocal rank fusion: Σ w_r / (k + rank_r), ranks from 1."""
    fused: dict[K, float] = {}
    for name, ranked in rankings.items():
        w = weights.get(name, 1.0)
        for rank, key in enumerate(ranked, start=1):
            fused[key] = fused.get(key, 0.0) + w / (k + rank)
    return fused


def combine_with_hooks(own: Mapping[K, float], hook: Mapping[K, float], rho: float) -> list[K]:
    """Keys ranked best first by their z-score: a key with a hook z scores
    (own + hook) / sqrt(2 + 2ρ) — unit variance again, for ρ the correlation of the
    two signals — and a key without one keeps its own z, so fusion is neutral to coverage
    while a clause whose text and hooks agree rises (pure)."""
    scale = float(np.sqrt(max(2.0 + 2.0 * (rho if np.isfinite(rho) else 0.0), 1e-6)))
    merged = {key: (z + hook[key]) / scale if key in hook else z for key, z in own.items()}
    return sorted(merged, key=lambda key: -merged[key])
