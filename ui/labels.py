"""Component labels in Chinese and English.

With the language toggle on "auto" the static labels show both languages (the
investor and the official share one screen); the toggle narrows them to one.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

LABELS: dict[str, tuple[str, str]] = {
    "question": ("问题", "Question"),
    "placeholder": ("例如：M0用地能建住宅吗？", "e.g. Does the plan support cross-border e-commerce?"),
    "ask": ("提问", "Ask"),
    "copy": ("复制答案", "Copy answer"),
    "clear": ("清空对话", "Clear"),
    "examples": ("示例问题", "Example questions"),
    "investor": ("投资者", "Investor"),
    "official": ("开发区工作人员", "Zone official"),
    "evaluator": ("评估人员", "Evaluator"),
    "settings": ("检索设置", "Search settings"),
    "documents": ("限定文件（不选＝全部）", "Documents (none = all)"),
    "doc_types": ("文件类型（不选＝全部）", "Document types (none = all)"),
    "in_force": ("仅现行有效", "In force only"),
    "mode": ("回答方式", "Answer mode"),
    "k": ("检索条数 k", "Clauses retrieved (k)"),
    "markdown": ("答案与来源（Markdown）", "Answer with sources (Markdown)"),
    "raw": ("原始结果（JSON）", "Raw result (JSON)"),
    "pick": ("查看引用", "Show citation"),
    "fb_ask": ("这个回答对吗？", "Was this answer right?"),
    "fb_up": ("👍 对", "Right"),
    "fb_down": ("👎 不对", "Wrong"),
    "fb_doc": ("正确条款所在文件（可选）", "The right clause is in (optional)"),
    "fb_clause": ("正确条款（可选）", "The right clause (optional)"),
    "fb_comment": ("意见（可选）", "Comment (optional)"),
    "fb_send": ("提交反馈", "Send feedback"),
    "language": ("界面语言", "Language"),
    "query": ("检索词", "Query"),
    "search": ("检索", "Search"),
    "retrievers": ("检索器", "Retrievers"),
    "top_n": ("返回条数", "Results"),
    "doc_table": ("文件列表（点击一行查看条款）", "Documents (click a row to see its clauses)"),
    "doc_pick": ("文件", "Document"),
    "find": ("按条款标签查找", "Find a clause by its label"),
    "find_ph": ("如：《工作方案》（十三） 或 外商投资法第二十一条", "e.g. 《工作方案》（十三） or 外商投资法第二十一条"),
    "find_btn": ("查找", "Find"),
    "refresh": ("刷新报告", "Reload report"),
    "compare_report": ("与另一份报告对比（eval/reports/ 下的 report.json）",
                       "Compare with another report (a report.json under eval/reports/)"),
    "run_bench": ("运行开发集基准（naive vs hybrid）", "Run the dev benchmark (naive vs hybrid)"),
    "upload": ("上传文件（.txt .md .docx .pdf .html，每个不超过 10 MB）",
               "Upload files (.txt .md .docx .pdf .html, up to 10 MB each)"),
    "add": ("加入索引", "Add to index"),
}


def label(key: str, choice: str = "auto") -> str:
    zh, en = LABELS[key]
    if choice == "zh":
        return zh
    if choice == "en":
        return en
    return zh if key == "placeholder" else f"{zh} {en}"


def relabel_updates(components: list[tuple[str, Any]], choice: str) -> list[Any]:
    """gr.update objects that switch each component's visible text to `choice`."""
    updates = []
    for key, comp in components:
        if isinstance(comp, gr.Button):
            updates.append(gr.update(value=label(key, choice)))
        elif isinstance(comp, gr.Textbox) and key in ("question", "find"):
            ph = "placeholder" if key == "question" else "find_ph"
            updates.append(gr.update(label=label(key, choice), placeholder=label(ph, choice)))
        else:
            updates.append(gr.update(label=label(key, choice)))
    return updates
