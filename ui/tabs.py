"""The retrieval-test, corpus, benchmark and upload tabs."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import gradio as gr

from rag.corpus.loaders import check_content
from rag.corpus.normalize import detect_language
from rag.errors import RagError
from rag.feedback import FILE as FEEDBACK_FILE
from rag.feedback import FeedbackStore
from rag.index.clauses import Filters

from . import render
from .labels import label
from .service import AssistantService

log = logging.getLogger(__name__)

UPLOAD_SUFFIXES = (".txt", ".md", ".docx", ".pdf", ".html")
UPLOAD_MAX_BYTES = 10 * 1024 * 1024
DOC_HEADERS = ["标题 Title", "发布机关 Issuer", "日期 Date", "状态 Status", "条款 Clauses", "ID"]


def _lang(text: str, choice: str) -> str:
    return render.ui_language(detect_language(text), choice)


def _guard(fn: Callable[..., str], lang_of: Callable[..., str]) -> Callable[..., str]:
    """Show a RagError (message + hint) in the output instead of a red toast."""

    def wrapped(*args: Any) -> str:
        try:
            return fn(*args)
        except RagError as exc:
            return render.render_error(exc.message, exc.hint, lang_of(*args))
        except Exception:
            log.exception("%s failed", fn.__name__)
            return render.render_error("internal error", "see the server log", lang_of(*args))

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


def safe_documents(assistant: AssistantService) -> tuple[list[Any], RagError | None]:
    """The document list, or [] and the error when the index is missing: the app
    still starts so that /api/health can report 503 and the page can say why."""
    try:
        return list(assistant.documents()), None
    except RagError as exc:
        log.warning("no documents: %s", exc)
        return [], exc


# --------------------------------------------------------------------------- retrieval test


def build_search_tab(assistant: AssistantService, lang_choice: gr.Radio) -> dict[str, Any]:
    with gr.Row():
        query = gr.Textbox(label=label("query"), placeholder="M0 住宅 / cross-border e-commerce",
                           scale=4, elem_id="search-query")
        search_btn = gr.Button(label("search"), variant="primary", scale=1, elem_id="search-btn")
    with gr.Row():
        top_n = gr.Slider(1, 50, value=10, step=1, label=label("top_n"))
        retrievers = gr.CheckboxGroup(["bm25", "dense"], value=["bm25", "dense"], label=label("retrievers"))
        in_force = gr.Checkbox(True, label=label("in_force"))
    hits = gr.HTML(elem_id="search-results", js_on_load=None)

    def search(q: str, n: float, names: list[str], only: bool, choice: str) -> str:
        """Ranked chunks with each retriever's score and the matched terms."""
        if not (q or "").strip():
            return ""
        found = assistant.search(q.strip(), k=int(n), filters=Filters(in_force_only=bool(only)),
                                 retrievers=tuple(names or ("bm25", "dense")))
        return render.render_search_results(found, _lang(q, choice))

    guarded = _guard(search, lambda q, *rest: _lang(q or "", rest[-1]))
    inputs = [query, top_n, retrievers, in_force, lang_choice]
    search_btn.click(guarded, inputs, hits, api_name="search")
    query.submit(guarded, inputs, hits, api_visibility="private")
    return {"query": query, "search": search_btn, "top_n": top_n, "retrievers": retrievers, "in_force": in_force}


# --------------------------------------------------------------------------- corpus


