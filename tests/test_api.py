"""The JSON API beside the UI (POST /api/ask, GET /api/health) and Gradio's own API."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rag.errors import ConfigError, IndexMismatchError, IndexNotFoundError, LLMError
from rag.models import Health
from rag.qa.assistant import Filters
from ui.app import build_app
from ui.demo import DemoAssistant


class RecordingAssistant(DemoAssistant):
    """The demo assistant that remembers each ask() call and can be told to fail."""

    def __init__(self, llm: bool = False) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []
        self.results: list[Any] = []
        self.fail: Exception | None = None
        self._llm = llm

    @property
    def llm_available(self) -> bool:
        return self._llm

    def ask(self, question: str, **kwargs: Any):
        self.calls.append({"question": question, **kwargs})
        if self.fail is not None:
            raise self.fail
        result = super().ask(question, **kwargs)
        self.results.append(result)
        return result

    def health(self) -> Health:
        if self.fail is not None:
            raise self.fail
        return super().health()


@pytest.fixture(scope="module")
def fake() -> RecordingAssistant:
    return RecordingAssistant()


@pytest.fixture(scope="module")
def client(fake: RecordingAssistant):
    with TestClient(build_app(fake)) as c:
        yield c


@pytest.fixture(autouse=True)
def _reset(fake: RecordingAssistant):
    fake.calls.clear()
    fake.results.clear()
    fake.fail = None


def test_health_is_the_assistants(client, fake):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == fake.health().to_dict()


def test_ask_returns_exactly_the_ask_result_dict(client, fake):
    body = {
        "question": "M0用地能建住宅吗？",
        "history": [{"role": "user", "content": "工业用地可以转成研发用地吗？"},
                    {"role": "assistant", "content": "可以合理转换 [1]"}],
        "k": 7,
        "mode": "extractive",
        "filters": {"doc_ids": ["etdz-work-plan-2025"], "doc_types": ["政策文件"], "in_force_only": False},
    }
    r = client.post("/api/ask", json=body)
    assert r.status_code == 200, r.text
    assert r.json() == fake.results[-1].to_dict()
    call = fake.calls[-1]
    assert call["question"] == body["question"] and call["history"] == body["history"]
    assert call["k"] == 7 and call["mode"] == "extractive"
    assert call["filters"] == Filters.from_dict(body["filters"])
    labels = [c["label"] for c in r.json()["citations"]]
    assert "《工作方案》（十三）" in labels


def test_ask_defaults(client, fake):
    r = client.post("/api/ask", json={"question": "Does the plan support cross-border e-commerce?"})
    assert r.status_code == 200
    assert fake.calls[-1]["k"] == 5 and fake.calls[-1]["mode"] == "extractive"
    assert fake.calls[-1]["history"] == []
    assert r.json()["language"] == "en"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({}, "question"),
        ({"question": ""}, "question"),
        ({"question": "   "}, "question"),
        ({"question": 5}, "question"),
        ({"question": "x" * 2001}, "longer"),
        ({"question": "q", "k": 0}, "k must be"),
        ({"question": "q", "k": 21}, "k must be"),
        ({"question": "q", "k": "5"}, "k must be"),
        ({"question": "q", "k": True}, "k must be"),
        ({"question": "q", "k": 2.5}, "k must be"),
        ({"question": "q", "mode": "magic"}, "unknown mode"),
        ({"question": "q", "history": "earlier"}, "history"),
        ({"question": "q", "history": [{"role": "system", "content": "x"}]}, "history"),
        ({"question": "q", "filters": []}, "filters"),
        ({"question": "q", "filters": {"doc_ids": "etdz"}}, "doc_ids"),
        ({"question": "q", "filters": {"in_force_only": "yes"}}, "in_force_only"),
        (["question"], "JSON object"),
    ],
)
def test_bad_input_is_422_with_error_and_hint(client, fake, body, fragment):
    r = client.post("/api/ask", json=body)
    assert r.status_code == 422, r.text
    data = r.json()
    assert set(data) == {"error", "hint"} and fragment in data["error"]
    assert fake.calls == []


def test_malformed_json_is_400(client):
    r = client.post("/api/ask", content=b"{bad", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    assert client.post("/api/ask").status_code == 422  # empty body: no question


def test_llm_mode_without_a_model_is_400(client):
    r = client.post("/api/ask", json={"question": "q", "mode": "llm"})
    assert r.status_code == 400 and "llm" in r.json()["error"] and r.json()["hint"]


def test_llm_mode_passes_when_configured():
    fake = RecordingAssistant(llm=True)
    with TestClient(build_app(fake)) as c:
        assert c.post("/api/ask", json={"question": "M0用地能建住宅吗？", "mode": "llm"}).status_code == 200
    assert fake.calls[-1]["mode"] == "llm"


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (IndexNotFoundError("no index in .rag", "run: rag build"), 503),
        (IndexMismatchError("index built with another embedder", "run: rag build --rebuild"), 503),
        (ConfigError("bad setting", "fix RAG_K"), 500),
        (LLMError("model unreachable", "check OPENAI_BASE_URL"), 500),
    ],
)
def test_rag_errors_map_to_status_with_message_and_hint(client, fake, exc, status):
    fake.fail = exc
    r = client.post("/api/ask", json={"question": "q"})
    assert r.status_code == status
    assert r.json() == {"error": exc.message, "hint": exc.hint}
    h = client.get("/api/health")
    assert h.status_code == status and h.json()["error"] == exc.message


def test_unexpected_errors_are_500_without_internals(client, fake):
    fake.fail = RuntimeError("secret /home/path detail")
    r = client.post("/api/ask", json={"question": "q"})
    assert r.status_code == 500
    assert "secret" not in r.text and set(r.json()) == {"error", "hint"}


def test_the_ui_and_gradio_config_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "<html" in page.text.lower()
    config = client.get("/config").json()
    names = {d.get("api_name") for d in config["dependencies"]}
    assert {"ask", "search", "find"} <= names
    assert client.get("/api/openapi.json").status_code == 200


def test_no_upload_tab_unless_allowed(fake):
    with TestClient(build_app(fake)) as c:
        assert "upload-files" not in c.get("/config").text
    with TestClient(build_app(fake, allow_upload=True)) as c:
        assert "upload-files" in c.get("/config").text


# --------------------------------------------------------------------------- gradio_client, live server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def live_url(fake):
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(fake), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    assert server.started, "the web app did not start"
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(timeout=10)


def test_gradio_client_can_call_the_chat(live_url):
    from gradio_client import Client

    gc = Client(live_url, verbose=False)
    out = gc.predict("M0用地能建住宅吗？", [], [], True, "extractive", 5, "auto", api_name="/ask")
    transcript, panel, _pick, markdown, raw, _question = out
    assert "《工作方案》（十三）" in panel and "<mark>" in panel
    assert raw["citations"][0]["label"] == "《工作方案》（十三）"
    assert markdown.startswith("**Q:** M0用地能建住宅吗？")
    found = gc.predict("外商投资法第二十一条", "auto", api_name="/find")
    assert "自由汇入、汇出" in found


# --------------------------------------------------------------------------- benchmark and upload wiring


def test_dev_benchmark_runs_naive_and_hybrid_and_writes_the_report(tmp_path, monkeypatch, fake):
    from types import SimpleNamespace

    from ui import tabs

    dev = tmp_path / "dev.jsonl"
    dev.write_text("{}\n", encoding="utf-8")
    seen: dict[str, Any] = {}

    def run_benchmark(assistant, paths, *, configs, k, data_dir, progress):
        seen.update(assistant=assistant, paths=paths, configs=configs, k=k, data_dir=data_dir)
        progress(0.5, "hybrid: 1/2")
        return {"configs": {}}

    def write_reports(report, out_dir):
        (out_dir / "report.md").write_text("| config | hit@1 |\n|---|---|\n| hybrid | 0.9 |\n", encoding="utf-8")

    monkeypatch.setattr(tabs, "_evaluate", lambda: SimpleNamespace(
        run_benchmark=run_benchmark, write_reports=write_reports, latest_report_dir=lambda: tmp_path))
    ticks = []
    status = tabs.run_dev_benchmark(fake, dev, lambda frac, desc="": ticks.append((frac, desc)))
    assert "ok-box" in status
    assert seen["configs"] == ["naive", "hybrid"] and seen["k"] == 5 and seen["paths"] == [dev]
    assert ticks == [(0.5, "hybrid: 1/2")]
    text, chart = tabs.load_report()
    assert "hybrid" in text and chart is None
    missing = tabs.run_dev_benchmark(fake, tmp_path / "nope.jsonl", lambda *a, **k: None)
    assert "does not exist" in missing


def test_upload_checks_suffix_and_size(tmp_path):
    from ui.tabs import UPLOAD_MAX_BYTES, check_upload

    ok = tmp_path / "rules.md"
    ok.write_text("第一条", encoding="utf-8")
    exe = tmp_path / "tool.exe"
    exe.write_bytes(b"MZ")
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * (UPLOAD_MAX_BYTES + 1))
    assert check_upload([str(ok)]) == []
    problems = check_upload([str(exe), str(big)])
    assert len(problems) == 2 and "tool.exe" in problems[0] and "10 MB" in problems[1]


def test_the_app_starts_without_an_index_and_says_why():
    class NoIndex(RecordingAssistant):
        def documents(self):
            raise IndexNotFoundError("no index in .rag", "run: rag build")

        def health(self):
            raise IndexNotFoundError("no index in .rag", "run: rag build")

    fake = NoIndex()
    fake.fail = IndexNotFoundError("no index in .rag", "run: rag build")
    with TestClient(build_app(fake)) as c:
        assert c.get("/").status_code == 200
        assert "run: rag build" in c.get("/config").text  # the banner on the page
        assert c.get("/api/health").status_code == 503
        r = c.post("/api/ask", json={"question": "M0用地能建住宅吗？"})
        assert r.status_code == 503 and r.json() == {"error": "no index in .rag", "hint": "run: rag build"}


# --------------------------------------------------------------------------- the chat function behind /ask


def test_chat_streams_then_fills_the_panel_and_passes_history():
    from ui.chat import make_chat_fn

    fake = RecordingAssistant()
    chat = make_chat_fn(fake)
    steps = list(chat("M0用地能建住宅吗？", [], ["etdz-work-plan-2025"], [], True, "extractive", 4, "auto"))
    assert len(steps) >= 2
    transcript, panel, _pick, markdown, raw, turns, question = steps[-1]
    assert "《工作方案》（十三）" in panel and "<mark>" in panel
    assert raw == fake.results[-1].to_dict() and question == ""
    assert "**来源 / Sources**" in markdown
    call = fake.calls[-1]
    assert call["k"] == 4 and call["filters"] == Filters(doc_ids=("etdz-work-plan-2025",), in_force_only=True)
    assert call["history"] == []

    steps = list(chat("Can I send my profits home?", turns, [], [], True, "extractive", 5, "auto"))
    assert fake.calls[-1]["history"] == [
        {"role": "user", "content": "M0用地能建住宅吗？"},
        {"role": "assistant", "content": fake.results[0].answer},
    ]
    assert steps[-1][0].count('class="msg user"') == 2


def test_chat_shows_rag_errors_in_the_conversation():
    from ui.chat import make_chat_fn

    fake = RecordingAssistant()
    fake.fail = IndexNotFoundError("no index in .rag", "run: rag build")
    steps = list(make_chat_fn(fake)("q", [], [], [], True, "extractive", 5, "auto"))
    transcript, *_rest, turns, _q = steps[-1]
    assert "msg bot error" in transcript and "run: rag build" in transcript
    assert turns[-1]["error"] == ("no index in .rag", "run: rag build")


def test_chat_ignores_an_empty_question():
    import gradio as gr

    from ui.chat import make_chat_fn

    fake = RecordingAssistant()
    steps = list(make_chat_fn(fake)("   ", [], [], [], True, "extractive", 5, "auto"))
    assert len(steps) == 1 and all(isinstance(x, type(gr.skip())) for x in steps[0])
    assert fake.calls == []


def test_uploads_are_kept_in_the_data_dir(tmp_path):
    from ui.tabs import keep_uploads

    cache = tmp_path / "gradio" / "abc123"
    cache.mkdir(parents=True)
    up = cache / "细则.md"
    up.write_text("第一条", encoding="utf-8")
    real = tmp_path / "data"
    kept = keep_uploads(real, [str(up)])
    assert kept == [str(tmp_path / "data" / "uploads" / "细则.md")]
    assert keep_uploads(real, [str(up)]) == kept  # same content: same file
    up.write_text("第二条", encoding="utf-8")
    assert keep_uploads(real, [str(up)])[0].endswith("细则-1.md")
    assert keep_uploads(DemoAssistant().data_dir, [str(up)]) == [str(up)]  # the demo: untouched


def test_web_chat_sessions_kept_in_memory_are_capped():
    """Each chat session holds ~175 KB until evicted: RSS must not grow with every visitor."""
    app = build_app(DemoAssistant(), sessions=3)
    gradio_app = next(r.app for r in app.routes if type(r).__name__ == "Mount")
    with TestClient(app) as c:
        for _ in range(5):  # five visitors, each a new session
            event = c.post("/gradio_api/call/ask",
                           json={"data": ["M0用地能建住宅吗？", [], [], True, "extractive", 5, "auto"]})
            assert "event: complete" in c.get(f"/gradio_api/call/ask/{event.json()['event_id']}").text
    assert len(gradio_app.state_holder.session_data) == 3


def test_the_session_cap_is_a_setting():
    from rag.errors import ConfigError
    from rag.settings import from_env

    assert from_env({}).ui_sessions == 1000
    assert from_env({"RAG_UI_SESSIONS": "50"}).ui_sessions == 50
    with pytest.raises(ConfigError, match="RAG_UI_SESSIONS"):
        from_env({"RAG_UI_SESSIONS": "0"})
