"""Embedding many texts: in worker processes (one e5 thread each) when it pays, else in-process.

Order is preserved; `on_batch` receives (text, vector) pairs as they arrive, so a cache
keeps what was done when the run is interrupted. Ctrl-C cancels the queued batches (the
workers ignore SIGINT: only the parent decides), lets the workers finish the batch in hand
and exit, and re-raises.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from tqdm import tqdm

BATCH = 8  # texts per job: small enough for an even split and a live progress bar
MIN_PER_WORKER = 16  # below this a worker's start-up (~0.5 s) is not worth it
# Embedders whose engine runs one thread per process well; st: (torch) threads itself.
PROCESS_EMBEDDERS = ("e5-small", "hash")

_worker_embedder: Any = None


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _die_with_parent() -> None:
    """Linux: a worker is killed when its parent dies (kill -9 of an ingest leaves no orphans
    holding the terminal or the cache)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: workers exit when their queue closes
        pass


def _init_worker(embedder_name: str) -> None:
    global _worker_embedder
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ["OMP_NUM_THREADS"] = "1"
    from rag.index.embed import get_embedder

    _worker_embedder = get_embedder(embedder_name)


def embed_marked(embedder, texts: Sequence[str]) -> list[list[float]]:
    """Passages as documents; texts carrying the query marker (question hooks) as queries."""
    from rag.corpus.hooks import QUERY_KEY_PREFIX

    out: list[list[float] | None] = [None] * len(texts)
    plain = [i for i, t in enumerate(texts) if not t.startswith(QUERY_KEY_PREFIX)]
    for i, vec in zip(plain, embedder.embed_documents([texts[i] for i in plain]), strict=True):
        out[i] = vec
    for i, t in enumerate(texts):
        if out[i] is None:
            out[i] = embedder.embed_query(t[len(QUERY_KEY_PREFIX):])
    return [v for v in out if v is not None]


def _embed_job(job: tuple[int, list[str]]) -> tuple[int, list[list[float]]]:
    start, texts = job
    return start, embed_marked(_worker_embedder, texts)


def embed_texts(texts: Sequence[str], embedder_name: str, workers: int = 0,
                on_batch: Callable[[list[tuple[str, list[float]]]], None] | None = None,
                progress: bool = True, desc: str = "embedding") -> list[list[float]]:
    """Vectors of `texts` in order. `workers` 0 = one per core; 1 = in this process."""
    texts = list(texts)
    workers = workers or default_workers()
    workers = min(workers, len(texts) // MIN_PER_WORKER)
    if embedder_name.partition(":")[0] not in PROCESS_EMBEDDERS:
        workers = 1
    out: list[list[float] | None] = [None] * len(texts)
    jobs = [(i, texts[i : i + BATCH]) for i in range(0, len(texts), BATCH)]
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress or not texts) as bar:

        def take(start: int, vecs: list[list[float]]) -> None:
            out[start : start + len(vecs)] = vecs
            if on_batch is not None:
                on_batch(list(zip(texts[start : start + len(vecs)], vecs, strict=True)))
            bar.update(len(vecs))

        if workers <= 1:
            from rag.index.embed import get_embedder

            embedder = get_embedder(embedder_name)
            for start, part in jobs:
                take(start, embed_marked(embedder, part))
        else:
            # spawn: a fork would copy the parent's threads (OpenMP, Chroma) in unknown states.
            # An executor, not a Pool: a worker that fails to start or dies raises here
            # (BrokenProcessPool) instead of being replaced forever.
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(embedder_name,))
            try:
                for future in as_completed([pool.submit(_embed_job, job) for job in jobs]):
                    take(*future.result())
            except BaseException:
                # Ctrl-C: the workers ignore SIGINT, finish the job in hand (one small
                # batch) and exit; nothing queued is started.
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown()
    return [v for v in out if v is not None]
