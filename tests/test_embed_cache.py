"""The per-user embedding cache and the worker-process embedding, with the hash embedder."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rag.index.embed import EmbeddingCache, get_embedder
from rag.index.embed_pool import embed_texts
from rag.settings import REPO_ROOT, from_env


def test_cache_dir_is_per_user_and_movable(tmp_path):
    assert from_env({"XDG_CACHE_HOME": str(tmp_path)}).cache_dir == tmp_path / "etdz-rag"
    assert from_env({"RAG_CACHE_DIR": str(tmp_path / "c")}).cache_dir == tmp_path / "c"


def test_corrupt_cache_is_set_aside_with_a_warning(tmp_path, caplog):
    path = tmp_path / "embeddings.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="rag.index.embed"):
        cache = EmbeddingCache(path, "hash")
    assert "unreadable" in caplog.text
    assert path.with_suffix(".corrupt").read_bytes().startswith(b"this is not")
    cache.put_many([("经开区", [0.5, 0.25])])
    assert cache.get_many(["经开区", "other"]) == {"经开区": [0.5, 0.25]}
    cache.close()


WRITER = """
import sys
import threading
from pathlib import Path
from rag.index.embed import EmbeddingCache
cache = EmbeddingCache(Path(sys.argv[1]), "hash")
for i in range(int(sys.argv[3])):
    cache.put_many([(f"{sys.argv[2]}-{i}-{j}", [float(i), float(j)]) for j in range(5)])
cache.close()
"""


def test_two_processes_write_the_cache_at_once(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    rounds = 150
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(rounds)], cwd=REPO_ROOT,
                              stderr=subprocess.PIPE, text=True) for name in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    cache = EmbeddingCache(path, "hash")
    texts = [f"{name}-{i}-{j}" for name in ("a", "b") for i in range(rounds) for j in range(5)]
    got = cache.get_many(texts)
    cache.close()
    assert len(got) == len(texts) and got["b-7-3"] == [7.0, 3.0]
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def test_worker_processes_keep_order_and_feed_the_cache():
    texts = [f"第{i}条 经开区用地{i * 7}平方米" for i in range(70)]
    seen: list[str] = []
    two = embed_texts(texts, "hash", workers=2, on_batch=lambda pairs: seen.extend(t for t, _ in pairs),
                      progress=False)
    assert two == get_embedder("hash").embed_documents(texts)
    assert sorted(seen) == sorted(texts)


INTERRUPTED = """
import signal, sys, time
# A runner started in the background inherits SIGINT ignored; a user's terminal does not.
signal.signal(signal.SIGINT, signal.default_int_handler)
from rag.index.embed_pool import embed_texts
texts = [("经开区" * 400) + str(i) for i in range(4000)]
def started(pairs):
    print("started", flush=True)
    time.sleep(0.05)  # ~25 s in all: the run is surely still going when Ctrl-C comes
embed_texts(texts, "hash", workers=2, on_batch=started, progress=False)
print("finished", flush=True)
"""


def test_ctrl_c_stops_the_workers():
    psutil = pytest.importorskip("psutil")
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "started"
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) >= 2  # the workers (and spawn's resource tracker)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "finished" not in out and "KeyboardInterrupt" in err
    deadline = time.monotonic() + 10
    while any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children):
        assert time.monotonic() < deadline, "a worker outlived Ctrl-C"
        time.sleep(0.2)


def test_a_worker_that_cannot_start_is_an_error_not_a_hang():
    from concurrent.futures.process import BrokenProcessPool

    # "hash:x" passes the parent's check but the worker's get_embedder rejects it.
    with pytest.raises(BrokenProcessPool):
        embed_texts([f"text {i}" for i in range(40)], "hash:x", workers=2, progress=False)


def test_query_vectors_are_remembered_and_bounded(monkeypatch):
    import rag.index.embed as embed

    monkeypatch.setattr(embed, "QUERY_CACHE_SIZE", 2)
    e5 = embed.E5SmallEmbeddings()
    first = e5.embed_query("经开区")
    first[0] = 99.0  # a caller changing its list must not change the remembered vector
    assert e5.embed_query("经开区")[0] != 99.0
    e5.embed_query("外商投资法")
    e5.embed_query("经开区")  # most recent again
    e5.embed_query("标准地")
    assert list(e5._queries) == ["经开区", "标准地"]


def test_a_second_query_handle_opens_only_when_the_first_is_busy():
    import rag.index.embed as embed

    e5 = embed.E5SmallEmbeddings(max_handles=2)
    alone = e5.embed_query("外商投资法")
    assert e5._opened == 1  # one caller at a time: one handle, as before
    with e5._handle():  # the first handle is busy (another request is embedding)
        busy = e5.embed_query("标准地")  # does not wait: a second handle is opened
        assert e5._opened == 2
    assert e5.embed_query("外商投资法") == alone
    fresh = embed.E5SmallEmbeddings(max_handles=1)
    assert np.allclose(busy, fresh.embed_query("标准地"), atol=1e-6)


def test_with_one_handle_a_second_caller_waits_for_it():
    import rag.index.embed as embed

    e5 = embed.E5SmallEmbeddings(max_handles=1)
    out: list[list[float]] = []
    with e5._handle():
        t = threading.Thread(target=lambda: out.append(e5.embed_query("经开区")))
        t.start()
        t.join(timeout=0.5)
        assert t.is_alive() and not out  # the C engine's buffers are never shared
    t.join(timeout=30)
    assert len(out) == 1 and e5._opened == 1


def test_concurrent_queries_give_the_vectors_of_lone_queries():
    from concurrent.futures import ThreadPoolExecutor

    import rag.index.embed as embed

    texts = [f"经开区第{i}条 foreign investment {i}" for i in range(12)]
    lone = embed.E5SmallEmbeddings(max_handles=1)
    expected = [lone.embed_query(t) for t in texts]
    shared = embed.E5SmallEmbeddings(max_handles=2)
    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(shared.embed_query, texts))
    assert all(np.allclose(g, e, atol=1e-6) for g, e in zip(got, expected, strict=True))