def build_corpus_tab(assistant: AssistantService, lang_choice: gr.Radio) -> dict[str, Any]:
    docs, _ = safe_documents(assistant)
    table = gr.Dataframe(render.document_rows(docs), headers=DOC_HEADERS, datatype="str",
                         interactive=False, label=label("doc_table"), wrap=True, elem_id="doc-table",
                         column_widths=["38%", "16%", "12%", "10%", "8%", "16%"])
    doc_pick = gr.Dropdown([(d.title, d.doc_id) for d in docs], value=None, label=label("doc_pick"),
                           elem_id="doc-pick")
    tree = gr.HTML(elem_id="clause-tree", js_on_load=None)
    with gr.Row():
        find_box = gr.Textbox(label=label("find"), placeholder=label("find_ph"), scale=4, elem_id="find-box")
        find_btn = gr.Button(label("find_btn"), scale=1, elem_id="find-btn")
    found = gr.HTML(elem_id="find-results", js_on_load=None)

    def show_tree(doc_id: str | None, choice: str) -> str:
        if not doc_id:
            return ""
        return render.render_clause_tree(assistant.clauses(doc_id), "en" if choice == "en" else "zh")

    def pick_row(evt: gr.SelectData) -> Any:
        # The doc_id is the last column; read it from the clicked row, which stays
        # right when the user has sorted the table.
        row = evt.row_value or []
        return row[-1] if row else gr.skip()

    def find(q: str, choice: str) -> str:
        """Clauses whose label (or chunk id) is `q`."""
        if not (q or "").strip():
            return ""
        return render.render_clause_cards(assistant.find(q.strip()), _lang(q, choice))

    doc_pick.change(_guard(show_tree, lambda d, c: "en" if c == "en" else "zh"), [doc_pick, lang_choice],
                    tree, api_visibility="private")
    table.select(pick_row, None, doc_pick, api_visibility="private")
    guarded_find = _guard(find, lambda q, c: _lang(q or "", c))
    find_btn.click(guarded_find, [find_box, lang_choice], found, api_name="find")
    find_box.submit(guarded_find, [find_box, lang_choice], found, api_visibility="private")
    return {"components": {"doc_table": table, "doc_pick": doc_pick, "find": find_box, "find_btn": find_btn},
            "table": table, "doc_pick": doc_pick}


def refresh_documents(assistant: AssistantService) -> tuple[Any, Any, Any]:
    """New table rows and dropdown choices after documents were added."""
    docs, _ = safe_documents(assistant)
    return (render.document_rows(docs), gr.update(choices=[(d.title, d.doc_id) for d in docs]),
            gr.update(choices=[(f"{d.short_title or d.title} · {d.status}", d.doc_id) for d in docs]))


# --------------------------------------------------------------------------- benchmark


def _evaluate() -> Any:
    """What the benchmark tab calls of rag.bench: run_benchmark, write_reports and
    latest_report_dir (None when it cannot load: the UI still serves the other tabs)."""
    try:
        from rag.bench import evaluate, report
    except Exception as exc:  # noqa: BLE001 - any import failure just disables the tab
        log.warning("benchmark unavailable: %s", exc)
        return None
    return SimpleNamespace(run_benchmark=evaluate.run_benchmark, write_reports=report.write_reports,
                           latest_report_dir=report.latest_report_dir)


def load_report() -> tuple[str, Any]:
    """(report.md text, chart as a PIL image or None)."""
    evaluate = _evaluate()
    if evaluate is None:
        return "_The benchmark module is not available. 基准模块不可用。_", None
    folder = Path(evaluate.latest_report_dir())
    md_path, chart_path = folder / "report.md", folder / "chart.png"
    text = (md_path.read_text(encoding="utf-8") if md_path.exists()
            else "_No report yet: run the benchmark with the button above. 尚无报告，请点击上方按钮运行基准。_")
    chart = None
    if chart_path.exists():
        # Loaded into memory so Gradio serves a cached copy: no allowed_paths needed.
        from PIL import Image

        with Image.open(chart_path) as img:
            chart = img.copy()
    return text, chart


def load_report_updates() -> tuple[str, Any]:
    text, chart = load_report()
    return text, gr.update(value=chart, visible=chart is not None)


