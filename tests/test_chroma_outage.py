"""A Chroma server (RAG_CHROMA_URL) that dies, hangs and comes back: answers go on from the
loaded index, /api/health says degraded, every Chroma call times out, and it recovers
without a restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_tiny_corpus
from fastapi.testclient import TestClient

from rag.index import store
from rag.index.ingest import ingest
from rag.qa.answerer import DENSE_UNAVAILABLE
from rag.qa.assistant import Assistant
from rag.qa.live import STORE_UNREACHABLE
from rag.settings import Settings
from ui.app import build_app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChromaServer:
    def __init__(self, path: Path) -> None:
        exe = Path(sys.executable).with_name("chroma")
        self.exe = str(exe if exe.exists() else shutil.which("chroma") or "chroma")
        self.path, self.port = path, _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.exe, "run", "--path", str(self.path), "--host", "127.0.0.1",
                                      "--port", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.2)
        pytest.fail("chroma run did not start within 60 s")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=20)


@pytest.fixture()
def chroma(tmp_path):
    server = ChromaServer(tmp_path / "server")
    server.start()
    yield server
    server.stop()


def _timed_ask(assistant: Assistant, question: str):
    t0 = time.monotonic()
    result = assistant.ask(question)
    return result, time.monotonic() - t0


def test_chroma_outage_keeps_answers_reports_degraded_and_recovers(chroma, tmp_path, monkeypatch):
    """Queries score the vectors loaded in memory: a dead or hung Chroma server changes no
    answer and never blocks one; /api/health says degraded (ingest needs the store) within
    the call timeout, and ok again once the server is back, without a restart."""
    monkeypatch.setattr(store, "CHROMA_TIMEOUT_S", 2.0)  # the default (10 s) is too slow for a test
    settings = Settings(data_dir=tmp_path / "data", cache_dir=tmp_path / "cache", embedder="hash",
                        corpus_dir=make_tiny_corpus(tmp_path), chroma_url=chroma.url)
    ingest(settings, progress=False)
    assistant = Assistant(settings)
    question = "外商投资法第二十一条"
    healthy, _ = _timed_ask(assistant, question)
    assert DENSE_UNAVAILABLE not in healthy.warnings and healthy.citations
    with TestClient(build_app(assistant)) as api:
        assert api.get("/api/health").json()["status"] == "ok"

        chroma.signal(signal.SIGKILL)  # the server dies
        chroma.proc.wait(timeout=20)  # type: ignore[union-attr]
        down, seconds = _timed_ask(assistant, question)
        assert seconds < 10 and not down.warnings
        assert [c.label for c in down.citations] == [c.label for c in healthy.citations]
        assert any(r.scores.get("dense") is not None for r in down.retrieved)
        t0 = time.monotonic()
        health = api.get("/api/health").json()
        assert health["status"] == "degraded" and STORE_UNREACHABLE in health["problem"]
        assert time.monotonic() - t0 < 2.0 * 3 + 2  # the timeout, not a hang
        r = api.post("/api/ask", json={"question": "M0用地能建住宅吗？"})
        assert r.status_code == 200 and r.json()["citations"]

        chroma.start()  # back on the same port and path: no restart of the assistant
        assert api.get("/api/health").json()["status"] == "ok"

        chroma.signal(signal.SIGSTOP)  # a server that accepts and never answers
        try:
            hung, seconds = _timed_ask(assistant, question)
            assert hung.citations and seconds < 5
            t0 = time.monotonic()
            assert api.get("/api/health").json()["status"] == "degraded"
            assert time.monotonic() - t0 < 2.0 * 3 + 2
        finally:
            chroma.signal(signal.SIGCONT)
        assert api.get("/api/health").json()["status"] == "ok"


def test_every_chroma_http_call_has_a_timeout(chroma):
    client = store.make_client(Path("unused"), chroma.url)
    timeout = client._server._session.timeout  # type: ignore[attr-defined]
    assert timeout.read == store.CHROMA_TIMEOUT_S and timeout.connect is not None


def test_a_failing_query_embedder_answers_from_bm25_with_a_warning(hash_index):
    """The embedder fails (out of memory, a broken model file): the answer still comes,
    from the bm25 index, with the visible warning; the embedder is tried once, not again
    under the search lock."""
    assistant = Assistant(hash_index)

    class Broken:
        calls = 0

        def embed_query(self, text: str) -> list[float]:
            Broken.calls += 1
            raise RuntimeError("embedding engine crashed")

    assistant.searcher.embedder = Broken()
    result = assistant.ask("外商投资法第二十一条")
    assert DENSE_UNAVAILABLE in result.warnings
    assert [c.label for c in result.citations] == ["《外商投资法》第二十一条"]
    assert all(r.scores.get("dense") is None for r in result.retrieved)
    assert Broken.calls == 1
