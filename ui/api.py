"""The JSON API served beside the Gradio UI: POST /api/ask and GET /api/health.

Errors are always {"error": message, "hint": hint} so scripts can show them the
way the CLI does: 422 for input the API cannot accept, 503 while the index is
missing or stale (the operator has to build it), 500 for anything else.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from rag.assistant import Filters
from rag.errors import IndexMismatchError, IndexNotFoundError, RagError

log = logging.getLogger(__name__)

MODES = ("extractive", "llm")
K_RANGE = (1, 20)
MAX_QUESTION_CHARS = 2000


class BadRequest(Exception):
    def __init__(self, message: str, hint: str = "", status: int = 422) -> None:
        super().__init__(message)
        self.message, self.hint, self.status = message, hint, status


def error_response(status: int, message: str, hint: str = "") -> JSONResponse:
    return JSONResponse({"error": message, "hint": hint}, status_code=status)


def rag_error_status(exc: RagError) -> int:
    # A missing or mismatched index is a server state the operator fixes by
    # (re)building; clients may retry later, hence 503.
    return 503 if isinstance(exc, IndexNotFoundError | IndexMismatchError) else 500


def parse_ask(body: Any, llm_available: bool) -> dict[str, Any]:
    """Validate a POST /api/ask body into keyword arguments for Assistant.ask."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object",
                         'send {"question": "...", "k": 5, "mode": "extractive"}')
    question = body.get("question")
    if not isinstance(question, str) or not question.strip():
        raise BadRequest("question is missing or empty", 'send {"question": "M0用地能建住宅吗？"}')
    if len(question) > MAX_QUESTION_CHARS:
        raise BadRequest(f"question is longer than {MAX_QUESTION_CHARS} characters", "ask a shorter question")
    k = body.get("k", 5)
    if isinstance(k, bool) or not isinstance(k, int) or not K_RANGE[0] <= k <= K_RANGE[1]:
        raise BadRequest(f"k must be an integer from {K_RANGE[0]} to {K_RANGE[1]}", "k is the number of clauses to retrieve, e.g. 5")
    mode = body.get("mode", "extractive")
    if mode not in MODES:
        raise BadRequest(f"unknown mode {mode!r}", f"use one of: {', '.join(MODES)}")
    if mode == "llm" and not llm_available:
        raise BadRequest("mode 'llm' is not configured on this server", "use mode 'extractive'", status=400)
    history = body.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
        for m in history
    ):
        raise BadRequest("history must be a list of {role: user|assistant, content: str}",
                         "send the previous turns, or omit history")
    filters = body.get("filters")
    if filters is not None and not isinstance(filters, dict):
        raise BadRequest("filters must be an object", '{"doc_ids": [], "doc_types": [], "in_force_only": true}')
    for name in ("doc_ids", "doc_types"):
        value = (filters or {}).get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise BadRequest(f"filters.{name} must be a list of strings")
    in_force = (filters or {}).get("in_force_only")
    if in_force is not None and not isinstance(in_force, bool):
        raise BadRequest("filters.in_force_only must be true or false")
    try:
        parsed = Filters.from_dict(filters)
    except (TypeError, ValueError) as exc:
        raise BadRequest(f"invalid filters: {exc}") from exc
    return {"question": question.strip(), "history": history, "k": k, "mode": mode, "filters": parsed}


def add_api_routes(app: FastAPI, assistant: Any) -> None:
    """Register the JSON routes; they must be added before Gradio is mounted at '/'."""

    # The body is parsed by hand so that malformed JSON gets the same error shape
    # as any other bad input; the answer itself runs in the thread pool so a slow
    # question does not block the event loop that also serves the UI.
    @app.post("/api/ask")
    async def api_ask(request: Request) -> Any:
        try:
            try:
                payload = json.loads(await request.body() or b"null")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise BadRequest(f"the body is not valid JSON: {exc}", "send application/json", status=400) from exc
            kwargs = parse_ask(payload, bool(assistant.llm_available))
            result = await run_in_threadpool(assistant.ask, **kwargs)
            return JSONResponse(result.to_dict())
        except BadRequest as exc:
            return error_response(exc.status, exc.message, exc.hint)
        except RagError as exc:
            log.warning("ask failed: %s", exc)
            return error_response(rag_error_status(exc), exc.message, exc.hint)
        except Exception:
            log.exception("ask failed")
            return error_response(500, "internal error while answering", "see the server log")

    @app.get("/api/health")
    async def api_health() -> Any:
        try:
            return JSONResponse(await run_in_threadpool(assistant.health))
        except RagError as exc:
            return error_response(rag_error_status(exc), exc.message, exc.hint)
        except Exception:
            log.exception("health check failed")
            return error_response(500, "internal error in the health check", "see the server log")
