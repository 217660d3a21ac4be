"""Romanised names of documents, so English questions that name a document by its place
("Shandong's development-zone regulation", "Ningbo Daxie") reach it — for documents a user
adds too, which have no English title or glossary entry. Pure functions over titles."""

from __future__ import annotations

import re
from functools import lru_cache

# A title names a place when it is a zone's regulation: the place stands before these words.
_ZONE_WORDS = ("经济技术开发区", "经济开发区", "技术开发区", "高新技术产业开发区", "开发区", "高新区",
               "工业园区", "产业园区", "园区", "保税区", "综合保税区", "自由贸易试验区", "新区")
_ADMIN_SUFFIX = re.compile(r"(?:维吾尔自治区|壮族自治区|回族自治区|自治区|特别行政区|省|市|县|区)$")
_MAX_NAME = 8


def place_part(title: str) -> str:
    """The place a zone regulation's title starts with: 宁波大榭开发区条例 → 宁波大榭, 山东省经济开发区条例 → 山东."""
    if title.startswith(("中华人民共和国", "国务院")):
        return ""
    cut = min((i for i in (title.find(w) for w in _ZONE_WORDS) if i > 0), default=-1)
    if cut <= 0:
        return ""
    name = title[:cut]
    # 上海市闵行 / 山东省: drop a trailing administrative word, keep the name.
    name = _ADMIN_SUFFIX.sub("", name) or name
    return name if 2 <= len(name) <= _MAX_NAME and re.fullmatch(r"[\u4e00-\u9fff]+", name) else ""


@lru_cache(maxsize=512)
def romanised_names(title: str) -> tuple[str, ...]:
    """Lower-case pinyin words for the title's place: ('ningbo', 'daxie', 'ningbo daxie')."""
    import jieba
    from pypinyin import lazy_pinyin

    name = place_part(title)
    if not name:
        return ()
    words = [w for w in jieba.lcut(_ADMIN_SUFFIX.sub("", name)) if len(w) >= 2]
    forms = ["".join(lazy_pinyin(w)).lower() for w in words]
    if len(forms) > 1:
        forms.append(" ".join(forms))
    joined = "".join(lazy_pinyin(name)).lower()
    return tuple(dict.fromkeys([*forms, joined]))


def mentioned(question: str, names: tuple[str, ...]) -> bool:
    """Whether a lower-cased romanised name stands in the question as a word (Shandong's too)."""
    lowered = question.lower()
    return any(re.search(rf"(?<![a-z]){re.escape(n)}(?![a-z])", lowered) for n in names)
