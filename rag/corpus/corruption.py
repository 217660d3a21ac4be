"""Find spans of Chinese text that look damaged by a bad encoding round trip.

Seeds of suspicion: `?` or U+FFFD next to a Han character, and Greek,
Cyrillic or other non-CJK letters of scripts that never appear in Chinese
legal text. Seeds closer than `_MERGE_GAP` characters are one span, widened
over the Latin/pinyin debris that such mojibake leaves around it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
_MERGE_GAP = 4
_DEBRIS = re.compile(r"[A-Za-z\u00c0-\u024f\u0300-\u036f()?\ufffd]")
_FOREIGN_SCRIPTS = ("GREEK", "CYRILLIC", "ARMENIAN", "HEBREW", "ARABIC", "THAI", "GEORGIAN")


@dataclass(frozen=True)
class Suspect:
    path: str
    line: int  # 1-based
    column: int  # 1-based, of the span's first character
    text: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: suspicious text {self.text!r} ({self.reason})"


def _is_han(ch: str) -> bool:
    return bool(_HAN.match(ch))


def _seed_reason(line: str, i: int) -> str | None:
    ch = line[i]
    if ch in "?\ufffd":
        before = line[i - 1] if i > 0 else ""
        after = line[i + 1] if i + 1 < len(line) else ""
        if _is_han(before) or _is_han(after):
            return "replacement character between Han characters" if ch == "\ufffd" else "'?' inside Chinese text"
        return None
    if ch.isalpha() and not _is_han(ch) and ord(ch) > 0x24F:
        name = unicodedata.name(ch, "")
        if name.startswith(_FOREIGN_SCRIPTS):
            return f"{name.split()[0].title()} letter inside Chinese text"
    return None


# Greek letters that Chinese statutes use as symbols (α放射性, β射线, μg).
_SCIENCE_GREEK = set("αβγδλμπσΩω")


def _is_scientific_symbol(line: str, group: list[tuple[int, str]]) -> bool:
    """A lone science Greek letter with no other debris around it is real text."""
    if len(group) != 1:
        return False
    i = group[0][0]
    if line[i] not in _SCIENCE_GREEK:
        return False
    neighbours = line[max(0, i - 2) : i] + line[i + 1 : i + 3]
    return not any(_DEBRIS.match(c) or ord(c) in range(0x370, 0x530) for c in neighbours)


def _chinese_line(line: str) -> bool:
    han = sum(1 for ch in line if _is_han(ch))
    return han >= 4 and han * 3 >= len(line.strip())


def detect_corruption(text: str, path: str = "<text>") -> list[Suspect]:
    suspects: list[Suspect] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not _chinese_line(line):
            continue
        seeds = [(i, r) for i in range(len(line)) if (r := _seed_reason(line, i))]
        if not seeds:
            continue
        groups: list[list[tuple[int, str]]] = [[seeds[0]]]
        for seed in seeds[1:]:
            if seed[0] - groups[-1][-1][0] <= _MERGE_GAP + 1:
                groups[-1].append(seed)
            else:
                groups.append([seed])
        for group in groups:
            if _is_scientific_symbol(line, group):
                continue
            start, end = group[0][0], group[-1][0] + 1
            while start > 0 and _DEBRIS.match(line[start - 1]) and line[start - 1] != "(":
                start -= 1
            while end < len(line) and _DEBRIS.match(line[end]):
                end += 1
            reasons = sorted({r for _, r in group})
            suspects.append(Suspect(path, lineno, start + 1, line[start:end], "; ".join(reasons)))
    return suspects
