"""Feedback on answers: 👍 / 👎, on 👎 the clause that should have been cited and a comment.
Kept append-only in SQLite in the data dir (`feedback.sqlite3`, outside the index builds, so
it survives restarts and re-ingests), at most `max_rows` rows: past that the oldest 👍 go
first, and a store holding only corrections refuses more and says how to make room."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.corpus.normalize import unusable_character
from rag.errors import ConfigError, StoreFullError

FILE = "feedback.sqlite3"
VERDICTS = ("up", "down")
LIMITS = {"question": 2000, "answer": 20000, "comment": 2000, "correct_label": 200}
MAX_CITATIONS = 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL DEFAULT '',
    citations TEXT NOT NULL DEFAULT '[]',
    verdict TEXT NOT NULL CHECK (verdict IN ('up', 'down')),
    correct_label TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT '',
    build TEXT NOT NULL DEFAULT ''
)
"""


@dataclass(frozen=True)
class Feedback:
    question: str
    verdict: str  # up | down
    answer: str = ""
    citations: list[str] = field(default_factory=list)  # the labels the answer cited
    correct_label: str = ""  # on 👎: the clause that should have been cited
    comment: str = ""
    build: str = ""  # the index build that answered
    created: str = ""
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_feedback(data: Any) -> Feedback:
    """A Feedback from a client's JSON object; ConfigError says what is wrong and how to fix it."""
    example = '{"question": "...", "verdict": "down", "correct_label": "外商投资法第二十一条"}'
    if not isinstance(data, dict):
        raise ConfigError("feedback must be a JSON object", hint=f"send {example}")
    unknown = sorted(set(data) - {"question", "answer", "citations", "verdict", "correct_label", "comment"})
    if unknown:
        raise ConfigError(f"unknown field {', '.join(map(repr, unknown))}",
                          hint="send question, answer, citations, verdict, correct_label, comment")
    if data.get("verdict") not in VERDICTS:
        raise ConfigError("verdict must be \"up\" or \"down\"", hint=f"send {example}")
    text: dict[str, str] = {}
    for name, limit in LIMITS.items():
        value = data.get(name, "")
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string", hint=f"send {example}")
        if len(value) > limit:
            raise ConfigError(f"{name} is longer than {limit} characters", hint=f"shorten {name}")
        problem, hint = unusable_character(value)
        if problem:
            raise ConfigError(f"{name} {problem}", hint=hint)
        text[name] = value.strip()
    if not text["question"]:
        raise ConfigError("question is missing or empty", hint=f"send {example}")
    citations = data.get("citations", [])
    if not isinstance(citations, list) or len(citations) > MAX_CITATIONS or not all(
            isinstance(c, str) and len(c) <= LIMITS["correct_label"] for c in citations):
        raise ConfigError(f"citations must be a list of at most {MAX_CITATIONS} labels",
                          hint='send e.g. ["《工作方案》（十三）"]')
    if text["correct_label"] and data["verdict"] != "down":
        raise ConfigError("correct_label goes with a \"down\" verdict", hint="send verdict \"down\"")
    return Feedback(question=text["question"], verdict=data["verdict"], answer=text["answer"],
                    citations=list(citations), correct_label=text["correct_label"], comment=text["comment"])


class FeedbackStore:
    def __init__(self, data_dir: Path, max_rows: int = 10_000) -> None:
        self.path = Path(data_dir) / FILE
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, fb: Feedback) -> Feedback:
        """Stores it (now, with its id); ConfigError when the store is full of corrections."""
        with self._lock, self._connect() as con:
            (count,) = con.execute("SELECT COUNT(*) FROM feedback").fetchone()
            if count >= self.max_rows:
                # Room is made from the oldest 👍: a correction is a benchmark item to keep.
                con.execute("DELETE FROM feedback WHERE id IN (SELECT id FROM feedback WHERE verdict = 'up' "
                            "ORDER BY id LIMIT ?)", (count - self.max_rows + 1,))
                (count,) = con.execute("SELECT COUNT(*) FROM feedback").fetchone()
                if count >= self.max_rows:
                    raise StoreFullError(f"the feedback store is full ({self.max_rows} corrections)",
                                      hint="export them with `rag feedback export --eval FILE.jsonl`, then raise "
                                           "RAG_FEEDBACK_MAX or move feedback.sqlite3 aside")
            created = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            cur = con.execute(
                "INSERT INTO feedback (created, question, answer, citations, verdict, correct_label, comment, build) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (created, fb.question, fb.answer, json.dumps(fb.citations, ensure_ascii=False), fb.verdict,
                 fb.correct_label, fb.comment, fb.build))
            return Feedback(**{**fb.to_dict(), "created": created, "id": int(cur.lastrowid or 0)})

    def rows(self, verdict: str | None = None) -> list[Feedback]:
        with self._connect() as con:
            query = "SELECT id, created, question, answer, citations, verdict, correct_label, comment, build " \
                    "FROM feedback" + (" WHERE verdict = ?" if verdict else "") + " ORDER BY id"
            found = con.execute(query, (verdict,) if verdict else ()).fetchall()
        return [Feedback(id=r[0], created=r[1], question=r[2], answer=r[3], citations=json.loads(r[4]),
                         verdict=r[5], correct_label=r[6], comment=r[7], build=r[8]) for r in found]

    def count_down(self) -> int:
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM feedback WHERE verdict = 'down'").fetchone()[0])
