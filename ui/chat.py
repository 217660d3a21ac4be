"""The chat tab: conversation, streamed answer, citation panel, controls."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from html import escape
from typing import Any

import gradio as gr

from rag.corpus.normalize import detect_language
from rag.errors import RagError
from rag.models import DOC_TYPES, AskResult
from rag.qa.assistant import Filters

from . import render
from .feedback import build_feedback_panel
from .labels import label
from .service import AssistantService
from .tabs import safe_documents

log = logging.getLogger(__name__)

# Re-rendering the whole transcript for every token is wasteful; a browser
# cannot show more than a few updates per second anyway.
STREAM_INTERVAL_S = 0.05
# Answers are CPU-bound (embedding, reranking); two at a time keeps the UI
# responsive for a second user without oversubscribing a laptop.
CHAT_CONCURRENCY = 2

EXAMPLES: dict[str, list[str]] = {
    "investor": [
        "Does the plan support cross-border e-commerce?",
        "Can I send my profits home?",
        "What tax incentives exist for reinvesting profits?",
        "外资企业的利润可以汇出吗？",
    ],
    "official": [
        "M0用地能建住宅吗？",
        "工业用地可以转成研发用地吗？",
        "Can industrial land be converted to R&D land?",
    ],
    "evaluator": [
        "外商投资法第二十一条",
        "《工作方案》（十三）",
        "What does the plan say about digital trade?",
    ],
}

# Runs in the browser when the transcript mounts: a click on [n] moves that
# citation card to the top of the panel and outlines it, without a round trip.
CITE_CLICK_JS = """
element.addEventListener('click', (event) => {
  const ref = event.target.closest('a.cite-ref');
  if (!ref) return;
  event.preventDefault();
  const card = document.getElementById('cite-card-' + ref.dataset.n);
  if (!card) return;
  const box = card.parentElement;
  box.querySelectorAll('.cite-card.focus').forEach((c) => c.classList.remove('focus'));
  box.prepend(card);
  card.classList.add('focus');
  card.scrollIntoView({behavior: 'smooth', block: 'nearest'});
});
"""

# Clipboard API needs a secure context (127.0.0.1 is one); fall back to a
# hidden textarea for plain-http LAN hosts.
COPY_JS = """
(md) => {
  if (!md) return [];
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(md);
  } else {
    const ta = document.createElement('textarea');
    ta.value = md; document.body.appendChild(ta); ta.select();
    document.execCommand('copy'); ta.remove();
  }
  return [];
}
"""


def history_of(turns: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Previous answered turns as the role/content list Assistant.ask takes."""
    history: list[dict[str, str]] = []
    for turn in turns:
        if turn.get("result") is not None:
            history.append({"role": "user", "content": turn["question"]})
            history.append({"role": "assistant", "content": turn["result"].answer})
    return history


def panel_language(result: AskResult | None, choice: str) -> str:
    if result is None:
        return choice if choice in ("zh", "en") else "both"
    return render.ui_language(result.language, choice)


def clause_text_of(assistant: AssistantService) -> render.ClauseText:
    """label → clause text, for the linked clauses a citation card opens in place."""
    def text(label: str) -> str | None:
        try:
            hits = assistant.find(label)
        except Exception:  # a card must render even when a lookup fails
            return None
        return hits[0].text if hits else None
    return text


