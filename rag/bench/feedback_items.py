"""Corrections become benchmark items: each 👎 that names the right clause is a question in
the dataset format (eval/README.md) whose evidence is taken from that clause, so a wrong
citation reported today is a regression test tomorrow."""

from __future__ import annotations

from collections.abc import Callable

from rag.corpus.normalize import detect_language
from rag.feedback import Feedback
from rag.models import Chunk

EVIDENCE_CHARS = 40  # as the other benchmark sets: the clause's first characters


def feedback_items(rows: list[Feedback], find: Callable[[str], list[Chunk]]) -> tuple[list[dict], list[str]]:
    """(items, why the others were left out), one item per 👎 with a correction, oldest first."""
    items, skipped = [], []
    for fb in rows:
        if fb.verdict != "down" or not fb.correct_label:
            continue
        found = find(fb.correct_label)
        if len(found) != 1:
            skipped.append(f"feedback {fb.id}: {fb.correct_label} is no longer one clause of the corpus")
            continue
        clause = found[0]
        items.append({
            "id": f"feedback-{fb.id}", "question": fb.question,
            "lang": "en" if detect_language(fb.question) == "en" else "zh", "answerable": True,
            "evidence": [clause.text[:EVIDENCE_CHARS]], "answer_keywords": [], "category": "feedback",
            "source": clause.label, **({"comment": fb.comment} if fb.comment else {}),
        })
    return items, skipped
