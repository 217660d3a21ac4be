"""Is a question within what the corpus can answer? Pure checks used to abstain.

The corpus is national law and one national work plan. Questions about a
particular city, a foreign country or a company, or that ask for a figure the
cited text does not contain, get "no basis" instead of a related-sounding quote.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rag.corpus.places import place_names

_FIGURE_QUESTION = re.compile(
    # Explicit quantity asks only: a yes/no question that merely mentions a fee or a price
    # ("Can an agency charge a fee…?") is answered by a clause without a number.
    r"多少|几[个天年月日次家位项倍成点%]|几个|多长时间|多久|什么时候|几时|"
    r"\bwhat time\b|\bopening hours\b|\boffice hours\b|"
    r"\bhow (much|many|long)\b|\bwhat (is|was|'s) the (rate|price|cost|fee|amount|number|percentage|share)\b|"
    r"\bwhat percentage\b|\bhow high\b|\bminimum\b|\bmaximum\b",
    re.I,
)
_CN_NUM = "零〇一二两三四五六七八九十百千万亿半"
_FIGURE = re.compile(
    rf"(?<![A-Za-z])\d|[{_CN_NUM}]+(?:个)?(?:日|天|年|月|周|小时|工作日|倍|人|元|万元|亿元|公顷|亩|平方米|次|项|名|%|％|分之|成)"
)


def asks_for_figure(question: str) -> bool:
    return bool(_FIGURE_QUESTION.search(question))


# Dates and document numbers are not the figure a question asks for (2025年5月21日, 〔2025〕12号).
_NOT_A_FIGURE = re.compile(r"\d{4}\s*年(?:\s*\d{1,2}\s*月)?(?:\s*\d{1,2}\s*日)?|〔\d{4}〕\s*\d+\s*号")


def has_figure(text: str) -> bool:
    return bool(_FIGURE.search(_NOT_A_FIGURE.sub("", text)))


def unknown_names(question: str, corpus_has: Callable[[str], bool],
                  known_english: Callable[[str], bool]) -> list[str]:
    """Names in the question that the corpus never mentions (苏州, Singapore, Kunshan)."""
    out = []
    for name in place_names(question):
        if re.search(r"[\u4e00-\u9fff]", name):
            if not corpus_has(name):
                out.append(name)
        elif not known_english(name):
            out.append(name)
    return out


# Facts the corpus states only where a clause says so in words: a question asking for one is
# answered by a clause that names it, or not at all. National law and the work plan rank no
# zone and appoint no official, so "which zone ranked first" or "who appoints the director"
# drew the preface or the evaluation measure as an answer.
_ASKED_FACTS: tuple[tuple[re.Pattern[str], re.Pattern[str], str], ...] = (
    (re.compile(r"排第几|第几名|排名第几|排在第几|排名第一|排第一|名次|排名结果|排前几|前\d+名|"
                r"\branked (?:number|no\.?|#|first|top|\d)|\branking results?\b|"
                r"\bwhich\b[^?]*\b(?:ranked|in (?:the )?top)\b", re.I),
     re.compile(r"排名|名次|第[一二三四五六七八九十\d]+名"), "a ranking position"),
    (re.compile(r"谁任命|由谁任命|任命的|谁来任命|任免|\bwho appoints\b|\bappointed by\b|\bwho (?:names|picks) the\b",
                re.I),
     re.compile(r"任命|任免|聘任"), "who appoints an official"),
)


def unanswered_ask(question: str, text: str) -> str | None:
    """What the question asks for that the text does not state ("a ranking position"), if any."""
    for asks, gives, what in _ASKED_FACTS:
        if asks.search(question) and not gives.search(text):
            return what
    return None