def make_chat_fn(assistant: AssistantService):
    def chat(question: str, turns: list[dict[str, Any]] | None, doc_ids: list[str] | None,
             doc_types: list[str] | None, in_force_only: bool, mode: str, k: float,
             lang_choice: str) -> Iterator[tuple[Any, ...]]:
        """Answer `question` with citations; yields while the answer streams."""
        turns = list(turns or [])
        question = (question or "").strip()
        if not question:
            yield (gr.skip(),) * 7
            return
        history = history_of(turns)
        turn: dict[str, Any] = {"question": question, "answer": ""}
        turns.append(turn)
        wait = render.ui_language(detect_language(question), lang_choice)
        yield (render.render_transcript(turns, lang_choice),
               render.render_citations(None, wait), gr.update(choices=[], value=None), "", None, turns, "")
        filters = Filters(doc_ids=tuple(doc_ids or ()), doc_types=tuple(doc_types or ()),
                          in_force_only=bool(in_force_only))
        result: AskResult | None = None
        shown = time.monotonic()
        try:
            for piece in assistant.ask_stream(question, history=history, k=int(k), mode=mode or "extractive",
                                              filters=filters):
                if isinstance(piece, AskResult):
                    result = piece
                    break
                turn["answer"] += str(piece)
                if time.monotonic() - shown >= STREAM_INTERVAL_S:
                    shown = time.monotonic()
                    yield (render.render_transcript(turns, lang_choice),) + (gr.skip(),) * 6
            if result is None:
                raise RagError("the assistant finished without a result", "see the server log")
        except RagError as exc:
            log.warning("chat failed: %s", exc)
            turn["error"] = (exc.message, exc.hint)
        except Exception:
            log.exception("chat failed")
            turn["error"] = ("internal error while answering", "see the server log")
        if result is None:
            yield (render.render_transcript(turns, lang_choice),) + (gr.skip(),) * 4 + (turns, gr.skip())
            return
        turn["result"], turn["answer"] = result, result.answer
        lang = panel_language(result, lang_choice)
        yield (
            render.render_transcript(turns, lang_choice),
            render.render_citations(result, lang, clause_text=clause_text_of(assistant)),
            gr.update(choices=render.citation_choices(result), value=None),
            render.answer_markdown(result),
            result.to_dict(),
            turns,
            "",
        )

    return chat


def _example_buttons() -> tuple[gr.Accordion, list[tuple[gr.Button, str]]]:
    """The example questions by persona, each a button that asks it."""
    with gr.Accordion(label("examples"), open=True) as examples_acc:
        buttons = []
        for persona, questions in EXAMPLES.items():
            gr.HTML(f'<div class="persona">{escape(label(persona))}</div>', js_on_load=None)
            with gr.Row(elem_classes=["examples"]):
                for q in questions:
                    buttons.append((gr.Button(q, size="sm", elem_classes=["example"]), q))
    return examples_acc, buttons


def _search_settings(assistant: AssistantService) -> tuple[Any, ...]:
    """The settings accordion: documents, types, in force only, mode, number of clauses."""
    docs, _ = safe_documents(assistant)
    doc_choices = [(f"{d.short_title or d.title} · {d.status}", d.doc_id) for d in docs]
    present = {d.doc_type for d in docs}
    type_choices = [t for t in DOC_TYPES if t in present] or list(DOC_TYPES)
    modes = [("摘录 Extractive", "extractive")]
    if assistant.llm_available:
        modes.append(("大模型 LLM", "llm"))
    with gr.Accordion(label("settings"), open=True) as settings_acc:
        doc_ids = gr.Dropdown(doc_choices, value=[], multiselect=True, label=label("documents"),
                              elem_id="doc-filter")
        doc_types = gr.CheckboxGroup(type_choices, value=[], label=label("doc_types"))
        in_force = gr.Checkbox(True, label=label("in_force"), elem_id="in-force")
        with gr.Row():
            mode = gr.Radio(modes, value="extractive", label=label("mode"), min_width=140)
            k = gr.Slider(1, 20, value=5, step=1, label=label("k"), min_width=160)
    return settings_acc, doc_ids, doc_types, in_force, mode, k


