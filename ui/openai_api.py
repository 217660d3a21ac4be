"""An OpenAI-compatible chat endpoint on `rag serve`, so chat clients that speak the OpenAI
Chat Completions API (Open WebUI, LibreChat, Cherry Studio, the `openai` package, LangChain's
ChatOpenAI) can ask the assistant.

- GET /v1/models: one model per answer mode (etdz-extractive; etdz-llm when llm mode is set up).
- POST /v1/chat/completions: the last user message is the question, earlier user and
  assistant messages the history; system (and developer) messages are ignored;
  max_tokens, temperature, top_p and the like are accepted and ignored (the answer is
  quoted clauses, or an LLM answer checked against them). `stream: true` sends server-sent
  events in the standard chunk format, ending with `data: [DONE]`.
- The answer text keeps its [n] markers and source list; the structured citations travel in
  `message.citations` (and in the last stream chunk's `delta.citations`), `etdz` holds
  abstained, warnings, mode and the resolved question (in the last chunk too).
- Same bearer token, rate limit and body limit as /api/ask; errors in OpenAI's shape
  {"error": {"message", "type", "param", "code"}}.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from itertools import chain
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from rag.corpus.chunk import count_tokens
from rag.errors import RagError
from rag.models import AskResult

from .api import (
    BadRequest,
    RateLimiter,
    as_bad_request,
    guarded_json,
    parse_ask,
    question_payload,
)
from .service import AssistantService

log = logging.getLogger(__name__)

MODELS = {"etdz-extractive": "extractive", "etdz-llm": "llm"}
IGNORED_ROLES = ("system", "developer")
_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
          413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}
_CODES = {401: "invalid_api_key", 404: "model_not_found", 413: "request_too_large", 429: "rate_limit_exceeded"}


def openai_error(status: int, message: str, hint: str = "", param: str | None = None,
                 headers: dict[str, str] | None = None) -> JSONResponse:
    """OpenAI's error shape; the hint (what to do) follows the message."""
    text = f"{message}; {hint}" if hint else message
    return JSONResponse({"error": {"message": text, "type": _TYPES.get(status, "server_error"), "param": param,
                                   "code": _CODES.get(status)}}, status_code=status, headers=headers)


def model_ids(llm_available: bool) -> list[str]:
    return [m for m, mode in MODELS.items() if mode == "extractive" or llm_available]


def _text(content: Any, i: int) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) for p in content):
        texts = [p.get("text") for p in content if p.get("type") == "text"]
        if all(isinstance(t, str) for t in texts) and len(texts) == len(content):
            return "".join(texts)
    raise BadRequest(f"messages[{i}].content must be a string or a list of text parts",
                     "send the question as text", status=400)


def parse_chat(body: Any, llm_available: bool, known_docs: Any = None) -> tuple[str, bool, dict[str, Any]]:
    """(model, stream, keyword arguments for Assistant.ask) from a chat completions body."""
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object",
                         'send {"model": "etdz-extractive", "messages": [{"role": "user", "content": "..."}]}',
                         status=400)
    model = body.get("model")
    if model not in model_ids(llm_available):
        hint = f"use one of: {', '.join(model_ids(llm_available))}"
        if model == "etdz-llm":
            raise BadRequest("the model 'etdz-llm' is not configured on this server", hint, status=404)
        raise BadRequest(f"unknown model {model!r}", hint, status=404)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list", "send at least one user message", status=400)
    turns = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise BadRequest(f"messages[{i}] must be an object with a role", status=400)
        if m["role"] in IGNORED_ROLES:
            continue
        if m["role"] not in ("user", "assistant"):
            raise BadRequest(f"messages[{i}].role {m['role']!r} is not supported",
                             "send user and assistant messages (system messages are ignored)", status=400)
        turns.append({"role": m["role"], "content": _text(m.get("content"), i)})
    if not turns or turns[-1]["role"] != "user":
        raise BadRequest("the last message must be the user's question", "end messages with a user message",
                         status=400)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest("stream must be true or false", status=400)
    ask = {"question": turns[-1]["content"], "history": turns[:-1], "mode": MODELS[model]}
    return model, stream, parse_ask(ask, llm_available, known_docs)


