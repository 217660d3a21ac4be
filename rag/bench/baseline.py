"""The naive configuration: the usual tutorial RAG the benchmark compares against.

Fixed-size character chunks (RecursiveCharacterTextSplitter, 500/50) over the
same normalised documents, dense retrieval only, cosine top-k, the top chunks
are both the answer and the citations, and it never abstains. It exists so the
report can show what clause-aware chunking, hybrid retrieval and abstention
buy over the obvious approach — it is not meant to be good.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter

from rag.models import Document

log = logging.getLogger(__name__)

NAIVE_CHUNK_SIZE = 500
NAIVE_CHUNK_OVERLAP = 50
_EMBED_BATCH = 64
_KEEP_CACHES = 3  # a few matrices, so switching between two embedders does not re-embed

# Chunk matrices by cache key, so that repeated benchmark runs in one process
# (the UI's benchmark tab) embed the naive chunks at most once.
_MATRICES: dict[str, np.ndarray] = {}


@dataclass
class ConfigOutput:
    """What every configuration produces for one question."""

    retrieved: list[tuple[str, str]]  # ranked (label, text)
    cited: list[tuple[str, str]]  # (label, text)
    answer: str
    abstained: bool
    latency_ms: float = 0.0
    error: str = ""  # set when the configuration failed on this item
    extra: dict[str, Any] = field(default_factory=dict)


def split_documents(
    documents: Iterable[Document],
    *,
    chunk_size: int = NAIVE_CHUNK_SIZE,
    chunk_overlap: int = NAIVE_CHUNK_OVERLAP,
) -> list[tuple[str, str]]:
    """(label, text) per naive chunk; labels are naive#<short title>#<n>, n from 1."""
    # Default separators on purpose: this is the splitter as tutorials use it.
    splitter = RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chunks: list[tuple[str, str]] = []
    for doc in documents:
        name = doc.short_title or doc.doc_id
        for n, text in enumerate(splitter.split_text(doc.text), start=1):
            chunks.append((f"naive#{name}#{n}", text))
    return chunks


def _embedder_identity(embedder: Embeddings) -> str:
    # Two embedders give incompatible vectors for the same texts, so the
    # model name (where the wrapper exposes one) is part of the cache key.
    for attr in ("model_name", "model", "name"):
        value = getattr(embedder, attr, None)
        if isinstance(value, str) and value:
            return f"{type(embedder).__name__}:{value}"
    return type(embedder).__name__


def cache_key(texts: Sequence[str], embedder: Embeddings) -> str:
    h = hashlib.sha1(_embedder_identity(embedder).encode("utf-8"))
    for text in texts:
        h.update(b"\x00")
        h.update(text.encode("utf-8"))
    return h.hexdigest()


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    norms[norms == 0] = 1.0  # an all-zero vector scores 0 against everything
    return matrix / norms


class NaiveBaseline:
    """Dense-only retrieval over fixed-size chunks, with an in-memory and on-disk matrix cache."""

    def __init__(
        self,
        documents: Iterable[Document],
        embedder: Embeddings,
        data_dir: Path,
        *,
        chunk_size: int = NAIVE_CHUNK_SIZE,
        chunk_overlap: int = NAIVE_CHUNK_OVERLAP,
        vectors_for: Callable[[list[str]], dict[str, list[float]]] | None = None,
    ) -> None:
        self.chunks = split_documents(
            documents, chunk_size=chunk_size, chunk_overlap=chunk_overlap
        )
        self.embedder = embedder
        # Texts → vectors through the shared embedding cache (and worker processes), so a
        # corpus change embeds only the chunks that changed; None = the embedder directly.
        self.vectors_for = vectors_for
        self.key = cache_key([t for _, t in self.chunks], embedder)
        self.cache_path = Path(data_dir) / "baseline" / f"naive-{self.key[:20]}.npy"
        self._matrix: np.ndarray | None = None

    def matrix(self, progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """Unit-normalised chunk embeddings: from memory, else disk, else the embedder.

        `progress(done, total)` is called per embedded batch: a first run over
        the whole corpus takes minutes on a CPU and must not look hung.
        """
        if self._matrix is not None:
            return self._matrix
        cached = _MATRICES.get(self.key)
        if cached is None:
            cached = self._load() if self.cache_path.exists() else None
        if cached is None:
            cached = self._embed_all(progress)
            self._save(cached)
        _MATRICES[self.key] = cached
        self._matrix = cached
        return cached

    def _load(self) -> np.ndarray | None:
        try:
            matrix = np.load(self.cache_path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable naive cache %s: %s", self.cache_path, exc)
            return None
        if matrix.ndim != 2 or matrix.shape[0] != len(self.chunks):
            log.warning("ignoring naive cache %s: shape %s", self.cache_path, matrix.shape)
            return None
        log.info("naive baseline: loaded %d chunk vectors from %s", len(matrix), self.cache_path)
        return matrix

    def _embed_all(self, progress: Callable[[int, int], None] | None) -> np.ndarray:
        texts = [t for _, t in self.chunks]
        log.info("naive baseline: embedding %d chunks", len(texts))
        if self.vectors_for is not None and texts:
            by_text = self.vectors_for(texts)
            return _unit_rows(np.asarray([by_text[t] for t in texts], dtype=np.float32))
        rows: list[list[float]] = []
        for start in range(0, len(texts), _EMBED_BATCH):
            rows.extend(self.embedder.embed_documents(texts[start : start + _EMBED_BATCH]))
            if progress:
                progress(len(rows), len(texts))
        if not rows:
            return np.zeros((0, 1), dtype=np.float32)
        return _unit_rows(np.asarray(rows, dtype=np.float32))

    def _save(self, matrix: np.ndarray) -> None:
        try:
            self.cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.cache_path.with_name(self.cache_path.name + f".{os.getpid()}.tmp")
            with open(tmp, "wb") as fh:
                np.save(fh, matrix, allow_pickle=False)
            # Atomic so a concurrent run never reads a half-written matrix.
            os.replace(tmp, self.cache_path)
            self._prune()
        except OSError as exc:
            # The cache only saves time; a read-only data dir must not fail the run.
            log.warning("could not write naive cache %s: %s", self.cache_path, exc)

    def _prune(self) -> None:
        # Every re-ingest that changes a text changes the key; without pruning
        # the data dir would collect one stale matrix per rebuild.
        others = [p for p in self.cache_path.parent.glob("naive-*.npy") if p != self.cache_path]
        others.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        for path in others[_KEEP_CACHES - 1 :]:
            path.unlink(missing_ok=True)

    def search(self, question: str, k: int) -> list[tuple[str, str, float]]:
        matrix = self.matrix()
        if not len(matrix) or k <= 0:
            return []
        query = np.asarray(self.embedder.embed_query(question), dtype=np.float32)
        norm = float(np.linalg.norm(query))
        scores = matrix @ (query / norm if norm else query)
        # Stable sort so ties keep document order and results are reproducible.
        order = np.argsort(-scores, kind="stable")[:k]
        return [(self.chunks[i][0], self.chunks[i][1], float(scores[i])) for i in order]

    def answer(self, question: str, k: int = 5) -> ConfigOutput:
        """The tutorial pipeline: the top-k chunks are the answer and the citations."""
        hits = self.search(question, k)
        pairs = [(label, text) for label, text, _ in hits]
        return ConfigOutput(
            retrieved=pairs,
            cited=list(pairs),
            answer="\n\n".join(text for _, text in pairs),
            abstained=False,
        )
