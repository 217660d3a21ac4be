"""English titles of the work plan's parts and measures and of the laws (rag/data)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from rag.settings import PACKAGE_ROOT

_PATH = PACKAGE_ROOT / "data" / "english_titles.json"


@lru_cache(maxsize=1)
def _data() -> dict[str, Any]:
    if not _PATH.exists():
        return {}
    return json.loads(_PATH.read_text(encoding="utf-8"))


def english_law_titles() -> dict[str, str]:
    return dict(_data().get("laws", {}))


def clause_english_title(short_title: str, clause_key: str, kind: str, doc_english_title: str) -> str:
    """'Measure 13: Improving land resource efficiency' / 'Foreign Investment Law, Article 21'."""
    from rag.corpus.numerals import cn_to_int

    notice = _data().get("notice", {})
    if short_title == "工作方案":
        inner = clause_key.strip("（）")
        if kind == "measure" and inner in notice.get("measures", {}):
            return f"Work Plan, Measure {cn_to_int(inner)}: {notice['measures'][inner]}"
        if kind == "part":
            numeral = clause_key.split("、")[0]
            if numeral in notice.get("parts", {}):
                return f"Work Plan, Part {cn_to_int(numeral)}: {notice['parts'][numeral]}"
        if kind == "header":
            return f"Work Plan: {notice.get('header', 'the issuing notice')}"
        if kind == "closing":
            return f"Work Plan: {notice.get('closing', 'implementation')}"
        if kind == "preamble":
            return "Work Plan: preamble"
    base = doc_english_title or short_title
    if kind == "article" and clause_key.startswith("第"):
        number = clause_key[1:].split("条")[0]
        try:
            return f"{base}, Article {cn_to_int(number)}" + ("" if clause_key.endswith("条") else " (bis)")
        except ValueError:
            return f"{base}, {clause_key}"
    return base
