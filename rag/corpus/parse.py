"""Clause-level parsing of normalised text. Pure functions over strings.

Two shapes: policy documents (header, parts 一、, measures （一） numbered
across parts, items, closing) and laws/regulations (编/章/节 headings and
第X条 articles that keep all their 款 and 项).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from rag.corpus.numerals import CN_NUMERAL_CHARS, cn_to_int
from rag.models import Clause

_N = CN_NUMERAL_CHARS
PART_RE = re.compile(rf"^([{_N}]+)、(.*)$")
MEASURE_RE = re.compile(rf"^（([{_N}]+)）(.*)$")
ITEM_RE = re.compile(r"^(?:\d+[.．、]|（\d+）)")
ARTICLE_RE = re.compile(rf"^第([{_N}\d]+)条(?:之([{_N}]+))?(?: |$)")
# Some sources write no space after the number; used only when no article has one.
ARTICLE_LOOSE_RE = re.compile(rf"^第([{_N}\d]+)条(?:之([{_N}]+))?")
HEADING_RE = re.compile(rf"^第([{_N}\d]+)(编|分编|章|节)(?:\s*|$)(.*)$")
# A heading run into the next one on the same line ("第二编 污染防治第一分编 通则" in laws.db).
_INNER_HEADING_RE = re.compile(rf"(?<=\S)(?=第[{_N}\d]+(?:编|分编|章|节)\s)")
DATE_LINE_RE = re.compile(r"^\d{4}年\d{1,2}月\d{1,2}日$")
LAW_SIGNAL_MIN_ARTICLES = 3


def _lines(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, line) for every non-empty line, offsets into text."""
    pos = 0
    for raw in text.split("\n"):
        start, end = pos, pos + len(raw)
        pos = end + 1
        if raw.strip():
            lead = len(raw) - len(raw.lstrip())
            yield start + lead, end, raw.strip()


def heading_of(text: str) -> str:
    """The heading sentence of a measure: （十三）提升土地资源利用效率。… → （十三）提升土地资源利用效率."""
    first = re.split(r"[。；]", text, maxsplit=1)[0]
    return first if len(first) <= 40 else first[:40] + "…"


def _article_pattern(text: str) -> re.Pattern[str]:
    spaced = sum(1 for _, _, line in _lines(text) if ARTICLE_RE.match(line))
    return ARTICLE_RE if spaced >= LAW_SIGNAL_MIN_ARTICLES else ARTICLE_LOOSE_RE


def looks_like_law(text: str) -> bool:
    pattern = _article_pattern(text)
    articles = sum(1 for _, _, line in _lines(text) if pattern.match(line))
    numbers = [m.group(1) for _, _, line in _lines(text) if (m := MEASURE_RE.match(line))]
    # A policy numbers its measures （一）…（十六） once across the document; items that
    # restart at （一） inside articles (a regulation's 项) are not measures.
    measures = len(numbers) if numbers.count("一") <= 1 else 0
    return articles >= LAW_SIGNAL_MIN_ARTICLES and articles > measures


def parse_document(text: str) -> list[Clause]:
    return parse_law(text) if looks_like_law(text) else parse_policy(text)


def split_headings(line: str) -> list[str]:
    """A heading line, split where another heading runs on: '第二编 污染防治第一分编 通则' →
    ['第二编 污染防治', '第一分编 通则']. A reference inside a heading's title stays."""
    parts = [p.strip() for p in _INNER_HEADING_RE.split(line)]
    return [p for p in parts if p] if all(HEADING_RE.match(p) for p in parts if p) else [line]


