"""Other names of the corpus documents (rag/data/document_aliases.json) and the English
"implementing regulations of <law>" pattern. Pure functions over plain data."""

from __future__ import annotations

import json
import re
from functools import lru_cache

from rag.settings import PACKAGE_ROOT

_PATH = PACKAGE_ROOT / "data" / "document_aliases.json"
_PRC = " of the people's republic of china"
# "implementing regulations", "implementation rules", "regulations for the implementation",
# "detailed rules for the implementation": the question asks for the law's regulation.
_IMPLEMENTING = re.compile(
    r"\bimplement(?:ing|ation)\s+(?:regulations?|rules|provisions)\b"
    r"|\b(?:regulations?|rules|provisions)\s+(?:for|on)\s+(?:the\s+)?implement(?:ing|ation)\b"
    r"|\bdetailed\s+rules\b", re.I)


@lru_cache(maxsize=1)
def _data() -> dict[str, dict[str, str]]:
    if not _PATH.exists():
        return {"zh": {}, "en": {}}
    data = json.loads(_PATH.read_text(encoding="utf-8"))
    return {"zh": dict(data.get("zh", {})), "en": dict(data.get("en", {}))}


def chinese_aliases() -> dict[str, str]:
    return _data()["zh"]


def english_aliases() -> dict[str, str]:
    return _data()["en"]


def english_core(title: str) -> str:
    """An English title as people write it: lower case, without "of the PRC"."""
    return re.sub(r"\s+", " ", title.lower().replace(_PRC, " ").replace(" the people's republic of china ", " ")).strip()


def canonical_chinese(text: str, aliases: dict[str, str], known: set[str]) -> str:
    """Other Chinese names replaced by the short titles they stand for (专利法实施条例 →
    专利法实施细则). An alias inside a known title (外资法 in 外资法实施条例) is left alone."""
    for alias in sorted(aliases, key=len, reverse=True):
        target = aliases[alias]
        if alias not in text or target not in known:
            continue
        longer = [t for t in known | set(aliases) if alias in t and t != alias and t in text]
        if not longer:
            # 外资法律 is "foreign-investment laws", not 外资法 + 律.
            text = re.sub(re.escape(alias) + "(?!律)", target, text)
    return text


def implementing_regulation(law: str, known: set[str]) -> str | None:
    for suffix in ("实施条例", "实施细则"):
        if law + suffix in known:
            return law + suffix
    return None


def english_documents(question: str, english_to_short: dict[str, str], known: set[str]) -> list[str]:
    """Short titles of the documents an English question names, longest name first.
    "the implementing regulations of the Patent Law" names 专利法实施细则, not 专利法."""
    lowered = f" {question.lower()} "
    asks_regulation = bool(_IMPLEMENTING.search(question))
    found: list[str] = []
    for core, pattern, short in _english_patterns(tuple(english_to_short.items()), frozenset(known)):
        if not pattern.search(lowered):
            continue
        lowered = lowered.replace(core, " ")
        if asks_regulation and (regulation := implementing_regulation(short, known)):
            short = regulation
        if short not in found:
            found.append(short)
    return found


@lru_cache(maxsize=8)
def _english_patterns(english_to_short: tuple[tuple[str, str], ...],
                      known: frozenset[str]) -> list[tuple[str, re.Pattern[str], str]]:
    """(core, its whole-word pattern, short title), longest core first; built once per
    title table (this was ~3 ms of every English question)."""
    cores = sorted(((english_core(en), short) for en, short in english_to_short if short in known),
                   key=lambda p: -len(p[0]))  # stable: ties keep the table's order
    return [(core, re.compile(rf"(?<![a-z]){re.escape(core)}(?![a-z])"), short) for core, short in cores if core]
