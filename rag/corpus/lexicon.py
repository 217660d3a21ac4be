"""Domain vocabulary in rag/data: jieba user words, Chinese synonym groups and the
English→Chinese glossary that lets English questions reach Chinese clauses lexically."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from rag.corpus.normalize import normalize_query
from rag.settings import PACKAGE_ROOT

DATA = PACKAGE_ROOT / "data"


@dataclass(frozen=True)
class Lexicon:
    synonyms: tuple[tuple[str, ...], ...]  # groups, canonical first
    glossary: tuple[tuple[str, tuple[str, ...]], ...]  # (stemmed english phrase, chinese terms), longest first


def _read_lines(name: str) -> list[str]:
    path = DATA / name
    if not path.exists():
        return []
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]


@lru_cache(maxsize=1)
def load_lexicon() -> Lexicon:
    groups = []
    for line in _read_lines("synonyms.tsv"):
        members = tuple(m.strip() for m in line.split("|") if m.strip())
        if len(members) > 1:
            groups.append(members)
    gloss = []
    for line in _read_lines("glossary_en_zh.tsv"):
        if "\t" not in line:
            continue
        en, zh = line.split("\t", 1)
        terms = tuple(normalize_query(t.strip()) for t in zh.split("|") if t.strip())
        for phrase in en.split("|"):
            key = stem_words(phrase)
            if key.strip() and terms:
                gloss.append((key, terms))
    gloss.sort(key=lambda p: -len(p[0]))
    return Lexicon(tuple(groups), tuple(gloss))


def user_words() -> list[tuple[str, int]]:
    words = []
    for line in _read_lines("userdict.txt"):
        parts = line.split()
        freq = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 20000
        words.append((parts[0], freq))
    for group in load_lexicon().synonyms:
        words += [(m, 20000) for m in group if re.search(r"[\u4e00-\u9fff]", m)]
    return words


def expand_synonyms(text: str, lex: Lexicon | None = None) -> list[str]:
    """Other members of every synonym group with a member in the text."""
    lex = lex or load_lexicon()
    lowered = text.lower()
    extra: list[str] = []
    for group in lex.synonyms:
        if any(m.lower() in lowered for m in group):
            extra += [m for m in group if m.lower() not in lowered]
    return extra


def stem_words(text: str) -> str:
    """Lower-case words with a crude plural folding (zones → zone, companies → company)."""
    words = re.sub(r"[^a-z0-9]+", " ", text.lower()).split()
    out = []
    for w in words:
        if len(w) > 4 and w.endswith("ies"):
            w = w[:-3] + "y"
        elif len(w) > 3 and w.endswith("s") and not w.endswith(("ss", "us", "is")):
            w = w[:-1]
        out.append(w)
    return " " + " ".join(out) + " "


def translate_terms(text: str, lex: Lexicon | None = None) -> list[str]:
    """Chinese terms for the English domain phrases in the text, longest phrases first."""
    return list(_translate(text, lex or load_lexicon()))


@lru_cache(maxsize=2048)
def _translate(text: str, lex: Lexicon) -> tuple[str, ...]:
    lowered = stem_words(text)
    found: list[str] = []
    if not re.search(r"[a-z]", lowered):
        return ()
    for key, terms in lex.glossary:
        if key in lowered:
            found += [t for t in terms if t not in found]
            lowered = lowered.replace(key, " ")  # a longer phrase consumes its words
    return tuple(found)


@lru_cache(maxsize=1)
def glossary_words() -> frozenset[str]:
    """Every English word of the glossary, plural-folded."""
    return frozenset(w for key, _ in load_lexicon().glossary for w in key.split())
