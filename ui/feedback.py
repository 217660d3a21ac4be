"""Feedback under the chat: 👍 / 👎 on the last answer, and on 👎 an optional "the right clause
is …" (a document, then one of its clauses, as in the corpus browser) and a comment. Stored
by rag.feedback in the data dir; what the user typed is only ever shown escaped."""

from __future__ import annotations

import logging
from html import escape
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.feedback import Feedback, FeedbackStore

from .labels import label
from .render import last_result
from .service import AssistantService
from .tabs import safe_documents

log = logging.getLogger(__name__)


def _status(kind: str, text: str) -> str:
    return f'<div class="{kind}-box" id="fb-status-text">{text}</div>'


def record(assistant: AssistantService, turns: list[dict[str, Any]] | None, verdict: str,
           clause: str | None = None, comment: str = "", feedback_max: int = 10_000) -> str:
    """Stores the verdict on the last answer; HTML saying what was kept (escaped)."""
    result = last_result(turns)
    if result is None:
        return _status("error", "先提问，再评价 · Ask a question first, then rate its answer")
    if assistant.data_dir is None:
        return _status("error", "此演示不保存反馈 · This demo keeps no feedback")
    fb = Feedback(question=result.question, verdict=verdict, answer=result.answer,
                  citations=[c.label for c in result.citations], correct_label=clause or "",
                  comment=(comment or "").strip()[:2000], build=assistant.build)
    try:
        stored = FeedbackStore(assistant.data_dir, feedback_max).add(fb)
    except RagError as exc:
        return _status("error", f"{escape(exc.message)} — {escape(exc.hint)}")
    except Exception:
        log.exception("feedback failed")
        return _status("error", "反馈未保存 · The feedback was not stored — see the server log")
    parts = [f"{'👍' if verdict == 'up' else '👎'} 已记录，谢谢 · Recorded, thank you (#{stored.id})"]
    if stored.correct_label:
        parts.append(f"正确条款 · right clause: {escape(stored.correct_label)}")
    if stored.comment:
        parts.append(f"意见 · comment: {escape(stored.comment)}")
    return _status("ok", "<br>".join(parts))


def build_feedback_panel(assistant: AssistantService, turns: gr.State, feedback_max: int = 10_000) -> dict[str, Any]:
    with gr.Row(elem_id="feedback-row"):
        gr.HTML(f'<span class="fb-ask">{escape(label("fb_ask"))}</span>', js_on_load=None)
        up = gr.Button(label("fb_up"), size="sm", elem_id="fb-up", min_width=90, scale=0)
        down = gr.Button(label("fb_down"), size="sm", elem_id="fb-down", min_width=90, scale=0)
    with gr.Group(visible=False, elem_id="fb-form") as form:
        docs, _ = safe_documents(assistant)
        doc = gr.Dropdown([(d.short_title or d.title, d.doc_id) for d in docs], value=None, label=label("fb_doc"),
                          elem_id="fb-doc")
        clause = gr.Dropdown([], value=None, label=label("fb_clause"), filterable=True, elem_id="fb-clause")
        comment = gr.Textbox(label=label("fb_comment"), max_length=2000, lines=2, elem_id="fb-comment")
        send = gr.Button(label("fb_send"), variant="primary", size="sm", elem_id="fb-send")
    status = gr.HTML(js_on_load=None, elem_id="fb-status")

    def clauses_of(doc_id: str | None) -> Any:
        if not doc_id:
            return gr.update(choices=[], value=None)
        return gr.update(choices=[c.label for c in assistant.clauses(doc_id)], value=None)

    up.click(lambda state: record(assistant, state, "up", feedback_max=feedback_max), turns, status,
             api_visibility="private", queue=False)
    down.click(lambda: gr.update(visible=True), None, form, api_visibility="private", queue=False)
    doc.change(clauses_of, doc, clause, api_visibility="private", queue=False)
    send.click(lambda state, c, text: (record(assistant, state, "down", c, text, feedback_max),
                                       gr.update(visible=False)),
               [turns, clause, comment], [status, form], api_visibility="private", queue=False)
    return {"fb_up": up, "fb_down": down, "fb_send": send}
