"""Pure HTML rendering for the web app.

Every piece of document, question or answer text goes through `html.escape`
here before it becomes HTML, and nothing from the corpus is ever rendered as
Markdown: the corpus and the questions are untrusted input, and a legal clause
must be shown exactly as written. Functions here take plain data and return
strings so they can be tested without a browser.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from html import escape
from typing import Any

from rag.corpus.normalize import detect_language
from rag.models import IN_FORCE, AddedFiles, AskResult, Chunk, Citation, ScoredChunk

_REF = re.compile(r"\[(\d{1,2})\]")

# (中文, English). Labels follow the question's language unless the user forces one.
TEXT: dict[str, tuple[str, str]] = {
    "you": ("问", "You"),
    "assistant": ("答", "Assistant"),
    "sources": ("来源", "Sources"),
    "related": ("相关条款（非答案）", "Related clauses (not an answer)"),
    "abstained": ("未找到能直接回答该问题的条款", "No clause answers this question directly"),
    "warnings": ("注意", "Note"),
    "citations": ("引用条款", "Cited clauses"),
    "no_citations": ("提问后，这里显示所引条款的原文。", "Ask a question to see the cited clauses here."),
    "none_cited": ("本回答没有引用条款。", "This answer cites no clause."),
    "no_answer_yet": ("请在下方输入问题，或点击示例问题。", "Type a question below or pick an example."),
    "section": ("章节", "Section"),
    "date": ("日期", "Date"),
    "effective": ("施行", "Effective"),
    "error": ("出错了", "Error"),
    "hint": ("提示", "Hint"),
    "rank": ("排名", "Rank"),
    "fused": ("融合分", "Fused"),
    "matched": ("命中词", "Matched terms"),
    "no_results": ("没有检索到结果。", "Nothing was retrieved."),
    "not_found": ("没有找到该条款。", "No clause has that label."),
    "clauses": ("条", "clauses"),
    "streaming": ("生成中…", "Answering…"),
    "not_answer": ("非答案", "not an answer"),
    "see_also": ("另见", "See also"),
    "coming": ("修改后的文本自{date}起施行", "Revised text takes effect {date}"),
}

# Status words in the corpus → English gloss for the investor.
STATUS_EN = {
    "现行有效": "in force",
    "已废止": "repealed",
    "已被修改": "amended",
    "已修改": "amended",
    "失效": "no longer valid",
    "部分失效": "partly invalid",
    "尚未施行": "not yet in force",
    "尚未生效": "not yet in force",
}


def t(key: str, lang: str) -> str:
    """Label in `lang`; "both" (no question asked yet, automatic language) gives both."""
    zh, en = TEXT[key]
    if lang == "both":
        return f"{zh} / {en}"
    return en if lang == "en" else zh


def ui_language(question_language: str, choice: str = "auto") -> str:
    """The language of the labels: the user's choice, else the question's."""
    if choice in ("zh", "en"):
        return choice
    return "en" if question_language == "en" else "zh"


# --------------------------------------------------------------------------- text helpers


def highlight(text: str, needles: Iterable[str], *, css_class: str = "") -> str:
    """Escape `text` and wrap every occurrence of a needle in <mark>.

    Spans are found on the raw text and escaped piecewise, so a needle can never
    match inside an HTML entity and marks never nest.
    """
    spans: list[tuple[int, int]] = []
    for needle in needles:
        for variant in _variants(needle):
            # Case-insensitive: matched terms come from the normalised (lower-cased)
            # query, the clause keeps its own case ("m0" must mark "M0").
            found = [(m.start(), m.end()) for m in re.finditer(re.escape(variant), text, re.IGNORECASE)]
            spans.extend(found)
            if found:
                break
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    attr = f' class="{escape(css_class)}"' if css_class else ""
    out, pos = [], 0
    for start, end in merged:
        out.append(escape(text[pos:start]))
        out.append(f"<mark{attr}>{escape(text[start:end])}</mark>")
        pos = end
    out.append(escape(text[pos:]))
    return "".join(out)


def _variants(needle: str) -> list[str]:
    # Quotes are sentences cut from the clause; the cut may keep or drop the
    # final stop, so try the needle as given first, then without edge punctuation.
    needle = (needle or "").strip()
    if not needle:
        return []
    trimmed = needle.strip("。；;，,.!?！？ 「」“”\"'")
    return [needle] if trimmed in ("", needle) else [needle, trimmed]


def status_class(status: str) -> str:
    if status == IN_FORCE:
        return "ok"
    if status.startswith("尚未"):
        return "pending"
    return "bad"


def status_badge(status: str, lang: str) -> str:
    status = status or "—"
    gloss = STATUS_EN.get(status, "") if lang == "en" else ""
    label = f"{status} · {gloss}" if gloss else status
    return f'<span class="badge badge-{status_class(status)}">{escape(label)}</span>'


def answer_html(answer: str, *, link_refs: bool, valid: Sequence[int] = ()) -> str:
    """Escape the answer and turn [n] markers into links to citation cards."""
    body = escape(answer)
    if not link_refs:
        return _REF.sub(r'<span class="cite-ref-old">[\1]</span>', body)

    def link(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if valid and n not in valid:
            return m.group(0)
        return f'<a class="cite-ref" href="#cite-card-{n}" data-n="{n}">[{n}]</a>'

    return _REF.sub(link, body)


# --------------------------------------------------------------------------- chat


def render_transcript(turns: Sequence[dict[str, Any]], choice: str = "auto") -> str:
    """The conversation. A turn is {"question", "answer", "result"?: AskResult,
    "error"?: (message, hint)}; `choice` is the language toggle (auto | zh | en)."""
    if not turns:
        lang = choice if choice in ("zh", "en") else "both"
        return f'<div class="transcript empty"><p class="muted">{escape(t("no_answer_yet", lang))}</p></div>'
    parts = ['<div class="transcript">']
    last = len(turns) - 1
    for i, turn in enumerate(turns):
        result = turn.get("result")
        q_lang = result.language if result is not None else detect_language(turn["question"])
        turn_lang = ui_language(q_lang, choice)
        parts.append(
            f'<div class="msg user"><span class="who">{escape(t("you", turn_lang))}</span>'
            f'<div class="text">{escape(turn["question"])}</div></div>'
        )
        parts.append(_render_reply(turn, turn_lang, latest=(i == last)))
    parts.append("</div>")
    return "".join(parts)


def _render_reply(turn: dict[str, Any], lang: str, *, latest: bool) -> str:
    who = f'<span class="who">{escape(t("assistant", lang))}</span>'
    if turn.get("error"):
        message, hint = turn["error"]
        hint_html = f'<div class="hint">{escape(t("hint", lang))}: {escape(hint)}</div>' if hint else ""
        return (f'<div class="msg bot error">{who}<div class="text"><strong>{escape(t("error", lang))}:'
                f"</strong> {escape(message)}{hint_html}</div></div>")
    result: AskResult | None = turn.get("result")
    if result is None:  # still streaming
        text = turn.get("answer", "")
        body = escape(text) if text else f'<span class="muted">{escape(t("streaming", lang))}</span>'
        return f'<div class="msg bot streaming">{who}<div class="text">{body}</div></div>'
    valid = [c.n for c in result.citations]
    classes = "msg bot abstained" if result.abstained else "msg bot"
    out = [f'<div class="{classes}">{who}']
    if result.warnings:
        items = "".join(f"<li>{escape(w)}</li>" for w in result.warnings)
        out.append(f'<div class="warnings"><strong>⚠ {escape(t("warnings", lang))}</strong><ul>{items}</ul></div>')
    if result.abstained:
        out.append(f'<div class="abstain-title">⚠ {escape(t("abstained", lang))}</div>')
    out.append(f'<div class="text">{answer_html(result.answer, link_refs=latest, valid=valid)}</div>')
    # The assistant's abstention text may already list the related clauses; list
    # them here only when it does not, so they are never shown twice.
    if result.abstained and result.related and not all(lbl in result.answer for lbl in result.related):
        items = "".join(f"<li>{escape(label)}</li>" for label in result.related)
        out.append(f'<div class="related"><strong>{escape(t("related", lang))}</strong><ul>{items}</ul></div>')
    # The extractive answer ends with its own source lines; add the list only
    # when the answer text does not already name every cited clause.
    if result.citations and not all(c.label in result.answer for c in result.citations):
        refs = "".join(
            f'<li><span class="n">[{c.n}]</span> {escape(c.label)}</li>' for c in result.citations
        )
        out.append(f'<div class="sources"><strong>{escape(t("sources", lang))}</strong><ul>{refs}</ul></div>')
    out.append("</div>")
    return "".join(out)


ClauseText = Callable[[str], str | None]  # label → the clause's text, or None


def render_citations(result: AskResult | None, lang: str, focus: int | None = None,
                     clause_text: ClauseText | None = None) -> str:
    """One card per citation; the focused card comes first and is outlined. Linked clauses
    (see also, the coming version) open in place when `clause_text` can give their text."""
    if result is None:
        return f'<div class="cite-panel"><p class="muted">{escape(t("no_citations", lang))}</p></div>'
    english = result.language != "zh"
    cards = sorted(result.citations, key=lambda c: (c.n != focus, c.n))
    parts = ['<div class="cite-panel"><div class="cite-cards">']
    parts.extend(citation_card(c, lang, english=english, focused=(c.n == focus), clause_text=clause_text)
                 for c in cards)
    parts.append("</div>")
    if result.abstained and result.related:
        # Show the related clauses' text, clearly marked, so the official can judge them.
        by_label = {r.chunk.label: r.chunk for r in result.retrieved}
        parts.append(f'<h4 class="related-head">{escape(t("related", lang))}</h4>')
        for label in result.related:
            chunk = by_label.get(label)
            parts.append(_related_card(label, chunk, lang))
    if not result.citations and not (result.abstained and result.related):
        parts.append(f'<p class="muted">{escape(t("none_cited", lang))}</p>')
    parts.append("</div>")
    return "".join(parts)


def _linked_clause(label: str, clause_text: ClauseText | None, css: str) -> str:
    """A link that opens the clause below it (a <details>; no round trip)."""
    text = clause_text(label) if clause_text else None
    if text is None:
        return f'<span class="{css}">{escape(label)}</span>'
    return (f'<details class="{css}"><summary>{escape(label)}</summary>'
            f'<div class="clause-text">{escape(text)}</div></details>')


def _links_html(c: Citation, lang: str, clause_text: ClauseText | None) -> str:
    out = ""
    if c.other_version:
        o = c.other_version
        head = t("coming", lang).format(date=o.get("effective_date", ""))
        out += (f'<div class="coming-version"><span class="coming-head">{escape(head)}</span>'
                f'{_linked_clause(o.get("label", ""), clause_text, "linked-clause")}</div>')
    if c.see_also:
        links = "".join(_linked_clause(label, clause_text, "linked-clause") for label in c.see_also)
        out += f'<div class="see-also"><span class="see-also-head">{escape(t("see_also", lang))}:</span>{links}</div>'
    return out


def citation_card(c: Citation, lang: str, *, english: bool, focused: bool = False,
                  clause_text: ClauseText | None = None) -> str:
    title = escape(c.doc_title)
    if english and c.english_title:
        title += f'<div class="en-title">{escape(c.english_title)}</div>'
    meta = [status_badge(c.status, lang)]
    if c.date:
        meta.append(f'<span class="date">{escape(t("date", lang))}: {escape(c.date)}</span>')
    section = (f'<div class="section">{escape(t("section", lang))}: {escape(c.section_path)}</div>'
               if c.section_path else "")
    cls = "cite-card focus" if focused else "cite-card"
    if not c.in_force:
        cls += " not-in-force"
    return (
        f'<div class="{cls}" id="cite-card-{c.n}" data-n="{c.n}">'
        f'<div class="card-head"><span class="n">[{c.n}]</span> <span class="label">{escape(c.label)}</span></div>'
        f'<div class="doc-title">{title}</div>'
        f'<div class="meta">{" ".join(meta)}</div>{section}'
        f'<div class="clause-text">{highlight(c.text, c.quotes)}</div>{gist_block(c.gist_en)}'
        f'{_links_html(c, lang, clause_text)}</div>'
    )


GIST_NOTE = "Unofficial English gist — not the official text; the Chinese clause above is what is cited."


def gist_block(gist: str) -> str:
    """The clause's unofficial English gist, under the Chinese text and marked as such."""
    if not gist:
        return ""
    return (f'<div class="gist"><div class="gist-label">{escape(GIST_NOTE)}</div>'
            f'<div class="gist-text">{escape(gist)}</div></div>')


