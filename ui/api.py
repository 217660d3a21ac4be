"""The JSON API served beside the Gradio UI: POST /api/ask and GET /api/health (and the
OpenAI-compatible /v1 routes of ui/openai_api.py, behind the same checks).

Bodies are parsed by hand so that malformed JSON gets the same error shape as any other bad
input; answers run in the thread pool so a slow question does not block the event loop that
also serves the UI.

Errors are always {"error": message, "hint": hint} so scripts can show them the
way the CLI does: 400/413/422 for input the API cannot accept, 401 without the
token (when RAG_AUTH_TOKEN is set), 429 over the rate limit, 503 while the index
is missing or stale (the operator has to build it), 500 for anything else.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rag.corpus.normalize import unusable_character
from rag.errors import ConfigError, IndexMismatchError, IndexNotFoundError, RagError, StoreFullError
from rag.feedback import FeedbackStore, check_feedback
from rag.index.clauses import Filters, filters_from

from .service import AssistantService

log = logging.getLogger(__name__)

MODES = ("extractive", "llm")
K_RANGE = (1, 20)
MAX_QUESTION_CHARS = 2000
MAX_BODY_BYTES = 64 * 1024  # a question, 40 turns of history and filters fit with room to spare
MAX_HISTORY_TURNS = 40  # only the last turns matter for a follow-up
DEFAULT_RATE_LIMIT = 60  # requests per minute per client address (RAG_RATE_LIMIT)


class BadRequest(Exception):
    def __init__(self, message: str, hint: str = "", status: int = 422,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message, self.hint, self.status, self.headers = message, hint, status, headers


def error_response(status: int, message: str, hint: str = "",
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status, headers=headers)


def rag_error_status(exc: RagError) -> int:
    # A missing or mismatched index is a server state the operator fixes by
    # (re)building; clients may retry later, hence 503.
    if isinstance(exc, IndexNotFoundError | IndexMismatchError):
        return 503
    return 507 if isinstance(exc, StoreFullError) else 500


def as_bad_request(exc: Exception, doing: str) -> BadRequest:
    """Any failure of a JSON route as the reply to send (each route writes it in its own
    shape): a bad request as it is, a RagError with its status, a bug as a logged 500."""
    if isinstance(exc, BadRequest):
        return exc
    if isinstance(exc, RagError):
        log.warning("%s failed: %s", doing, exc)
        return BadRequest(exc.message, exc.hint, status=rag_error_status(exc))
    log.error("%s failed", doing, exc_info=exc)
    return BadRequest(f"internal error while {doing}", "see the server log", status=500)


def check_text(name: str, text: str) -> None:
    problem, hint = unusable_character(text)
    if problem:
        raise BadRequest(f"{name} {problem}", hint)


def parse_ask(body: Any, llm_available: bool,
              known_docs: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Validate a POST /api/ask body into keyword arguments for Assistant.ask.

    `known_docs` (doc_id → doc_type) lets filters naming no document fail loudly
    instead of silently filtering everything away."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object",
                         'send {"question": "...", "k": 5, "mode": "extractive"}')
    question = body.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRequest("question is missing or empty", 'send {"question": "M0用地能建住宅吗？"}')
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequest(f"question is longer than {MAX_QUESTION_CHARS} characters", "ask a shorter question")
    check_text("question", question)
    k = body.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not K_RANGE[0] <= k <= K_RANGE[1]:
        raise BadRequest(f"k must be an integer from {K_RANGE[0]} to {K_RANGE[1]}", "k is the number of clauses to retrieve, e.g. 5")
    mode = body.get("mode", "extractive")
    if mode not in MODES:
        raise BadRequest(f"unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
    if mode == "llm" and not llm_available:
        raise BadRequest("mode 'llm' is not configured on this server", "use mode 'extractive'", status=400)
    history = _parse_history(body.get("history"))
    filters = _parse_filters(body.get("filters"), known_docs)
    return {"question": question.strip(), "history": history, "k": k, "mode": mode, "filters": filters}


def _parse_history(history: Any) -> list[dict[str, str]]:
    history = history or []
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in history
    ):
        raise BadRequest("history must be a list of {role: user|assistant, content: str}",
                         "send the previous turns, or omit history")
    if len(history) > MAX_HISTORY_TURNS:
        raise BadRequest(f"history has {len(history)} turns; at most {MAX_HISTORY_TURNS} are accepted",
                         f"send only the last {MAX_HISTORY_TURNS} turns")
    for i, m in enumerate(history):
        check_text(f"history[{i}].content", m["content"])
    return [{"role": m["role"], "content": m["content"]} for m in history]


def _parse_filters(filters: Any, known_docs: Mapping[str, str] | None) -> Filters:
    try:
        return filters_from(filters, known_docs, docs_hint="see `rag corpus list` for the doc_ids; ")
    except ConfigError as exc:
        raise BadRequest(exc.message, exc.hint) from exc


def known_documents(assistant: AssistantService) -> dict[str, str] | None:
    try:
        return {d.doc_id: d.doc_type for d in assistant.documents()}
    except RagError:
        return None  # no index: ask() itself reports that


# --------------------------------------------------------------------------- access


def token_matches(given: str, token: str) -> bool:
    # compare_digest: the time taken does not tell how much of the token was right.
    return hmac.compare_digest(given.encode("utf-8", "replace"), token.encode("utf-8"))


def bearer_ok(request: Request, token: str) -> bool:
    if not token:
        return True
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and token_matches(given.strip(), token)


class RateLimiter:
    """A token bucket per client address: `per_minute` requests, refilled continuously."""

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> float:
        """0 when the request may go ahead, else the seconds to wait."""
        if self.capacity <= 0:
            return 0.0
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                if len(self._buckets) > 10_000:  # bounded memory under many addresses
                    self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / self.rate


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refused as soon as it passes `limit` (a declared or a streamed length)."""
    declared = request.headers.get("content-length", "")
    too_big = BadRequest(f"the request body is larger than {limit} bytes",
                         f"questions are at most {MAX_QUESTION_CHARS} characters and history "
                         f"at most {MAX_HISTORY_TURNS} turns", status=413)
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    body = bytearray()
    async for piece in request.stream():
        body += piece
        if len(body) > limit:
            raise too_big
    return bytes(body)


