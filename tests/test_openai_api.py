"""The OpenAI-compatible chat endpoint (ui/openai_api.py) driven by real clients: the official
`openai` package and LangChain's ChatOpenAI, over the app's own HTTP interface, against a
real tiny index; and every hostile body of /api/ask sent to it."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from rag.qa.assistant import Assistant
from ui.api import MAX_BODY_BYTES
from ui.app import build_app

openai = pytest.importorskip("openai", reason="run `pip install -e '.[dev]'` (the openai package)")

TOKEN = "s3cret-token-for-tests"
QUESTION = "M0用地能建住宅吗？"
MEASURE_13 = "《工作方案》（十三）"


@pytest.fixture(scope="module")
def assistant(tiny_settings) -> Assistant:
    return Assistant(tiny_settings)


@pytest.fixture(scope="module")
def http(assistant):
    with TestClient(build_app(assistant, auth_token=TOKEN), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def client(http):
    # The official client, its requests carried by the app's own HTTP interface.
    return openai.OpenAI(base_url="http://testserver/v1", api_key=TOKEN, http_client=http, max_retries=0)


def test_models_list_one_model_per_answer_mode(client):
    assert [m.id for m in client.models.list()] == ["etdz-extractive"]  # llm mode is not configured


def test_a_plain_answer_is_the_assistants_with_its_citations(client, assistant):
    r = client.chat.completions.create(model="etdz-extractive", max_tokens=50, temperature=0.7,
                                       messages=[{"role": "system", "content": "You are a pirate."},
                                                 {"role": "user", "content": QUESTION}])
    expected = assistant.ask(QUESTION)
    message = r.choices[0].message
    assert message.role == "assistant" and r.choices[0].finish_reason == "stop"
    assert message.content == expected.answer  # the system message changed nothing
    assert "[1]" in message.content and MEASURE_13 in message.content
    citations = message.model_extra["citations"]
    assert citations[0]["label"] == MEASURE_13 and citations[0]["text"] in assistant.find(MEASURE_13)[0].text
    assert r.usage.completion_tokens > 0 and r.object == "chat.completion"


def test_a_streamed_answer_arrives_in_chunks_ending_with_the_citations(client, assistant):
    stream = client.chat.completions.create(model="etdz-extractive", stream=True,
                                            messages=[{"role": "user", "content": QUESTION}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert len(chunks) > 3 and text == assistant.ask(QUESTION).answer
    last = chunks[-1].choices[0]
    assert last.finish_reason == "stop" and last.delta.model_extra["citations"][0]["label"] == MEASURE_13


def test_a_follow_up_uses_the_earlier_turns(client):
    history = [{"role": "user", "content": "工业用地可以转成研发用地吗？"},
               {"role": "assistant", "content": "可以合理转换。[1]"}]
    r = client.chat.completions.create(model="etdz-extractive",
                                       messages=[*history, {"role": "user", "content": "那M0用地呢？"}])
    assert r.model_extra["etdz"]["resolved_question"].startswith("工业用地可以转成研发用地吗？")
    assert r.choices[0].message.model_extra["citations"]


def test_a_wrong_key_is_401_and_a_malformed_request_400(http):
    bad = openai.OpenAI(base_url="http://testserver/v1", api_key="wrong", http_client=http, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        bad.chat.completions.create(model="etdz-extractive", messages=[{"role": "user", "content": QUESTION}])
    assert err.value.status_code == 401 and "Authorization: Bearer" in err.value.body["message"]
    good = openai.OpenAI(base_url="http://testserver/v1", api_key=TOKEN, http_client=http, max_retries=0)
    with pytest.raises(openai.BadRequestError) as err:
        good.chat.completions.create(model="etdz-extractive", messages=[{"role": "assistant", "content": "hi"}])
    assert err.value.body["type"] == "invalid_request_error" and "last message" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError) as err:
        good.chat.completions.create(model="etdz-llm", messages=[{"role": "user", "content": QUESTION}])
    assert err.value.body["code"] == "model_not_found" and "etdz-extractive" in err.value.body["message"]


def test_langchain_chat_openai_talks_to_it(http):
    pytest.importorskip("langchain_openai", reason="run `pip install -e '.[dev]'`")
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(model="etdz-extractive", base_url="http://testserver/v1", api_key=TOKEN,
                       http_client=http, max_retries=0)
    reply = model.invoke([("system", "Answer briefly."), ("human", QUESTION)])
    assert MEASURE_13 in str(reply.content)
    streamed = "".join(str(piece.content) for piece in model.stream(QUESTION))
    assert streamed == str(reply.content)


# --------------------------------------------------------------------------- hostile input


def _openai_error(r, status: int) -> dict:
    assert r.status_code == status, (r.status_code, r.text[:300])
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in r.text
    return error


AUTH = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}


def _chat(question, **extra) -> dict:
    return {"model": "etdz-extractive", "messages": [{"role": "user", "content": question}], **extra}


@pytest.mark.parametrize(("body", "status", "fragment"), [
    (b"{bad", 400, "not valid JSON"),
    (b"[" * 50_000, 400, "not valid JSON"),
    (b"null", 400, "JSON object"),
    (json.dumps({"model": "etdz-extractive"}).encode(), 400, "messages"),
    (json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "q"}]}).encode(), 404, "unknown model"),
    (json.dumps(_chat("\ud800abc")).encode(), 400, "surrogate"),
    (json.dumps(_chat("a\u0000b")).encode(), 400, "NUL"),
    (json.dumps(_chat(" \t\n ")).encode(), 400, "question"),
    (json.dumps(_chat("x" * 2001)).encode(), 400, "2000"),
    (json.dumps(_chat("q", stream="yes")).encode(), 400, "stream"),
    (json.dumps({"model": "etdz-extractive", "messages": [{"role": "tool", "content": "x"}]}).encode(), 400, "role"),
    (json.dumps({"model": "etdz-extractive", "messages": [{"role": "user", "content": 5}]}).encode(), 400,
     "content"),
    (json.dumps({"model": "etdz-extractive", "messages": [{"role": "user", "content": "q"}] * 100}).encode(),
     400, "history"),
])
def test_hostile_bodies_get_an_openai_error_and_the_server_lives(http, body, status, fragment):
    error = _openai_error(http.post("/v1/chat/completions", content=body, headers=AUTH), status)
    assert fragment in error["message"]
    assert http.post("/v1/chat/completions", json=_chat(QUESTION), headers=AUTH).status_code == 200


def test_size_limit_and_rate_limit_are_those_of_the_api(assistant):
    with TestClient(build_app(assistant, rate_limit=2), raise_server_exceptions=False) as c:
        error = _openai_error(c.post("/v1/chat/completions", json=_chat("x" * 100_000)), 413)
        assert str(MAX_BODY_BYTES) in error["message"]
        c.post("/api/ask", json={"question": QUESTION})  # the same bucket as /api/ask
        error = _openai_error(c.post("/v1/chat/completions", json=_chat(QUESTION)), 429)
        assert error["code"] == "rate_limit_exceeded"
