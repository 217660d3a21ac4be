"""The same code against a Chroma server (RAG_CHROMA_URL) started here with `chroma run`."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from rag.index.ingest import ingest
from rag.qa.assistant import Assistant


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def chroma_url(tmp_path):
    chroma = Path(sys.executable).with_name("chroma")
    if not chroma.exists():
        chroma = Path(shutil.which("chroma") or "chroma")
    port = _free_port()
    proc = subprocess.Popen([str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.3)
        else:
            pytest.fail("chroma run did not start within 60 s")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_ingest_and_ask_through_a_chroma_server(tiny_settings, chroma_url, tmp_path):
    # The tiny corpus' vectors are in the shared embedding cache: only the server path runs.
    data = tmp_path / "client-data"
    data.mkdir()
    s = replace(tiny_settings, data_dir=data, chroma_url=chroma_url)
    summary = ingest(s, progress=False)
    assert summary.changed and summary.embedded == 0 and summary.chunks > 100
    assert not (data / "chroma").exists(), "nothing may be written to the embedded store"
    a = Assistant(s)
    assert a.health().store == "chroma-http"
    result = a.ask("外商投资法第二十一条")
    assert result.citations[0].label == "《外商投资法》第二十一条"
    # A second client on another machine has no lexical index: it is rebuilt from the server.
    other = replace(s, data_dir=tmp_path / "other-machine")
    assert Assistant(other).ask("M0用地能建住宅吗？").citations[0].label == "《工作方案》（十三）"