def _related_card(label: str, chunk: Chunk | None, lang: str) -> str:
    body = ""
    if chunk is not None:
        body = (f'<div class="doc-title">{escape(chunk.doc_title)}</div>'
                f'<div class="meta">{status_badge(chunk.status, lang)}</div>'
                f'<div class="clause-text">{escape(chunk.text)}</div>')
    return (f'<div class="cite-card related-card"><div class="card-head"><span class="label">'
            f'{escape(label)}</span> <span class="ribbon">{escape(t("not_answer", lang))}</span></div>{body}</div>')


def citation_choices(result: AskResult | None) -> list[tuple[str, str]]:
    if result is None:
        return []
    return [(f"[{c.n}] {c.label}", str(c.n)) for c in result.citations]


def answer_markdown(result: AskResult) -> str:
    """The answer with its sources, as Markdown for the clipboard (never rendered here)."""
    lines = [f"**Q:** {result.question}", "", result.answer.strip(), ""]
    if result.warnings:
        lines += [f"> ⚠ {w}" for w in result.warnings] + [""]
    if result.abstained and result.related:
        lines += ["**相关条款（非答案） / Related, not an answer**", ""]
        lines += [f"- {label}" for label in result.related] + [""]
    if result.citations:
        lines += ["**来源 / Sources**", ""]
        for c in result.citations:
            title = f"{c.doc_title} ({c.english_title})" if c.english_title else c.doc_title
            meta = ", ".join(x for x in (c.status, c.date) if x)
            lines.append(f"[{c.n}] {c.label} — {title} ({meta})")
            if c.section_path:
                lines.append(f"    {c.section_path}")
            lines += [f"> {q}" for q in c.quotes]
            if c.gist_en:
                lines.append(f"    Unofficial English gist (not the official text): {c.gist_en}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --------------------------------------------------------------------------- retrieval test


def _fmt_score(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def render_search_results(results: Sequence[ScoredChunk], lang: str) -> str:
    if not results:
        return f'<p class="muted">{escape(t("no_results", lang))}</p>'
    parts = ['<div class="hits">']
    for r in results:
        c = r.chunk
        names: list[str] = [n for n in ("bm25", "dense", "rerank") if n in r.scores] or ["bm25", "dense"]
        names += [n for n in r.scores if n not in names and n != "fused"]
        scores = "".join(
            f'<span class="score"><b>{escape(n)}</b> {_fmt_score(r.scores.get(n))}</span>' for n in names
        )
        scores += f'<span class="score fused"><b>{escape(t("fused", lang))}</b> {_fmt_score(r.fused)}</span>'
        terms = "、".join(r.matched_terms)
        parts.append(
            f'<div class="hit"><div class="card-head"><span class="n">#{r.rank}</span> '
            f'<span class="label">{escape(c.label)}</span> {status_badge(c.status, lang)}</div>'
            f'<div class="doc-title">{escape(c.doc_title)}</div>'
            f'<div class="scores">{scores}</div>'
            f'<div class="section">{escape(c.section_path)}</div>'
            f'<div class="terms">{escape(t("matched", lang))}: {escape(terms) or "—"}</div>'
            f'<div class="clause-text">{highlight(c.text, r.matched_terms, css_class="term")}</div></div>'
        )
    parts.append("</div>")
    return "".join(parts)


# --------------------------------------------------------------------------- corpus


def document_rows(docs: Sequence[Any]) -> list[list[Any]]:
    """Rows for the documents table (gr.Dataframe shows cells as text)."""
    return [[d.title, d.issuer, d.date, d.status, d.clause_count, d.doc_id] for d in docs]


def render_clause_tree(chunks: Sequence[Chunk], lang: str, open_id: str | None = None) -> str:
    """Clauses grouped by their section path; each clause opens to its full text."""
    if not chunks:
        return f'<p class="muted">{escape(t("not_found", lang))}</p>'
    groups: dict[str, list[Chunk]] = {}
    for c in chunks:
        head = c.section_path.rsplit(" > ", 1)[0] if " > " in c.section_path else (c.section_path or "—")
        groups.setdefault(head, []).append(c)
    parts = ['<div class="clause-tree">']
    for head, items in groups.items():
        parts.append(f'<details class="section-group" open><summary>{escape(head)} '
                     f'<span class="muted">({len(items)})</span></summary>')
        for c in items:
            preview = c.text[:48] + ("…" if len(c.text) > 48 else "")
            part = f" ({c.part}/{c.parts})" if c.parts > 1 else ""
            opened = " open" if c.chunk_id == open_id else ""
            parts.append(
                f'<details class="clause" data-chunk="{escape(c.chunk_id)}"{opened}><summary>'
                f'<span class="label">{escape(c.label)}{escape(part)}</span> '
                f'<span class="muted preview">{escape(preview)}</span></summary>'
                f'<div class="clause-text">{escape(c.text)}</div></details>'
            )
        parts.append("</details>")
    parts.append("</div>")
    return "".join(parts)


def render_clause_cards(chunks: Sequence[Chunk], lang: str) -> str:
    if not chunks:
        return f'<p class="muted">{escape(t("not_found", lang))}</p>'
    return "".join(
        f'<div class="cite-card"><div class="card-head"><span class="label">{escape(c.label)}</span> '
        f'{status_badge(c.status, lang)}</div><div class="doc-title">{escape(c.doc_title)}</div>'
        f'<div class="section">{escape(c.section_path)}</div>'
        f'<div class="clause-text">{escape(c.text)}</div></div>'
        for c in chunks
    )


def render_error(message: str, hint: str, lang: str) -> str:
    hint_html = f'<div class="hint">{escape(t("hint", lang))}: {escape(hint)}</div>' if hint else ""
    return (f'<div class="error-box"><strong>{escape(t("error", lang))}:</strong> '
            f"{escape(message)}{hint_html}</div>")


def render_upload_summary(summary: AddedFiles) -> str:
    """assistant.add_files' summary: its printable lines, then any skipped files."""
    items = "".join(f"<li>{escape(line)}</li>" for line in summary.lines)
    skipped_html = ""
    if summary.skipped:
        rows = "".join(f"<li>{escape(s['path'])}: {escape(s['reason'])}</li>" for s in summary.skipped)
        skipped_html = f'<div class="warnings"><strong>⚠ 未加入 Skipped</strong><ul>{rows}</ul></div>'
    return f'<div class="ok-box">✓ 已加入索引 Added<ul>{items}</ul></div>{skipped_html}'


def last_result(turns: list[dict[str, Any]] | None) -> AskResult | None:
    """The result of the last answered turn of a conversation (None while none has one)."""
    for turn in reversed(turns or []):
        if turn.get("result") is not None or turn.get("error"):
            return turn.get("result")
    return None
