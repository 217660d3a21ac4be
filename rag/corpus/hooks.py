"""Question hooks: per-clause data written *about* a clause (an unofficial English gist and
everyday questions in English and Chinese) that help questions find it.

Hooks live in `corpus/hooks/<doc_id>.jsonl` (bundled) and `<data_dir>/hooks/*.jsonl`
(written by `rag enrich` for documents a user adds). An entry belongs to the clause whose
text hash and label it names; an entry whose hash matches no clause is *stale*. Hooks are
indexed apart from the clause text and are never quoted or cited as the clause itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rag.models import Chunk

log = logging.getLogger(__name__)

HOOK_KINDS = ("gist", "q_en", "q_zh")
QUESTIONS_PER_LANGUAGE = 3
_HAN = re.compile(r"[\u4e00-\u9fff]")


def clause_hash(text: str) -> str:
    """The hash an entry records of the clause text it was written from."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class HookEntry:
    label: str
    clause_hash: str
    gist_en: str
    questions_en: tuple[str, ...]
    questions_zh: tuple[str, ...]
    source: str = ""  # file:line, for messages

    def texts(self) -> list[tuple[str, str]]:
        """(kind, text) of every hook, the gist first."""
        out = [("gist", self.gist_en)] if self.gist_en else []
        out += [("q_en", q) for q in self.questions_en]
        out += [("q_zh", q) for q in self.questions_zh]
        return out

    def to_json(self) -> str:
        return json.dumps({"label": self.label, "clause_hash": self.clause_hash, "gist_en": self.gist_en,
                           "questions_en": list(self.questions_en),
                           "questions_zh": list(self.questions_zh)}, ensure_ascii=False)


def entry_problem(data: object) -> str:
    """Why a decoded JSON line is not a usable entry ("" when it is)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    for key in ("label", "clause_hash", "gist_en"):
        if not isinstance(data.get(key), str) or not data[key].strip():
            return f"{key} must be a non-empty string"
    for key in ("questions_en", "questions_zh"):
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(q, str) and q.strip() for q in value):
            return f"{key} must be a non-empty list of strings"
    if len(_HAN.findall(data["gist_en"])) > 12:
        return "gist_en must be English"
    return ""


def parse_entry(data: dict, source: str = "") -> HookEntry:
    return HookEntry(label=data["label"].strip(), clause_hash=data["clause_hash"].strip(),
                     gist_en=data["gist_en"].strip(),
                     questions_en=tuple(q.strip() for q in data["questions_en"]),
                     questions_zh=tuple(q.strip() for q in data["questions_zh"]), source=source)


def read_entries(folders: Iterable[Path]) -> tuple[list[HookEntry], list[str]]:
    """Every entry of every *.jsonl under the folders; a bad line is reported and skipped."""
    entries: list[HookEntry] = []
    problems: list[str] = []
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.jsonl")):
            for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{path}:{i}"
                try:
                    data = json.loads(line)
                except ValueError as exc:
                    problems.append(f"{where}: not JSON ({exc})")
                    continue
                if why := entry_problem(data):
                    problems.append(f"{where}: {why}")
                    continue
                entries.append(parse_entry(data, where))
    return entries, problems


@dataclass
class HookMatch:
    """Entries attached to clauses, and what does not fit."""

    by_clause: dict[tuple[str, int], HookEntry] = field(default_factory=dict)
    stale: list[HookEntry] = field(default_factory=list)  # hash or label matches no clause

    def coverage(self, clauses: Mapping[tuple[str, int], Chunk]) -> dict[str, tuple[int, int]]:
        """doc_id → (clauses with hooks, clauses)."""
        out: dict[str, list[int]] = {}
        for key in clauses:
            counts = out.setdefault(key[0], [0, 0])
            counts[1] += 1
            counts[0] += key in self.by_clause
        return {doc: (have, total) for doc, (have, total) in out.items()}

    def missing(self, clauses: Mapping[tuple[str, int], Chunk]) -> list[str]:
        return [c.label for key, c in clauses.items() if key not in self.by_clause]


def match_entries(entries: list[HookEntry], clauses: Mapping[tuple[str, int], Chunk]) -> HookMatch:
    """Attach each entry to the clause with its hash and label. Two versions of one law share
    labels, so the hash decides; the first entry for a clause wins."""
    by_hash: dict[tuple[str, str], list[tuple[str, int]]] = {}
    for key, c in clauses.items():
        by_hash.setdefault((clause_hash(c.text), c.label), []).append(key)
    result = HookMatch()
    for e in entries:
        keys = by_hash.get((e.clause_hash, e.label))
        if not keys:
            result.stale.append(e)
            continue
        for key in keys:
            result.by_clause.setdefault(key, e)
    return result


# ---- the hook index: rows, vectors, lexical field --------------------------------

# Questions are embedded as queries (e5's "query:" side: question↔question is symmetric),
# gists as passages. The cache and shipped vectors key them apart by this prefix.
QUERY_KEY_PREFIX = "query\x00"


def vector_key(kind: str, text: str) -> str:
    return (QUERY_KEY_PREFIX + text) if kind != "gist" else text


@dataclass(frozen=True)
class HookRow:
    clause: tuple[str, int]
    kind: str
    text: str


def hook_rows(match: HookMatch) -> list[HookRow]:
    rows = []
    for key in sorted(match.by_clause):
        rows += [HookRow(key, kind, text) for kind, text in match.by_clause[key].texts()]
    return rows


def lexical_document(entry: HookEntry) -> str:
    return "\n".join(text for _, text in entry.texts())
