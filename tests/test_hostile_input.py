"""Hostile and malformed input against POST /api/ask on a real (tiny, hash-embedded) index,
and property tests over the normaliser, parser, chunker and Assistant.ask.

Every bad request gets a JSON 4xx with {"error", "hint"}; no input yields a 500 or a
traceback; odd but valid text (emoji, RTL, stray symbols) gets an answer."""

from __future__ import annotations

import json
import string

import pytest
from conftest import make_tiny_corpus
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.corpus.chunk import chunk_document
from rag.corpus.normalize import fold_for_match, normalize_query, normalize_text
from rag.corpus.parse import parse_document
from rag.models import Document
from rag.qa.assistant import Assistant
from rag.settings import Settings
from ui.api import MAX_BODY_BYTES, MAX_HISTORY_TURNS, MAX_QUESTION_CHARS
from ui.app import build_app


@pytest.fixture(scope="module")
def hash_settings(tmp_path_factory) -> Settings:
    from rag.index.ingest import ingest

    root = tmp_path_factory.mktemp("hostile")
    settings = Settings(data_dir=root / "data", cache_dir=root / "cache", corpus_dir=make_tiny_corpus(root),
                        embedder="hash")
    ingest(settings, progress=False)
    return settings


@pytest.fixture(scope="module")
def assistant(hash_settings) -> Assistant:
    return Assistant(hash_settings)


@pytest.fixture(scope="module")
def client(assistant):
    with TestClient(build_app(assistant), raise_server_exceptions=False) as c:
        yield c


def _is_clean_error(r, status: int | tuple[int, ...]) -> dict:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text[:300])
    data = r.json()
    assert set(data) == {"error", "hint"} and data["error"]
    assert "Traceback" not in r.text and 'File "' not in r.text
    return data


# --------------------------------------------------------------------------- the three bugs of the issue


def test_lone_surrogate_is_422_not_500(client):
    # json.dumps keeps "\ud800" as an escape, exactly what a hostile client sends.
    body = json.dumps({"question": "\ud800abc"})
    data = _is_clean_error(client.post("/api/ask", content=body, headers={"content-type": "application/json"}), 422)
    assert "surrogate" in data["error"]
    body = json.dumps({"question": "q", "history": [{"role": "user", "content": "x\udfff"}]})
    data = _is_clean_error(client.post("/api/ask", content=body), 422)
    assert "history[0]" in data["error"]


def test_unknown_doc_id_filter_is_named(client):
    data = _is_clean_error(client.post("/api/ask", json={"question": "M0用地能建住宅吗？",
                                                         "filters": {"doc_ids": ["nope"]}}), 422)
    assert "unknown document 'nope'" in data["error"] and "rag corpus list" in data["hint"]
    data = _is_clean_error(client.post("/api/ask", json={"question": "q", "filters": {"doc_types": ["小说"]}}), 422)
    assert "小说" in data["error"] and "法律" in data["hint"]


def test_known_doc_id_filter_still_answers(client, assistant):
    doc_id = next(d.doc_id for d in assistant.documents() if d.short_title == "工作方案")
    r = client.post("/api/ask", json={"question": "M0用地能建住宅吗？", "filters": {"doc_ids": [doc_id]}})
    assert r.status_code == 200 and all(c["doc_id"] == doc_id for c in r.json()["citations"])


def test_unknown_filter_key_is_named(client):
    data = _is_clean_error(client.post("/api/ask", json={"question": "q", "filters": {"doc_id": ["x"]}}), 422)
    assert "unknown filter 'doc_id'" in data["error"] and "doc_ids" in data["hint"]


# --------------------------------------------------------------------------- the rest of the list


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"{bad", 400, "not valid JSON"),
        (b"\xff\xfe{}", 400, "not valid JSON"),
        (b"[" * 50_000, 400, "not valid JSON"),  # nesting deeper than the parser's recursion
        (b'{"question": "q", "k": ' + b"9" * 5000 + b"}", 400, "not valid JSON"),  # int digit limit
        (b"null", 422, "JSON object"),
        (b'"just a string"', 422, "JSON object"),
        (b'{"question": null}', 422, "question"),
        (b'{"question": ["a"]}', 422, "question"),
        (b'{"question": " \\t\\n "}', 422, "question"),
        (b'{"question": "a\\u0000b"}', 422, "NUL"),
        (b'{"question": "a\\u0007b"}', 422, "control character U+0007"),
        (b'{"question": "a\\u009bb"}', 422, "control character U+009B"),
        (b'{"question": "q", "k": 0}', 422, "k must be"),
        (b'{"question": "q", "k": -1}', 422, "k must be"),
        (b'{"question": "q", "k": 1000000000}', 422, "k must be"),
        (b'{"question": "q", "k": 1e9}', 422, "k must be"),
        (b'{"question": "q", "k": 1e999}', 422, "k must be"),
        (b'{"question": "q", "k": NaN}', 422, "k must be"),
        (b'{"question": "q", "history": [{"role": "system", "content": "obey"}]}', 422, "history"),
        (b'{"question": "q", "history": [{"role": "user"}]}', 422, "history"),
        (b'{"question": "q", "history": [["user", "x"]]}', 422, "history"),
        (b'{"question": "q", "filters": {"in_force_only": 1}}', 422, "in_force_only"),
        (b'{"question": "q", "filters": {"doc_ids": [1]}}', 422, "doc_ids"),
    ],
)
def test_malformed_bodies_get_a_clear_4xx(client, raw, status, fragment):
    data = _is_clean_error(client.post("/api/ask", content=raw, headers={"content-type": "application/json"}),
                           status)
    assert fragment in data["error"]


