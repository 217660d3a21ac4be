"""Questions that name a clause: 外商投资法第二十一条, 《工作方案》（十三）, 第十三项措施,
"measure 13", "Article 21 of the Foreign Investment Law". Pure parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.corpus.aliases import canonical_chinese, english_documents
from rag.corpus.numerals import CN_NUMERAL_CHARS, cn_to_int, int_to_cn

_N = CN_NUMERAL_CHARS
NOTICE_SHORT = "工作方案"


@dataclass(frozen=True)
class ClauseRef:
    short_title: str | None  # None: the question names no document
    clause_key: str  # （十三） / 第二十一条


_ZH_ARTICLE = re.compile(rf"(?:《([^》]{{2,40}})》|([\u4e00-\u9fff]{{2,30}}?[法例定则典]))?\s*第([{_N}\d]+)条(?:之([{_N}]+))?")
_ZH_MEASURE = re.compile(rf"(?:（|\()([{_N}]{{1,3}})(?:）|\))|第([{_N}\d]{{1,3}})(?:项|条)?措施|措施([{_N}\d]{{1,3}})")
_EN_MEASURE = re.compile(r"\bmeasures?\s*(?:no\.?\s*)?\(?(\d{1,2})\)?", re.I)
_EN_ARTICLE = re.compile(r"\bart(?:icle|\.)?\s*(\d{1,4})\b", re.I)


def _english_law(question: str, english_to_short: dict[str, str], known: set[str]) -> str | None:
    found = english_documents(question, english_to_short, known)
    return found[0] if found else None


def _strip_prefix(title: str) -> str:
    return title[len("中华人民共和国"):] if title.startswith("中华人民共和国") else title


def find_reference(question: str, known_short_titles: set[str],
                   english_to_short: dict[str, str],
                   zh_aliases: dict[str, str] | None = None) -> ClauseRef | None:
    """The clause a question names, if any. Law names must be known to count; other
    names (专利法实施条例, "EIT implementation regulations") count through the aliases."""
    if zh_aliases:
        question = canonical_chinese(question, zh_aliases, known_short_titles)
    if m := _ZH_ARTICLE.search(question):
        title = _strip_prefix(m.group(1) or m.group(2) or "")
        number = cn_to_int(m.group(3))
        key = f"第{int_to_cn(number)}条" + (f"之{m.group(4)}" if m.group(4) else "")
        if title:
            # 外商投资法实施条例 must not resolve to 外商投资法: prefer the longest known title.
            matches = [t for t in known_short_titles if title.endswith(t) or t.endswith(title)]
            if matches:
                return ClauseRef(max(matches, key=len), key)
        law = _english_law(question, english_to_short, known_short_titles)
        return ClauseRef(law, key) if law or not title else None
    if m := _EN_ARTICLE.search(question):
        law = _english_law(question, english_to_short, known_short_titles)
        if law:
            return ClauseRef(law, f"第{int_to_cn(int(m.group(1)))}条")
    if m := _ZH_MEASURE.search(question):
        raw = next(g for g in m.groups() if g)
        try:
            number = cn_to_int(raw)
        except ValueError:
            return None
        if 1 <= number <= 16:
            return ClauseRef(NOTICE_SHORT, f"（{int_to_cn(number)}）")
    if m := _EN_MEASURE.search(question):
        number = int(m.group(1))
        if 1 <= number <= 16:
            return ClauseRef(NOTICE_SHORT, f"（{int_to_cn(number)}）")
    return None