def completion(result: AskResult, model: str, completion_id: str, created: int) -> dict[str, Any]:
    return {
        "id": completion_id, "object": "chat.completion", "created": created, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": result.answer,
                                 "citations": [c.to_dict() for c in result.citations]}}],
        "usage": _usage(result.question, result.answer),
        "etdz": _etdz(result),
    }


def _etdz(result: AskResult) -> dict[str, Any]:
    return {"abstained": result.abstained, "warnings": result.warnings, "mode": result.mode,
            "resolved_question": result.resolved_question}


def _usage(prompt: str, answer: str) -> dict[str, int]:
    p, c = count_tokens(prompt), count_tokens(answer)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _chunk(completion_id: str, created: int, model: str, delta: dict[str, Any],
           finish: str | None = None, **extra: Any) -> str:
    data = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def stream_events(pieces: Iterator[str | AskResult], model: str, completion_id: str, created: int) -> Iterator[str]:
    """SSE lines: the role, each text piece, the rest of the final answer (its sources, or
    the extractive answer an LLM fault fell back to), then the citations and [DONE]."""
    yield _chunk(completion_id, created, model, {"role": "assistant", "content": ""})
    streamed = ""
    try:
        for piece in pieces:
            if isinstance(piece, AskResult):
                rest = piece.answer[len(streamed):] if piece.answer.startswith(streamed) else "\n\n" + piece.answer
                if rest:
                    yield _chunk(completion_id, created, model, {"content": rest})
                yield _chunk(completion_id, created, model,
                             {"citations": [c.to_dict() for c in piece.citations]}, finish="stop",
                             etdz=_etdz(piece))
            elif piece:
                streamed += piece
                yield _chunk(completion_id, created, model, {"content": piece})
    except RagError as exc:  # the headers are sent: the error travels as an event
        log.warning("chat completion failed mid-stream: %s", exc)
        yield f"data: {json.dumps({'error': {'message': f'{exc.message}; {exc.hint}', 'type': 'server_error', 'param': None, 'code': None}}, ensure_ascii=False)}\n\n"
    yield "data: [DONE]\n\n"


def add_openai_routes(app: FastAPI, assistant: AssistantService, *, auth_token: str, limiter: RateLimiter,
                      rate_limit: int) -> None:
    @app.get("/v1/models")
    async def list_models(request: Request) -> Any:
        try:
            await guarded_json(request, auth_token, limiter, rate_limit, read=False)
        except BadRequest as exc:
            return openai_error(exc.status, exc.message, exc.hint, headers=exc.headers)
        return JSONResponse({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1747785600, "owned_by": "etdz-rag"}
            for m in model_ids(bool(assistant.llm_available))]})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        try:
            payload, known = await question_payload(request, assistant, auth_token, limiter, rate_limit)
            model, stream, kwargs = parse_chat(payload, bool(assistant.llm_available), known)
            completion_id, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            if not stream:
                result = await run_in_threadpool(assistant.ask, **kwargs)
                return JSONResponse(completion(result, model, completion_id, created))
            pieces = assistant.ask_stream(**kwargs)
            # The first piece is computed before the response starts, so a missing index or
            # a bad setting is still an HTTP error rather than an event.
            first = await run_in_threadpool(next, pieces, None)
            events = stream_events(chain([first] if first is not None else [], pieces), model, completion_id,
                                   created)
            return StreamingResponse(events, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
        except Exception as exc:
            bad = as_bad_request(exc, "answering")
            param = "messages" if "messages" in bad.message or "question" in bad.message else (
                "model" if "model" in bad.message else None)
            # OpenAI's clients expect 400 where the project's API says 422.
            return openai_error(400 if bad.status == 422 else bad.status, bad.message, bad.hint,
                                param=param if bad.status < 500 else None, headers=bad.headers)