def parse_law(text: str) -> list[Clause]:
    """Articles (第X条) with their section path; text before the first article is the preamble."""
    clauses: list[Clause] = []
    headings: dict[str, str] = {}  # level → heading text
    levels = ("编", "分编", "章", "节")
    current: dict | None = None
    preamble: list[tuple[int, int]] = []
    article_re = _article_pattern(text)

    def close() -> None:
        nonlocal current
        if current:
            clauses.append(Clause(**current))
            current = None

    for start, end, line in _lines(text):
        if HEADING_RE.match(line):
            close()
            for heading in split_headings(line):
                m = HEADING_RE.match(heading)
                assert m is not None
                level = m.group(2)
                headings[level] = re.sub(r"\s+", " ", heading)
                for lower in levels[levels.index(level) + 1 :]:
                    headings.pop(lower, None)
            continue
        if m := article_re.match(line):
            close()
            number = cn_to_int(m.group(1))
            key = f"第{m.group(1)}条" + (f"之{m.group(2)}" if m.group(2) else "")
            path = tuple(headings[lv] for lv in levels if lv in headings) + (key,)
            current = dict(key=key, kind="article", section_path=path, start=start,
                           end=end, number=number)
            continue
        if current:
            current["end"] = end
        elif not clauses:
            preamble.append((start, end))
    close()
    if preamble and len(preamble) > 1:
        # The first line is the title; the rest (a 序言 or enactment note) is citable.
        s, e = preamble[1][0], preamble[-1][1]
        clauses.insert(0, Clause(key="序言", kind="preamble", section_path=("序言",), start=s, end=e))
    return clauses


def parse_policy(text: str) -> list[Clause]:
    """Header, preamble, parts, measures (numbered across parts), closing."""
    lines = list(_lines(text))
    first_struct = next(
        (i for i, (_, _, ln) in enumerate(lines) if PART_RE.match(ln) or MEASURE_RE.match(ln)),
        len(lines),
    )
    clauses: list[Clause] = []
    prefix = lines[:first_struct]
    date_idx = next((i for i, (_, _, ln) in enumerate(prefix) if DATE_LINE_RE.match(ln)), None)
    if date_idx is not None and date_idx + 1 < len(prefix):
        # A notice that issues a plan: the notice itself, then the plan's title and preamble.
        clauses.append(_span("印发通知", "header", ("印发通知",), prefix[: date_idx + 1]))
        clauses.append(_span("前言", "preamble", ("前言",), prefix[date_idx + 1 :]))
    elif prefix:
        clauses.append(_span("前言", "preamble", ("前言",), prefix))

    part: str | None = None
    block: list[tuple[int, int, str]] = []
    block_meta: tuple[str, str, tuple[str, ...], int | None] | None = None
    measures_seen = 0

    def flush() -> None:
        nonlocal block, block_meta
        if block and block_meta:
            key, kind, path, number = block_meta
            clauses.append(_span(key, kind, path, block, number))
        block, block_meta = [], None

    body = lines[first_struct:]
    last_measure_idx = max(
        (i for i, (_, _, ln) in enumerate(body) if MEASURE_RE.match(ln)), default=-1
    )
    for i, (start, end, line) in enumerate(body):
        if m := PART_RE.match(line):
            flush()
            part = line
            block_meta = (f"{m.group(1)}、{m.group(2)}", "part", (line,), cn_to_int(m.group(1)))
            block = []  # the heading alone is not content; text under it is
            continue
        if m := MEASURE_RE.match(line):
            flush()
            measures_seen += 1
            key = f"（{m.group(1)}）"
            path = ((part,) if part else ()) + (heading_of(line),)
            block_meta = (key, "measure", path, cn_to_int(m.group(1)))
            block = [(start, end, line)]
            continue
        after_last_measure = last_measure_idx >= 0 and i > last_measure_idx
        if after_last_measure and block_meta and block_meta[1] == "measure" and not ITEM_RE.match(line):
            flush()
            block_meta = ("结语", "closing", ("结语",), None)
        if block_meta is None:
            block_meta = ("结语", "closing", ("结语",), None) if measures_seen else (
                "正文", "paragraph", ("正文",), None)
        block.append((start, end, line))
    flush()
    return clauses


def _span(key: str, kind: str, path: tuple[str, ...], lines: list[tuple[int, int, str]],
          number: int | None = None) -> Clause:
    return Clause(key=key, kind=kind, section_path=path, start=lines[0][0], end=lines[-1][1],
                  number=number)
