"""Answers of any system, as JSON Lines: score them (`rag eval --answers`) or write ours
(`rag eval --dump-answers`). The format is a public contract, see eval/README.md.

One line per dataset item:

    {"id": "l-fil-21", "answer": "…", "citations": ["《外商投资法》第二十一条"],
     "retrieved": ["passage text ranked 1", "…"], "abstained": false}

Only `id` and `answer` are required. A citation is a clause label, resolved to
the clause text through the index, or else taken as clause text; either way it
is judged like retrieved text (does it hold the evidence?). `abstained` defaults
to "the answer is empty". The answers become the same `ConfigOutput` this
project's configurations produce, so every metric is computed the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.bench.baseline import ConfigOutput
from rag.bench.judgments import EvalIndex
from rag.errors import DatasetError

log = logging.getLogger(__name__)

MISSING = "no answer for this item in the answers file"


@dataclass(frozen=True)
class ExternalAnswer:
    id: str
    answer: str
    citations: tuple[str, ...] = ()
    retrieved: tuple[str, ...] = ()
    abstained: bool | None = None


def _strings(obj: dict[str, Any], name: str, where: str) -> tuple[str, ...]:
    value = obj.get(name)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(f"{where}: '{name}' must be a list of strings",
                           hint="see the answers format in eval/README.md")
    return tuple(v for v in value if v.strip())


def load_answers(path: str | Path) -> dict[str, ExternalAnswer]:
    """Answers by item id; a malformed line is an error naming the file and line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"cannot read answers file {path}: {exc}",
                           hint="pass a UTF-8 JSON Lines file, one answer per line") from exc
    answers: dict[str, ExternalAnswer] = {}
    for n, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        where = f"{path}:{n}"
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})",
                               hint="each line must be one complete JSON object") from exc
        if not isinstance(obj, dict):
            raise DatasetError(f"{where}: a line must be a JSON object", hint="see eval/README.md")
        if not isinstance(obj.get("id"), str) or not obj["id"].strip():
            raise DatasetError(f"{where}: missing 'id' (the dataset item's id)",
                               hint="see the answers format in eval/README.md")
        answer = obj.get("answer", "")
        if answer is None:
            answer = ""
        if not isinstance(answer, str):
            raise DatasetError(f"{where}: 'answer' must be a string", hint="see eval/README.md")
        abstained = obj.get("abstained")
        if abstained is not None and not isinstance(abstained, bool):
            raise DatasetError(f"{where}: 'abstained' must be true or false",
                               hint="or leave it out: an empty answer counts as abstaining")
        if obj["id"] in answers:
            raise DatasetError(f"{where}: duplicate id {obj['id']!r}",
                               hint="give one answer per dataset item")
        answers[obj["id"]] = ExternalAnswer(
            id=obj["id"], answer=answer, citations=_strings(obj, "citations", where),
            retrieved=_strings(obj, "retrieved", where), abstained=abstained)
    if not answers:
        raise DatasetError(f"{path} holds no answers", hint="one JSON object per line")
    return answers


def to_output(ans: ExternalAnswer | None, index: EvalIndex) -> ConfigOutput:
    """The answer as this project's configurations report theirs."""
    if ans is None:
        # Like a failed item of our own runs: a miss everywhere, never a credited abstention.
        return ConfigOutput(retrieved=[], cited=[], answer="", abstained=False, error=MISSING)
    cited = []
    for c in ans.citations:
        clause = index.resolve_label(c)
        cited.append((clause.label, clause.text) if clause else (index.label_of_text(c) or c[:40], c))
    retrieved = [(index.label_of_text(t) or t[:40], t) for t in ans.retrieved]
    abstained = ans.abstained if ans.abstained is not None else not ans.answer.strip()
    return ConfigOutput(retrieved=retrieved, cited=cited, answer=ans.answer, abstained=abstained)


def check_coverage(item_ids: Sequence[str], answers: dict[str, ExternalAnswer], path: Path) -> None:
    """An answers file for another dataset is an error; a few gaps are only warned about."""
    known = set(item_ids)
    matched = known & set(answers)
    if not matched:
        raise DatasetError(f"{path}: none of its ids is in the dataset",
                           hint="score it with the dataset it answers (--dataset)")
    unknown = sorted(set(answers) - known)
    if unknown:
        log.warning("%s: %d id(s) not in the dataset are ignored: %s", path, len(unknown),
                    ", ".join(unknown[:10]))
    missing = len(known) - len(matched)
    if missing:
        log.warning("%s: %d item(s) have no answer and count as failures", path, missing)


def system_name(path: str | Path) -> str:
    return f"answers:{Path(path).stem}"


def answer_line(item_id: str, out: ConfigOutput, index: EvalIndex) -> dict[str, Any]:
    """One line of the answers format for one of this project's outputs.

    Citations are written as labels when the label names that very clause in
    the index (re-scoring resolves them back), otherwise as the cited text
    (the naive baseline's chunks are not clauses).
    """
    citations = []
    for label, text in out.cited:
        clause = index.resolve_label(label)
        citations.append(label if clause is not None and clause.text == text else text)
    return {"id": item_id, "answer": out.answer, "citations": citations,
            "retrieved": [t for _, t in out.retrieved], "abstained": bool(out.abstained)}


def write_answers(lines: Sequence[dict[str, Any]], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines),
                    encoding="utf-8")
    return path