def build_chat_tab(assistant: AssistantService, lang_choice: gr.Radio, feedback_max: int = 10_000) -> dict[str, Any]:
    """Lay out the chat tab inside the current Blocks; returns components for language updates."""
    turns = gr.State([])
    # Citations sit beside the conversation; on a phone the columns stack and the
    # cards follow the answer directly, with examples and settings below them.
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=340):
            transcript = gr.HTML(render.render_transcript([]), elem_id="transcript",
                                 js_on_load=CITE_CLICK_JS, autoscroll=True, max_height=620)
            # lines=1: Gradio submits on Enter only for a one-line box (with lines>1 it is
            # Shift+Enter); the box still grows to max_lines and Shift+Enter breaks the line.
            question = gr.Textbox(label=label("question"), placeholder=label("placeholder"), lines=1,
                                  max_lines=6, elem_id="question", max_length=2000)
            with gr.Row():
                ask_btn = gr.Button(label("ask"), variant="primary", elem_id="ask-btn", min_width=100)
                copy_btn = gr.Button(label("copy"), elem_id="copy-btn", min_width=100)
                clear_btn = gr.Button(label("clear"), elem_id="clear-btn", min_width=100)
            feedback_parts = build_feedback_panel(assistant, turns, feedback_max)
        with gr.Column(scale=2, min_width=320, elem_id="cite-column"):
            cite_pick = gr.Radio([], label=label("pick"), elem_id="cite-pick")
            citations = gr.HTML(render.render_citations(None, "both"), elem_id="cite-panel", js_on_load=None)
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=340):
            examples_acc, example_buttons = _example_buttons()
        with gr.Column(scale=2, min_width=320):
            settings_acc, doc_ids, doc_types, in_force, mode, k = _search_settings(assistant)
    with gr.Accordion(label("markdown"), open=False) as md_acc:
        markdown = gr.Textbox(label="Markdown", lines=8, max_lines=30, interactive=False,
                              buttons=["copy"], elem_id="answer-md")
    with gr.Accordion(label("raw"), open=False) as raw_acc:
        raw = gr.JSON(label="AskResult")

    chat = make_chat_fn(assistant)
    inputs = [question, turns, doc_ids, doc_types, in_force, mode, k, lang_choice]
    outputs = [transcript, citations, cite_pick, markdown, raw, turns, question]
    # The button carries the public API name so gradio_client can call the chat.
    # One queue for every way of asking, so a click and an Enter share the limit.
    queue: dict[str, Any] = {"concurrency_id": "chat", "concurrency_limit": CHAT_CONCURRENCY}
    ask_btn.click(chat, inputs, outputs, api_name="ask", **queue)
    question.submit(chat, inputs, outputs, api_visibility="private", **queue)
    for btn, q in example_buttons:
        btn.click(lambda q=q: q, None, question, api_visibility="private", queue=False).then(
            chat, inputs, outputs, api_visibility="private", **queue)

    def focus(n: str | None, state: list[dict[str, Any]], choice: str) -> str:
        result = render.last_result(state)
        return render.render_citations(result, panel_language(result, choice), int(n) if n else None,
                                       clause_text=clause_text_of(assistant))

    cite_pick.change(focus, [cite_pick, turns, lang_choice], citations, api_visibility="private")

    def clear() -> tuple[Any, ...]:
        return [], render.render_transcript([]), render.render_citations(None, "both"), \
            gr.update(choices=[], value=None), "", None

    clear_btn.click(clear, None, [turns, transcript, citations, cite_pick, markdown, raw],
                    api_visibility="private", queue=False)
    copy_btn.click(None, markdown, None, js=COPY_JS, api_visibility="private")

    def relabel(state: list[dict[str, Any]], choice: str) -> tuple[str, str]:
        result = render.last_result(state)
        return render.render_transcript(state or [], choice), \
            render.render_citations(result, panel_language(result, choice), clause_text=clause_text_of(assistant))

    lang_choice.change(relabel, [turns, lang_choice], [transcript, citations], api_visibility="private")
    return {
        "question": question, "ask": ask_btn, "copy": copy_btn, "clear": clear_btn,
        "examples": examples_acc, "settings": settings_acc, "documents": doc_ids,
        "doc_types": doc_types, "in_force": in_force, "mode": mode, "k": k, "markdown": md_acc,
        "raw": raw_acc, "pick": cite_pick, **feedback_parts,
    }