async def guarded_json(request: Request, auth_token: str, limiter: RateLimiter, rate_limit: int,
                       read: bool = True) -> Any:
    """What every JSON route checks first, in this order: the token (401), the client's rate
    (429), the body's size (413) and its JSON (400); returns the parsed body (None unread)."""
    if not bearer_ok(request, auth_token):
        raise BadRequest("missing or wrong token", "send the header Authorization: Bearer <RAG_AUTH_TOKEN>",
                         status=401, headers={"WWW-Authenticate": "Bearer"})
    wait = limiter.check(request.client.host if request.client else "?")
    if wait:
        raise BadRequest(f"more than {rate_limit} requests per minute from this client",
                         f"retry after {math.ceil(wait)} s", status=429,
                         headers={"Retry-After": str(math.ceil(wait))})
    if not read:
        return None
    raw = await read_body(request)
    try:
        return json.loads(raw or b"null")
    except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting or digits
        raise BadRequest(f"the body is not valid JSON: {str(exc)[:200]}", "send application/json",
                         status=400) from exc


async def question_payload(request: Request, assistant: AssistantService, auth_token: str, limiter: RateLimiter,
                           rate_limit: int) -> tuple[Any, dict[str, str] | None]:
    """The checked body of a question, and the documents when its filters name some."""
    payload = await guarded_json(request, auth_token, limiter, rate_limit)
    wants_docs = isinstance(payload, dict) and isinstance(payload.get("filters"), dict)
    return payload, (await run_in_threadpool(known_documents, assistant) if wants_docs else None)


def add_api_routes(app: FastAPI, assistant: AssistantService, *, auth_token: str = "",
                   rate_limit: int = 0, feedback_max: int = 10_000) -> RateLimiter:
    """Register /api/ask, /api/feedback and /api/health; they must be added before Gradio is
    mounted at '/'.
    Returns the rate limiter, for the other JSON routes to share."""
    limiter = RateLimiter(rate_limit)

    @app.post("/api/ask")
    async def api_ask(request: Request) -> Any:
        try:
            payload, known = await question_payload(request, assistant, auth_token, limiter, rate_limit)
            kwargs = parse_ask(payload, bool(assistant.llm_available), known)
            result = await run_in_threadpool(assistant.ask, **kwargs)
            return JSONResponse(result.to_dict())
        except Exception as exc:
            bad = as_bad_request(exc, "answering")
            return error_response(bad.status, bad.message, bad.hint, bad.headers)

    @app.post("/api/feedback")
    async def api_feedback(request: Request) -> Any:
        try:
            payload = await guarded_json(request, auth_token, limiter, rate_limit)
            if assistant.data_dir is None:
                raise BadRequest("this server keeps no feedback (the demo assistant)", "start it with `rag serve`",
                                 status=404)
            try:
                fb = check_feedback(payload)
            except ConfigError as exc:
                raise BadRequest(exc.message, exc.hint) from exc
            if fb.correct_label:
                found = await run_in_threadpool(assistant.find, fb.correct_label)
                if len(found) != 1:
                    raise BadRequest(f"correct_label {fb.correct_label!r} names no single clause of the corpus",
                                     "give a label such as 外商投资法第二十一条 or 《工作方案》（十三） "
                                     "(any form `rag corpus show` accepts)")
                fb = replace(fb, correct_label=found[0].label)
            store = FeedbackStore(assistant.data_dir, feedback_max)
            stored = await run_in_threadpool(store.add, replace(fb, build=assistant.build))
            return JSONResponse(stored.to_dict(), status_code=201)
        except Exception as exc:
            bad = as_bad_request(exc, "storing feedback")
            return error_response(bad.status, bad.message, bad.hint, bad.headers)

    @app.get("/api/health")
    async def api_health(request: Request) -> Any:
        try:
            health = await run_in_threadpool(assistant.health)
            if not bearer_ok(request, auth_token):
                # Without the token the caller learns only whether to send traffic.
                return JSONResponse({"status": health.status})
            return JSONResponse(health.to_dict())
        except RagError as exc:
            if not bearer_ok(request, auth_token):
                return JSONResponse({"status": "unavailable"}, status_code=rag_error_status(exc))
            return error_response(rag_error_status(exc), exc.message, exc.hint)
        except Exception:
            log.exception("health check failed")
            return error_response(500, "internal error in the health check", "see the server log")

    return limiter
