"""Known defects of the source texts (rag/data/source_defects.json): articles a source merged
into the one before them, and clauses whose source lost a character. A merged article is
split out again where its surviving words begin; every answer citing a listed clause carries
its note, so a reader checks the official text."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

from rag.settings import PACKAGE_ROOT

_PATH = PACKAGE_ROOT / "data" / "source_defects.json"


@dataclass(frozen=True)
class Defect:
    document: str  # short title
    article: str  # the clause key it concerns
    note_zh: str
    note_en: str
    split_from: str = ""  # the source article that holds this one's surviving text
    starts_with: str = ""  # the words the surviving text begins with, at a line start


@lru_cache(maxsize=1)
def defects() -> tuple[Defect, ...]:
    return tuple(Defect(**d) for d in json.loads(_PATH.read_text(encoding="utf-8"))["defects"])


def source_note(short_title: str, clause_key: str, lang: str) -> str:
    """The note on this clause's source text ("" when it has none)."""
    for d in defects():
        if (d.document, d.article) == (short_title, clause_key):
            return d.note_en if lang == "en" else d.note_zh
    return ""


def split_merged(short_title: str, article: str, body: str) -> list[tuple[str, str]]:
    """[(article number, body)]: the article, then any article the source merged into it,
    split at the line where the merged article's surviving words begin."""
    out = [(article, body)]
    for d in defects():
        if (d.document, d.split_from) != (short_title, article) or not d.starts_with:
            continue
        head, body_now = out[-1]
        at = body_now.find("\n" + d.starts_with)
        if at < 0:
            continue  # the source was corrected: nothing to split
        out[-1:] = [(head, body_now[:at]), (d.article, body_now[at + 1 :])]
    return out
