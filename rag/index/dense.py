"""Exact dense scoring over the stored vectors (Chroma stays the store).

Chroma's HNSW graph is approximate and is not built the same way twice, so two builds of
one corpus ranked differently. At this corpus size an exact matrix product costs about a
millisecond, so queries score every vector; the matrix is saved beside the lexical index
at ingest and read back in milliseconds at start.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
FILE = "dense.npz"


def limit_blas_threads() -> None:
    """One BLAS thread for this process's matrix products.

    Scoring is one matrix-vector product per query, memory-bound. With OpenBLAS's default
    of a thread per core, its threads spin against the other requests and jobs of a
    shared 2-core machine: measured under load (load average 5), the 4,590-chunk product
    took 8.0 ms with the default and 0.33 ms with one thread, the 31,225-hook one 8.0 vs
    2.4 ms. Concurrent requests are the parallelism a server needs."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def unit_rows(vectors: list[list[float]] | np.ndarray, dim: int) -> np.ndarray:
    mat = np.asarray(vectors, dtype=np.float32).reshape(-1, dim)
    norms = np.linalg.norm(mat, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return mat / norms


@dataclass
class DenseIndex:
    chunk_ids: list[str]
    chunks: np.ndarray  # (n_chunks, dim), unit rows
    hook_clauses: list[tuple[str, int]]
    hook_kinds: list[str]
    hooks: np.ndarray  # (n_hooks, dim), unit rows

    @classmethod
    def build(cls, chunk_ids: list[str], chunk_vectors: list[list[float]], dim: int,
              hook_clauses: list[tuple[str, int]] | None = None, hook_kinds: list[str] | None = None,
              hook_vectors: list[list[float]] | None = None) -> DenseIndex:
        return cls(list(chunk_ids), unit_rows(chunk_vectors, dim), list(hook_clauses or []),
                   list(hook_kinds or []), unit_rows(hook_vectors or [], dim))

    def __post_init__(self) -> None:
        # Rows of one clause are contiguous (ingest writes them sorted by clause): the best
        # hook of every clause is one reduceat over segment starts.
        starts = [i for i, key in enumerate(self.hook_clauses) if i == 0 or key != self.hook_clauses[i - 1]]
        self.segment_starts = np.asarray(starts, dtype=np.int64)
        self.segment_clauses = [self.hook_clauses[i] for i in starts]
        if len(set(self.segment_clauses)) != len(self.segment_clauses):
            raise ValueError("hook rows must be grouped by clause")

    def best_hook_per_clause(self, query: np.ndarray) -> np.ndarray:
        """Best cosine among each clause's hooks, one value per entry of segment_clauses."""
        if not len(self.hook_clauses):
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(self.hooks @ query, self.segment_starts)

    def chunk_scores(self, query: np.ndarray) -> np.ndarray:
        return self.chunks @ query

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"chunk_ids": self.chunk_ids, "hook_clauses": [list(k) for k in self.hook_clauses],
                "hook_kinds": self.hook_kinds}
        tmp = folder / (FILE + ".tmp.npz")
        np.savez(tmp, chunks=self.chunks, hooks=self.hooks, meta=np.array(json.dumps(meta, ensure_ascii=False)))
        tmp.replace(folder / FILE)

    @classmethod
    def load(cls, folder: Path) -> DenseIndex | None:
        path = folder / FILE
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                meta = json.loads(str(data["meta"]))
                return cls(meta["chunk_ids"], data["chunks"], [(d, int(o)) for d, o in meta["hook_clauses"]],
                           meta["hook_kinds"], data["hooks"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("dense matrix %s is unreadable (%s); reading vectors from the store", path, exc)
            return None


def standardise(values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """z-scores against the (masked) population of this query: one scale for signals whose
    raw ranges differ (question↔question cosines run higher than question↔clause)."""
    pool = values[mask > 0] if mask is not None else values
    if pool.size < 2:
        return np.zeros_like(values)
    std = float(pool.std()) or 1.0
    return (values - float(pool.mean())) / std


def top_indices(scores: np.ndarray, n: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Indices of the n best scores (masked-out entries never), best first."""
    if scores.size == 0:
        return np.zeros(0, dtype=np.int64)
    s = np.where(mask > 0, scores, -np.inf) if mask is not None else scores
    n = min(n, s.size)
    part = np.argpartition(-s, n - 1)[:n]
    order = part[np.argsort(-s[part], kind="stable")]
    return order[np.isfinite(s[order])]