def run_dev_benchmark(assistant: AssistantService, dev_path: Path, progress: Callable[..., Any]) -> str:
    """Run naive vs hybrid on the dev split and rewrite the saved report; HTML status."""
    evaluate = _evaluate()
    if evaluate is None:
        return render.render_error("the benchmark module is not available", "check rag/bench/evaluate.py", "both")
    if not dev_path.exists():
        return render.render_error(f"{dev_path} does not exist", "create the dev split first", "both")
    try:
        report = evaluate.run_benchmark(
            assistant, [dev_path], configs=["naive", "hybrid"], k=5, data_dir=assistant.data_dir,
            progress=lambda frac, desc="": progress(frac, desc=desc))
        evaluate.write_reports(report, Path(evaluate.latest_report_dir()))
    except RagError as exc:
        return render.render_error(exc.message, exc.hint, "both")
    except Exception:
        log.exception("benchmark failed")
        return render.render_error("the benchmark failed", "see the server log", "both")
    return '<div class="ok-box">✓ 基准已完成，报告已更新 · Benchmark done, report updated</div>'


def saved_reports(folder: Path | None = None) -> list[str]:
    """report.json files under the reports folder (relative), other than the saved one."""
    evaluate = _evaluate()
    if evaluate is None:
        return []
    root = Path(folder or evaluate.latest_report_dir())
    return sorted(str(p.relative_to(root)) for p in root.rglob("report.json") if p.parent != root)


def compare_with_latest(choice: str | None, folder: Path | None = None) -> str:
    """Markdown: the saved report (A) against another report under the reports folder (B).

    Picked from a list rather than uploaded: the upload route stays off unless
    --allow-upload, and the list cannot name a file outside the reports folder.
    """
    evaluate = _evaluate()
    if not choice or evaluate is None:
        return ""
    from rag.bench.compare import compare_reports, load_report, render_comparison

    root = Path(folder or evaluate.latest_report_dir())
    if choice not in saved_reports(root):
        return "**Unknown report.** — pick one from the list (rag eval --out eval/reports/NAME)"
    try:
        result = compare_reports(load_report(root / "report.json"), load_report(root / choice),
                                 path_a="saved report", path_b=choice)
    except RagError as exc:
        return f"**{exc.message}** — {exc.hint}"
    return render_comparison(result)


def feedback_count(data_dir: Path | None) -> str:
    """How many 👎 users left (each a correction to turn into a benchmark item)."""
    if data_dir is None or not (data_dir / FEEDBACK_FILE).exists():
        return ""
    down = FeedbackStore(data_dir).count_down()
    return (f'<div class="feedback-count">👎 {down} · 用户反馈的错误答案 · answers users marked wrong — '
            '<code>rag feedback export --eval FILE.jsonl</code> turns the corrections into benchmark items</div>')


def build_benchmark_tab(assistant: AssistantService, dev_path: Path,
                        allow_run: bool = False) -> tuple[dict[str, Any], list[Any]]:
    """The report; the run button (minutes of CPU per click) only when the operator allows it."""
    text, chart = load_report()
    with gr.Row():
        refresh_btn = gr.Button(label("refresh"), scale=1)
        run_btn = gr.Button(label("run_bench"), variant="primary", scale=2, elem_id="run-bench",
                            visible=allow_run)
    status = gr.HTML(js_on_load=None, elem_id="bench-status")
    feedback = gr.HTML(feedback_count(assistant.data_dir), js_on_load=None, elem_id="bench-feedback")
    # The chart first: the report ends with a long failure table.
    image = gr.Image(chart, type="pil", label="chart.png", interactive=False, visible=chart is not None,
                     buttons=["download", "fullscreen"], elem_id="bench-chart")
    # Above the report, which ends with a long failure table.
    with gr.Accordion(label("compare_report"), open=False):
        other = gr.Dropdown(saved_reports(), value=None, show_label=False, elem_id="bench-compare-pick")
        compared = gr.Markdown(sanitize_html=True, elem_id="bench-compare")
    # The report is generated by rag.bench.report, not corpus text; Markdown keeps its
    # tables readable and sanitize_html strips any markup a question carried.
    report = gr.Markdown(text, sanitize_html=True, elem_id="bench-report")
    other.change(compare_with_latest, other, compared, api_visibility="private")
    refresh_btn.click(lambda: gr.update(choices=saved_reports()), None, other, api_visibility="private")

    def run(progress: gr.Progress = gr.Progress()) -> tuple[str, str, Any]:  # noqa: B008 - Gradio's idiom
        status_html = run_dev_benchmark(assistant, dev_path, progress)
        return (status_html, *load_report_updates())

    refresh_btn.click(load_report_updates, None, [report, image], api_visibility="private")
    refresh_btn.click(lambda: feedback_count(assistant.data_dir), None, feedback, api_visibility="private")
    if not allow_run:
        # No event at all: a hidden button with a handler could still be called by its id.
        return {"refresh": refresh_btn}, [report, image]
    run_btn.click(run, None, [status, report, image], api_visibility="private", concurrency_limit=1)
    return {"refresh": refresh_btn, "run_bench": run_btn}, [report, image]


