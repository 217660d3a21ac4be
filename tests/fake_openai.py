"""A scripted OpenAI-compatible endpoint on loopback, for the faults a real one shows.

Each request takes the next scripted behaviour (the last one repeats):
  ("reply", text)      a normal reply; streamed as SSE when asked, in small pieces
  ("die", text)        streams `text`, then drops the connection mid-reply
  ("hang", None)       reads the request and never answers
  ("status", code)     an HTTP error with an OpenAI-style error body
  ("malformed", None)  a 200 stream whose events are not JSON
The prompts received are kept in `requests`.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class ChunkedHandler(BaseHTTPRequestHandler):
    """Quiet HTTP/1.1 with chunked replies: `_chunk(b"")` ends one, `_hang_up` drops it
    without the terminator, as a killed process leaves it."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _hang_up(self) -> None:
        self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True


def loopback_server(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """A server on a free loopback port, not yet serving, and its /v1 URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.handle_error = lambda *args: None  # type: ignore[method-assign]  # clients hang up on purpose
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


class FakeOpenAI:
    def __init__(self, script: list[tuple[str, Any]]) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self._stop = threading.Event()
        fake = self

        class Handler(ChunkedHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.requests.append(body)
                kind, arg = fake.script.pop(0) if len(fake.script) > 1 else fake.script[0]
                if kind == "hang":
                    fake._stop.wait(60)
                    return
                if kind == "status":
                    self._json(arg, {"error": {"message": "Invalid API key", "type": "invalid_request_error",
                                               "code": "invalid_api_key"}})
                    return
                if not body.get("stream"):
                    self._json(200, completion(arg if kind == "reply" else ""))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                if kind == "malformed":
                    self._chunk(b"data: {this is not json\n\n")
                    self._chunk(b"")
                    return
                pieces = [arg[i:i + 6] for i in range(0, len(arg), 6)]
                for piece in pieces:
                    self._chunk(event({"content": piece}, None))
                    time.sleep(0.01)
                if kind == "die":
                    self._hang_up()
                    return
                self._chunk(event({}, "stop"))
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server, self.url = loopback_server(Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def prompts(self) -> list[str]:
        return [m["content"] for r in self.requests for m in r.get("messages", [])]


def completion(text: str) -> dict[str, Any]:
    return {"id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}


def event(delta: dict[str, str], finish: str | None) -> bytes:
    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0, "model": "fake",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
