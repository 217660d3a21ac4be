"""Feedback: validated, stored append-only in SQLite in the data dir within a size cap,
kept across restarts and re-ingests, taken over POST /api/feedback, and exported as
benchmark items whose evidence is the corrected clause's."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import pytest
from starlette.testclient import TestClient

from rag.bench.evaluate import holds_evidence, load_dataset
from rag.bench.feedback_items import feedback_items
from rag.errors import ConfigError, StoreFullError
from rag.feedback import Feedback, FeedbackStore, check_feedback
from rag.qa.assistant import Assistant
from ui.app import build_app

TOKEN = "feedback-token"


@pytest.mark.parametrize(("data", "fragment"), [
    (None, "JSON object"),
    ({"question": "q"}, "verdict"),
    ({"question": "q", "verdict": "meh"}, "verdict"),
    ({"question": " ", "verdict": "up"}, "question"),
    ({"question": "q" * 2001, "verdict": "up"}, "2000"),
    ({"question": "q", "verdict": "down", "comment": "a\x00b"}, "comment holds a NUL character"),
    ({"question": "q", "verdict": "down", "comment": "a\x07b"}, "control character U+0007"),
    ({"question": "q", "verdict": "down", "citations": "《工作方案》（十三）"}, "citations"),
    ({"question": "q", "verdict": "up", "correct_label": "外商投资法第二十一条"}, "down"),
    ({"question": "q", "verdict": "down", "rating": 5}, "unknown field 'rating'"),
])
def test_bad_feedback_is_refused_with_what_to_do(data, fragment):
    with pytest.raises(ConfigError) as err:
        check_feedback(data)
    assert fragment in err.value.message and err.value.hint


def test_the_store_keeps_corrections_over_thumbs_up_and_says_when_full(tmp_path):
    store = FeedbackStore(tmp_path, max_rows=3)
    for verdict in ("up", "down", "up"):
        store.add(Feedback(question=f"q-{verdict}", verdict=verdict))
    store.add(Feedback(question="fourth", verdict="down", correct_label="《工作方案》（十三）"))
    assert [(f.id, f.verdict) for f in store.rows()] == [(2, "down"), (3, "up"), (4, "down")]  # oldest 👍 gone
    store.add(Feedback(question="fifth", verdict="down"))
    with pytest.raises(StoreFullError, match="full") as err:
        store.add(Feedback(question="sixth", verdict="down"))
    assert "rag feedback export" in err.value.hint
    again = FeedbackStore(tmp_path, max_rows=3)  # a restart
    assert [f.question for f in again.rows("down")] == ["q-down", "fourth", "fifth"] and again.count_down() == 3
    assert again.rows()[1].correct_label == "《工作方案》（十三）" and again.rows()[1].created


@pytest.fixture(scope="module")
def assistant(tiny_settings) -> Assistant:
    return Assistant(tiny_settings)


@pytest.fixture()
def api(tiny_settings, tmp_path):
    # A copy of the tiny index: the feedback file lands in a data dir of this test's own.
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_settings.data_dir, data_dir)
    with TestClient(build_app(Assistant(replace(tiny_settings, data_dir=data_dir)), auth_token=TOKEN),
                    raise_server_exceptions=False) as c:
        yield c, data_dir


def test_feedback_over_the_api_stores_the_canonical_label(api):
    client, data_dir = api
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = client.post("/api/feedback", headers=auth, json={
        "question": "外资利润能汇出吗？", "answer": "…", "citations": ["《工作方案》（十三）"], "verdict": "down",
        "correct_label": "外商投资法第二十一条", "comment": "<script>alert(1)</script>"})
    assert r.status_code == 201, r.text
    assert r.json()["correct_label"] == "《外商投资法》第二十一条" and r.json()["build"]
    r = client.post("/api/feedback", headers=auth, json={"question": "q", "verdict": "down",
                                                         "correct_label": "外商投资法第九百条"})
    assert r.status_code == 422 and "rag corpus show" in r.json()["hint"]
    assert client.post("/api/feedback", headers=auth, json={"question": "q", "verdict": "?"}).status_code == 422
    assert client.post("/api/feedback", json={"question": "q", "verdict": "up"}).status_code == 401
    assert client.post("/api/feedback", headers=auth, content=b"{bad").status_code == 400
    stored = FeedbackStore(data_dir).rows()
    assert len(stored) == 1 and stored[0].comment == "<script>alert(1)</script>"  # kept as text, shown escaped


def test_corrections_export_as_benchmark_items_that_hold_their_evidence(assistant, tmp_path):
    store = FeedbackStore(tmp_path)
    store.add(Feedback(question="外资利润能汇出吗？", verdict="down", correct_label="《外商投资法》第二十一条"))
    store.add(Feedback(question="M0用地能建住宅吗？", verdict="up"))
    store.add(Feedback(question="no correction", verdict="down"))
    store.add(Feedback(question="gone", verdict="down", correct_label="《外商投资法》第九百条"))
    items, skipped = feedback_items(store.rows(), assistant.find)
    assert [i["id"] for i in items] == ["feedback-1"] and len(skipped) == 1 and "第九百条" in skipped[0]
    path = tmp_path / "fb.jsonl"
    path.write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items), encoding="utf-8")
    (item,) = load_dataset([path])  # the dataset format, read by `rag eval`
    assert item.source == "《外商投资法》第二十一条"
    assert holds_evidence(assistant.find(item.source)[0].text, item.evidence)


def test_rag_feedback_list_and_export(tiny_settings, tmp_path, monkeypatch, capsys):
    from rag.cli import main

    data_dir = tmp_path / "data"
    shutil.copytree(tiny_settings.data_dir, data_dir)
    monkeypatch.setenv("RAG_DATA_DIR", str(data_dir))
    monkeypatch.setenv("RAG_CORPUS_DIR", str(tiny_settings.corpus_dir))
    assert main(["feedback", "list"]) == 2 and "rag serve" in capsys.readouterr().err  # none yet
    store = FeedbackStore(data_dir)
    store.add(Feedback(question="外资利润能汇出吗？", verdict="down", correct_label="《外商投资法》第二十一条",
                       comment="cited the plan"))
    store.add(Feedback(question="M0用地能建住宅吗？", verdict="up"))
    assert main(["feedback", "list", "--down"]) == 0
    listed = capsys.readouterr().out
    assert "👎 外资利润能汇出吗？ → 《外商投资法》第二十一条 — cited the plan" in listed and "M0" not in listed
    out = tmp_path / "fb.jsonl"
    assert main(["feedback", "export", "--eval", str(out)]) == 0
    assert "1 benchmark items" in capsys.readouterr().out
    assert [i.id for i in load_dataset([out])] == ["feedback-1"]


def test_a_store_full_of_corrections_is_507_with_the_way_out(tiny_settings, tmp_path):
    data_dir = tmp_path / "data"
    shutil.copytree(tiny_settings.data_dir, data_dir)
    app = build_app(Assistant(replace(tiny_settings, data_dir=data_dir)), feedback_max=1)
    with TestClient(app, raise_server_exceptions=False) as client:
        body = {"question": "q", "verdict": "down"}
        assert client.post("/api/feedback", json=body).status_code == 201
        r = client.post("/api/feedback", json=body)
        assert r.status_code == 507 and "rag feedback export" in r.json()["hint"]