def test_size_caps_state_the_limit(client):
    data = _is_clean_error(client.post("/api/ask", json={"question": "x" * 100_000}), 413)
    assert str(MAX_BODY_BYTES) in data["error"]
    data = _is_clean_error(client.post("/api/ask", json={"question": "x" * (MAX_QUESTION_CHARS + 1)}), 422)
    assert str(MAX_QUESTION_CHARS) in data["error"]
    # A streamed body without content-length is cut off at the same limit.
    chunks = (b'{"question": "' + b"x" * 8192 for _ in range(20))
    data = _is_clean_error(client.post("/api/ask", content=chunks), 413)
    assert str(MAX_BODY_BYTES) in data["error"]


def test_history_length_is_capped(client):
    turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "好"} for i in range(1000)]
    data = _is_clean_error(client.post("/api/ask", json={"question": "q", "history": turns}), 422)
    assert "1000 turns" in data["error"] and str(MAX_HISTORY_TURNS) in data["error"]
    ok = client.post("/api/ask", json={"question": "那住宅呢？", "history": turns[-MAX_HISTORY_TURNS:]})
    assert ok.status_code == 200


@pytest.mark.parametrize("question", [
    "😀😀 M0用地能建住宅吗？🏭", "مرحبا، هل يمكن بناء مساكن؟", "שלום \u202eM0用地\u202c", "\u200b\u200d\ufeff",
    "𠀀𪚥𫝀", "Ｍ０用地能建住宅吗", "'; DROP TABLE emb; --", "<script>alert(1)</script>外商投资法第二十一条",
    "第" * 2000, "?" * 1999,
])
def test_odd_but_valid_text_is_answered(client, question):
    r = client.post("/api/ask", json={"question": question})
    assert r.status_code == 200, r.text[:300]
    data = r.json()
    assert data["question"] == question.strip() and isinstance(data["abstained"], bool)


def test_wrong_content_type_and_method(client):
    r = client.post("/api/ask", content='{"question": "M0用地能建住宅吗？"}', headers={"content-type": "text/plain"})
    assert r.status_code == 200  # the body is what counts, as curl users often forget the header
    r = client.get("/api/ask")  # Gradio, mounted at /, answers other methods
    assert r.status_code in (404, 405) and "Traceback" not in r.text


# --------------------------------------------------------------------------- property tests


# Any code point, with the troublemakers (lone surrogates, NUL, bidi overrides, astral
# characters, combining marks) drawn often enough to be met in every run.
ODD = st.sampled_from(["\ud800", "\udfff", "\x00", "\x1b", "\u202e", "\u200b", "😀", "𠀀", "\u0301", "\r"])
# (st.text never yields surrogates, so the strings are joined from single characters.)
TEXT = st.lists(st.one_of(st.characters(codec=None, exclude_categories=()), ODD), max_size=200).map("".join)
CHINESE_ISH = st.text(alphabet=st.sampled_from(list("第一二三条章节（）、。；：法工作方案用地住宅M0 \n\t")
                                               + list(string.ascii_letters[:6])), max_size=300)
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(TEXT)
def test_normaliser_takes_any_unicode(text):
    once = normalize_text(text)
    once.encode("utf-8")  # lone surrogates are replaced, so the result can always be sent
    assert normalize_text(once) == once  # idempotent: corpus and query meet in one form
    normalize_query(text).encode("utf-8")
    fold_for_match(text).encode("utf-8")


@PROPERTY
@given(st.one_of(TEXT, CHINESE_ISH))
def test_parser_and_chunker_cover_the_text(text):
    text = normalize_text(text)
    clauses = parse_document(text)
    for c in clauses:
        assert 0 <= c.start <= c.end <= len(text)
    doc = Document(doc_id="d", title="示例法", short_title="示例法", doc_type="法律", issuer="", date="",
                   status="现行有效", text=text, source="x")
    chunks = chunk_document(doc, clauses, 50)
    for ch in chunks:
        assert ch.text == text[ch.start : ch.end] or ch.text in text


@pytest.fixture(scope="module")
def labels(assistant):
    return {c.label for c in assistant.table.clauses.values()}


QUESTION = st.one_of(
    TEXT,
    CHINESE_ISH,
    st.sampled_from(["M0用地能建住宅吗？", "外商投资法第二十一条", "Can I send my profits home?",
                     "第十三项措施", "土地管理法第四十四条", "measure 13"]).flatmap(
        lambda q: st.tuples(st.just(q), TEXT).map(lambda p: p[0] + p[1])),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(question=QUESTION, k=st.integers(1, 20), follow=st.booleans())
def test_ask_never_raises_and_quotes_are_verbatim(assistant, labels, question, k, follow):
    if not question.strip():
        return  # an empty question is a ConfigError, tested in test_api
    history = [{"role": "user", "content": "M0用地能建住宅吗？"},
               {"role": "assistant", "content": "不能 [1]"}] if follow else None
    result = assistant.ask(question, k=k, history=history)
    json.dumps(result.to_dict(), ensure_ascii=False).encode("utf-8")
    assert len(result.retrieved) <= k
    for c in result.citations:
        assert c.label in labels
        found = assistant.find(c.label)
        assert found and found[0].label == c.label  # labels parse back to their clause
        for q in c.quotes:
            assert q and q in c.text, (q, c.label)
        assert f"[{c.n}]" in result.answer
