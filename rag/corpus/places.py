"""Place and proper names in a text: jieba's place tags (ns) and capitalised English words.
Used to tell a document's place from a national one and a question's unknown names."""

from __future__ import annotations

import re
from functools import lru_cache

_CAPITALISED = re.compile(r"(?<![.?!]\s)(?<!^)\b([A-Z][a-z]{2,}(?:\s+[A-Z][a-z]{2,})*)")
# Capitalised words that are ordinary in questions about Chinese law.
_COMMON_PROPER = {
    "china", "chinese", "prc", "state", "council", "law", "article", "measure", "plan", "work",
    "ministry", "commerce", "mofcom", "etdz", "etdzs", "zone", "zones", "national", "people",
    "republic", "foreign", "investment", "does", "can", "what", "which", "how", "is", "are", "the",
    "under", "according", "if", "when", "who", "where", "why", "and", "or", "do", "will", "should",
    "english", "belt", "road", "invest", "made", "free", "trade", "customs",
}


@lru_cache(maxsize=1)
def posseg():
    import logging

    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def place_names(question: str) -> list[str]:
    """Place and proper names in the question: jieba `ns` words, capitalised English words."""
    # Dictionary words only: the HMM's guesses at unknown words tag fragments as places
    # ("科学技术进步法里" → 法里, "经开区" → 开区), which made answerable questions abstain.
    names = [w for w, flag in posseg().cut(question, HMM=False) if flag == "ns" and len(w) >= 2]
    for m in _CAPITALISED.finditer(question):
        words = [w for w in m.group(1).split() if w.lower() not in _COMMON_PROPER]
        if words:
            names.append(" ".join(words))
    return names
