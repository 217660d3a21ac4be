"""The web app in headless Chromium: chat in both languages, citations, corpus, narrow screens, XSS.

Screenshots land in tests/artifacts/ (gitignored) for a human to look at.
Uses the lead's `full_assistant` session fixture when it exists, else the demo assistant.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ui.app import build_app
from ui.demo import DemoAssistant

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).parent / "artifacts"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
SCRIPT = "<script>alert('script')</script>"
IMG = "<img src=x onerror=alert('img')>"
# Generous: the first real answer loads the embedding model.
ANSWER_TIMEOUT_MS = 120_000

log = logging.getLogger(__name__)

if not CHROMIUM.exists():
    pytest.skip("needs /usr/bin/chromium (apt-get install chromium fonts-noto-cjk)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """uvicorn in a thread, on a free loopback port."""

    def __init__(self, assistant: Any, allow_upload: bool = False) -> None:
        import uvicorn

        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        config = uvicorn.Config(build_app(assistant, allow_upload=allow_upload), host="127.0.0.1",
                                port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web app did not start")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def ui_assistant(request: pytest.FixtureRequest) -> Any:
    try:
        return request.getfixturevalue("full_assistant")
    except pytest.FixtureLookupError:
        log.info("no full_assistant fixture: using the demo assistant")
        return DemoAssistant()


@pytest.fixture(scope="module")
def server(ui_assistant: Any) -> Iterator[LiveServer]:
    with LiveServer(ui_assistant) as live:
        yield live


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, locale="zh-CN")
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    pg = context.new_page()
    pg.dialogs = []  # every alert()/confirm() that fires: must stay empty
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    # The machines are offline: the page must not reach for CDNs or fonts elsewhere.
    external: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
          else external.append(r.url))
    yield pg
    assert pg.dialogs == [], f"a dialog fired: {pg.dialogs}"
    assert external == [], f"requests left the machine: {external}"
    context.close()


def open_app(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#question textarea", timeout=60_000)


def ask(page: Any, question: str) -> Any:
    """Type a question, press Ask, wait for the final answer; return the citation panel."""
    before = page.locator("#transcript .msg.user").count()
    page.fill("#question textarea", question)
    page.click("#ask-btn")
    page.wait_for_function(
        """(n) => document.querySelectorAll('#transcript .msg.user').length > n
                 && !document.querySelector('#transcript .msg.streaming')""",
        arg=before, timeout=ANSWER_TIMEOUT_MS)
    page.wait_for_timeout(300)  # the last update carries the panel with the transcript
    return page.locator("#cite-panel")


def shot(page: Any, name: str) -> Path:
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_chat_in_english_and_chinese(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    panel = ask(page, "Does the plan support cross-border e-commerce?")
    labels = panel.locator(".cite-card .label").all_inner_texts()
    assert "《工作方案》（八）" in labels, labels
    card = panel.locator(".cite-card", has_text="《工作方案》（八）").first
    assert card.locator("mark").count() >= 1
    assert card.locator(".badge-ok").count() == 1
    assert page.locator("#transcript .msg.bot").last.locator("a.cite-ref").count() >= 1
    # Labels follow the English question.
    assert page.locator("#transcript .msg.bot .who").last.inner_text() == "Assistant"
    shot(page, "chat_en.png")

    panel = ask(page, "M0用地能建住宅吗？")
    labels = panel.locator(".cite-card .label").all_inner_texts()
    assert "《工作方案》（十三）" in labels, labels
    card = panel.locator(".cite-card", has_text="《工作方案》（十三）").first
    marks = " ".join(card.locator("mark").all_inner_texts())
    assert marks, "no quote highlighted"
    assert page.locator("#transcript .msg.user").count() == 2
    assert page.locator("#transcript .msg.bot .who").last.inner_text() == "答"
    page.click("#copy-btn")
    page.wait_for_timeout(300)
    md = page.evaluate("() => navigator.clipboard.readText()")
    assert "《工作方案》（十三）" in md and md.startswith("**Q:** M0用地能建住宅吗？")
    shot(page, "chat_zh.png")


def test_choosing_a_marker_brings_its_card_forward(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    panel = ask(page, "外商投资法第二十一条")
    refs = page.locator("#transcript a.cite-ref")
    assert refs.count() >= 1 and panel.locator(".cite-card").count() >= 1
    # The highest-numbered marker: with several cards it is not first until chosen.
    last = refs.last
    n = last.get_attribute("data-n")
    last.click()
    first = panel.locator(".cite-card").first
    assert first.get_attribute("data-n") == n and "focus" in first.get_attribute("class")
    # The [n] radio does the same on the server side.
    page.locator("#cite-pick label").last.click()
    page.wait_for_function(
        "() => document.querySelector('#cite-panel .cite-card.focus')?.dataset.n === "
        "String(document.querySelectorAll('#cite-pick label').length)")
    assert "focus" in panel.locator(".cite-card").first.get_attribute("class")


def test_language_toggle_switches_labels(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    page.locator("#lang-toggle").get_by_text("English").click()
    page.wait_for_function("() => document.querySelector('#ask-btn').innerText.trim() === 'Ask'")
    ask(page, "M0用地能建住宅吗？")
    # Forced English over a Chinese question: the speaker labels and the card fields.
    assert page.locator("#transcript .msg.bot .who").last.inner_text() == "Assistant"
    assert "Section:" in page.locator("#cite-panel").inner_text()
    shot(page, "chat_english_ui.png")
    page.locator("#lang-toggle").get_by_text("中文").click()
    page.wait_for_function("() => document.querySelector('#ask-btn').innerText.trim() === '提问'")
    page.wait_for_function("() => [...document.querySelectorAll('#transcript .msg.bot .who')].pop()"
                           "?.innerText === '答'")


def test_corpus_tab_shows_a_clause(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    page.get_by_role("tab", name="语料 Corpus").click()
    page.locator("#doc-table").get_by_text("工作方案", exact=False).filter(visible=True).first.click()
    page.wait_for_selector("#clause-tree details.clause", timeout=30_000)
    clause = page.locator("#clause-tree details.clause", has_text="《工作方案》（十三）").first
    clause.locator("summary").click()
    text = clause.locator(".clause-text")
    assert text.is_visible() and "新型产业用地" in text.inner_text()
    page.fill("#find-box textarea, #find-box input", "外商投资法第二十一条")
    page.click("#find-btn")
    page.wait_for_selector("#find-results .cite-card", timeout=30_000)
    assert "第二十一条" in page.locator("#find-results").inner_text()
    shot(page, "corpus.png")


def test_retrieval_tab_shows_scores(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    page.get_by_role("tab", name="命中测试 Retrieval test").click()
    page.fill("#search-query textarea, #search-query input", "M0 住宅")
    page.click("#search-btn")
    page.wait_for_selector("#search-results .hit", timeout=ANSWER_TIMEOUT_MS)
    first = page.locator("#search-results .hit").first
    assert "bm25" in first.inner_text() and first.locator(".score.fused").count() == 1
    shot(page, "retrieval.png")


def test_benchmark_tab_renders(server: LiveServer, page: Any) -> None:
    open_app(page, server.url)
    page.get_by_role("tab", name="基准 Benchmark").click()
    page.wait_for_selector("#bench-report", timeout=30_000)
    shot(page, "benchmark.png")
    # A second saved report to compare with (the dev split's, when it is there).
    if (Path(__file__).parent.parent / "eval" / "reports" / "dev" / "report.json").exists():
        page.get_by_text("Compare with another report").click()
        page.locator("#bench-compare-pick input").click()
        page.get_by_role("option", name="dev/report.json", exact=True).click()
        page.wait_for_selector("#bench-compare:has-text('Passed in A, failed in B')", timeout=30_000)
        assert "95 % CI" in page.locator("#bench-compare").inner_text()
        shot(page, "benchmark-compare.png")


def test_narrow_window(server: LiveServer, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 400, "height": 860}, locale="zh-CN")
    page = context.new_page()
    open_app(page, server.url)
    ask(page, "M0用地能建住宅吗？")
    # Nothing may force a horizontal scrollbar on a phone.
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    shot(page, "chat_narrow.png")
    context.close()
    assert overflow <= 1


# --------------------------------------------------------------------------- hostile text


def test_hostile_document_and_question_are_shown_as_text(browser: Any) -> None:
    hostile = DemoAssistant(extra_documents=[
        (f"恶意文件{SCRIPT}",
         f"第一段：新型产业用地 M0 不得开发住宅。{IMG}{SCRIPT}\n\n第二段：<b onmouseover=alert('b')>粗体</b>"),
    ])
    with LiveServer(hostile) as live:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        open_app(page, live.url)
        ask(page, f"M0用地能建住宅吗？{IMG}")
        transcript = page.locator("#transcript").inner_text()
        assert IMG in transcript  # the question, shown literally
        assert page.locator("#cite-panel").get_by_text(SCRIPT, exact=False).count() >= 1

        page.get_by_role("tab", name="命中测试 Retrieval test").click()
        page.fill("#search-query textarea, #search-query input", "住宅")
        page.click("#search-btn")
        page.wait_for_selector("#search-results .hit")

        page.get_by_role("tab", name="语料 Corpus").click()
        page.locator("#doc-table").get_by_text("恶意文件", exact=False).filter(visible=True).first.click()
        page.wait_for_selector("#clause-tree details.clause")
        for summary in page.locator("#clause-tree details.clause summary").all():
            summary.click()
        page.locator("#clause-tree").get_by_text("粗体", exact=False).first.hover()
        page.wait_for_timeout(500)
        shot(page, "hostile.png")
        injected = page.evaluate(
            """() => document.querySelectorAll(
                 '.gradio-container img[src="x"], .gradio-container b[onmouseover], #transcript script, '
                 + '#cite-panel script, #clause-tree script, #search-results script').length""")
        context.close()
    assert dialogs == [], f"a dialog fired: {dialogs}"
    assert injected == 0


def test_upload_makes_a_document_searchable(browser: Any, tmp_path: Path) -> None:
    demo = DemoAssistant()
    doc = tmp_path / "园区用地细则.md"
    doc.write_text("第一条　新型产业用地（M0）的配套用房不得分割销售。\n\n第二条　本细则自发布之日起施行。",
                   encoding="utf-8")
    with LiveServer(demo, allow_upload=True) as live:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        open_app(page, live.url)
        page.get_by_role("tab", name="上传 Upload").click()
        page.locator("#upload-files input[type=file]").set_input_files(str(doc))
        page.wait_for_timeout(1000)  # the file goes to Gradio's upload route first
        page.click("#upload-btn")
        page.wait_for_selector("#upload-status .ok-box", timeout=30_000)
        shot(page, "upload.png")
        page.get_by_role("tab", name="语料 Corpus").click()
        assert page.locator("#doc-table").get_by_text("园区用地细则").filter(visible=True).count() == 1
        context.close()
    assert demo.added and demo.added[0][0].endswith("园区用地细则.md")


def test_enter_asks_and_shift_enter_breaks_the_line(browser: Any) -> None:
    with LiveServer(DemoAssistant()) as live:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        open_app(page, live.url)
        box = page.locator("#question textarea")
        box.click()
        box.type("M0用地能建住宅吗？")
        box.press("Shift+Enter")
        box.type("第二行")
        assert box.input_value() == "M0用地能建住宅吗？\n第二行"
        assert page.locator("#transcript .msg.user").count() == 0
        box.press("Enter")
        page.wait_for_function("() => document.querySelectorAll('#transcript .msg.user').length == 1",
                               timeout=ANSWER_TIMEOUT_MS)
        assert "第二行" in page.locator("#transcript .msg.user").inner_text()
        context.close()


def test_feedback_under_an_answer_is_stored_and_shown_escaped(tiny_settings: Any, tmp_path: Path,
                                                               page: Any) -> None:
    import shutil
    from dataclasses import replace

    from rag.feedback import FeedbackStore
    from rag.qa.assistant import Assistant

    data_dir = tmp_path / "data"  # a copy of the tiny index: the feedback lands in this test's own
    shutil.copytree(tiny_settings.data_dir, data_dir)
    with LiveServer(Assistant(replace(tiny_settings, data_dir=data_dir))) as live:
        open_app(page, live.url)
        ask(page, "M0用地能建住宅吗？")
        page.click("#fb-down")
        page.locator("#fb-doc input").click()
        page.get_by_role("option", name="外商投资法", exact=True).click()
        page.locator("#fb-clause input").fill("第二十一条")
        page.get_by_role("option", name="《外商投资法》第二十一条", exact=True).click()
        page.fill("#fb-comment textarea", f"{SCRIPT} {IMG}")
        page.click("#fb-send")
        page.wait_for_selector("#fb-status-text", timeout=30_000)
        status = page.locator("#fb-status").inner_text()
        shot(page, "feedback.png")
        assert "《外商投资法》第二十一条" in status and SCRIPT in status and IMG in status  # as text
        assert page.locator("#fb-status script, #fb-status img").count() == 0
        (row,) = FeedbackStore(data_dir).rows()
        assert (row.verdict, row.correct_label, row.question) == ("down", "《外商投资法》第二十一条", "M0用地能建住宅吗？")
        assert row.citations == ["《工作方案》（十三）"] and row.build  # the build that answered
        page.click("#fb-up")
        page.wait_for_function("() => document.querySelector('#fb-status').innerText.includes('#2')")
        assert [r.verdict for r in FeedbackStore(data_dir).rows()] == ["down", "up"]
