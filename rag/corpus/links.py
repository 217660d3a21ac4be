"""Links between clauses from the references in their text. Pure functions over strings.

An implementing regulation says which article it explains ("企业所得税法第二十八条第二款
所称…", "依照外商投资法第三十六条的规定"); laws and regulations point at their own
articles ("本法第X条", "本条例第X条") and at other documents (《中华人民共和国土地管理法》
第四十五条). Each reference becomes a link from the citing clause to the cited one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from rag.corpus.numerals import CN_NUMERAL_CHARS, cn_to_int, int_to_cn

_N = CN_NUMERAL_CHARS
PRC = "中华人民共和国"
_SELF = ("本法", "本条例", "本细则", "本规定", "本办法")
# One article with its optional 款 and 项: 第二十八条第二款, 第六条第（一）项, 第二条第二款第一项.
_ARTICLE = rf"第[{_N}\d]+条(?:之[{_N}]+)?(?:第[{_N}\d]+款)?(?:第(?:（[{_N}\d]+）|[{_N}\d]+)项)?"
# 第二十四条、第二十九条和第四十二条: one title, several articles.
_ARTICLES = rf"{_ARTICLE}(?:(?:、|和|或者|及|以及|至)\s*{_ARTICLE})*"
_ARTICLE_NO = re.compile(rf"第([{_N}\d]+)条(?:之([{_N}]+))?")


@dataclass(frozen=True)
class Reference:
    short_title: str  # the cited document
    clause_key: str  # 第二十八条
    start: int  # offset of the reference in the citing text


def _title_pattern(known: Iterable[str]) -> re.Pattern[str]:
    names = sorted({t for t in known if len(t) >= 2}, key=len, reverse=True)
    named = "|".join(re.escape(n) for n in names)
    alternatives = [r"《(?P<quoted>[^》]{2,60})》", "(?P<self>" + "|".join(_SELF) + ")"]
    if named:
        alternatives.append(rf"(?:{PRC})?(?P<named>{named})")
    return re.compile(rf"(?:{'|'.join(alternatives)})\s*(?P<articles>{_ARTICLES})")


def find_references(text: str, own_title: str, known: Iterable[str],
                    pattern: re.Pattern[str] | None = None) -> list[Reference]:
    """Article references in `text` to documents in `known` (本法… = `own_title`)."""
    known = set(known)
    pattern = pattern or _title_pattern(known)
    out: list[Reference] = []
    for m in pattern.finditer(text):
        if m.group("self"):
            title = own_title
        elif m.group("quoted"):
            title = m.group("quoted").removeprefix(PRC)
            if title not in known:
                continue
        else:
            title = m.group("named")
        for a in _ARTICLE_NO.finditer(m.group("articles")):
            try:
                number = cn_to_int(a.group(1))
            except ValueError:
                continue
            key = f"第{int_to_cn(number)}条" + (f"之{a.group(2)}" if a.group(2) else "")
            out.append(Reference(title, key, m.start() + a.start()))
    return out


@dataclass(frozen=True)
class ClauseText:
    """What link building needs of a clause."""

    short_title: str
    clause_key: str
    text: str


@dataclass
class LinkGraph:
    """cites[(title, key)] = clauses it refers to; cited_by = the reverse. Keys are
    (short_title, clause_key); only links between clauses that exist are kept."""

    cites: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    cited_by: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)

    def see_also(self, clause: tuple[str, str], limit: int = 6) -> list[tuple[str, str]]:
        """Other documents' clauses first (a law article's implementing-regulation articles,
        a regulation article's law article), then the same document's; nearest first."""
        linked = [c for c in self.cites.get(clause, []) + self.cited_by.get(clause, []) if c != clause]
        unique = list(dict.fromkeys(linked))
        unique.sort(key=lambda c: c[0] == clause[0])  # stable: text order within each group
        return unique[:limit]


def build_links(clauses: Iterable[ClauseText]) -> LinkGraph:
    clauses = list(clauses)
    exists = {(c.short_title, c.clause_key) for c in clauses}
    titles = {c.short_title for c in clauses}
    pattern = _title_pattern(titles)
    graph = LinkGraph()
    for c in clauses:
        source = (c.short_title, c.clause_key)
        for ref in find_references(c.text, c.short_title, titles, pattern):
            target = (ref.short_title, ref.clause_key)
            if target == source or target not in exists:
                continue
            if target not in graph.cites.setdefault(source, []):
                graph.cites[source].append(target)
                graph.cited_by.setdefault(target, []).append(source)
    return graph