# --------------------------------------------------------------------------- upload


def check_upload(paths: list[str]) -> list[str]:
    """Problems with the chosen files; the browser-side limits can be bypassed."""
    problems = []
    for p in map(Path, paths):
        if p.suffix.lower() not in UPLOAD_SUFFIXES:
            problems.append(f"{p.name}: only {' '.join(UPLOAD_SUFFIXES)} files can be added")
        elif p.stat().st_size > UPLOAD_MAX_BYTES:
            problems.append(f"{p.name}: larger than 10 MB")
        else:
            try:  # by content, not by name: a renamed binary is refused here already
                check_content(p.suffix.lower(), p.read_bytes())
            except RagError as exc:
                problems.append(f"{p.name}: {exc.message}")
    return problems


def safe_upload_name(name: str) -> str:
    """A plain file name: no directories, NUL, control characters, or dot-only names."""
    name = re.sub(r"[\x00-\x1f\x7f/\\]", "_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if not name.strip(".") or len(name.encode("utf-8")) > 200:
        suffix = Path(name).suffix[:10] if name.strip(".") else ""
        name = "upload" + suffix
    return name


def keep_uploads(data_dir: Path | None, paths: list[str]) -> list[str]:
    """Copy uploads out of Gradio's temp cache into <data_dir>/uploads/.

    Ingest remembers the paths it indexed and re-reads them on the next run;
    Gradio's cache is cleaned up, so the remembered path must be a lasting copy.
    Only for a real assistant (data_dir None: the demo, nothing is written).
    """
    if data_dir is None:
        return paths
    folder = data_dir / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    kept = []
    for src in map(Path, paths):
        dest = folder / safe_upload_name(src.name)  # name only: an upload cannot choose a directory
        if dest.resolve().parent != folder.resolve():
            raise ValueError(f"refusing to write an upload outside {folder}")
        n = 1
        while dest.exists() and dest.read_bytes() != src.read_bytes():
            dest = folder / f"{src.stem}-{n}{src.suffix}"
            n += 1
        shutil.copyfile(src, dest)
        kept.append(str(dest))
    return kept


def build_upload_tab(assistant: AssistantService, refresh_outputs: list[Any]) -> dict[str, Any]:
    """File upload → assistant.add_files; then the document lists everywhere are refreshed."""
    files = gr.File(file_count="multiple", file_types=list(UPLOAD_SUFFIXES), label=label("upload"),
                    elem_id="upload-files")
    add_btn = gr.Button(label("add"), variant="primary", elem_id="upload-btn")
    status = gr.HTML(js_on_load=None, elem_id="upload-status")

    def add(paths: list[str] | None, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008
        paths = [str(p) for p in (paths or [])]
        if not paths:
            return ""
        problems = check_upload(paths)
        if problems:
            return render.render_error("; ".join(problems), "remove those files and try again", "both")
        progress(0.1, desc="indexing")
        try:
            summary = assistant.add_files(keep_uploads(assistant.data_dir, paths))
        except RagError as exc:
            return render.render_error(exc.message, exc.hint, "both")
        except Exception:
            log.exception("upload failed")
            return render.render_error("the files could not be added", "see the server log", "both")
        progress(1.0, desc="done")
        return render.render_upload_summary(summary)

    add_btn.click(add, files, status, api_visibility="private", concurrency_limit=1).then(
        lambda: refresh_documents(assistant), None, refresh_outputs, api_visibility="private")
    return {"upload": files, "add": add_btn}
