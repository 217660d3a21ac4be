"""How a follow-up question uses the conversation before it. An elliptic follow-up ("那商业用地呢？",
"What about a utility model?") is searched with the previous question's words; a follow-up that
states a whole question itself is searched on its own words, preferring the document the previous
question was answered from; a question that opens a new topic uses nothing of the history."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rag.corpus.normalize import normalize_query
from rag.index.lexical import query_tokens

# A carried follow-up with at least this many query tokens states its own question: carrying the
# previous question's words into it pulled the search back to the previous clause. Measured on
# the development sets' follow-ups (blind-dev and blind-dev2 continuations, dev): hit@1 was flat
# from 12 to 18 tokens (continuations 8 -> 12-13 of 19, dev unchanged), fell at 20.
STANDALONE_TOKENS = 15
# How many earlier turns a chain of follow-ups looks back through to find its document
# (each step is one more search).
MAX_CHAIN = 2

# Opening words of an elliptic follow-up.
_ELLIPTIC = re.compile(r"^(那|那么|那如果|还有|另外|and\b|what about|how about|and what|and for|what if)", re.I)
# A pronoun that points back at the previous turn ("does it say…", "those obligations", 它/该/这些).
_ANAPHORA = re.compile(r"\b(it|its|those|these|that one|this one)\b|它|该类|该项|该条|该法|这些|那些|这个|那个|这类|那类|此类|上述"
                       r"|这事|这件事|此事|这种情况|这样的话", re.I)
# "要是…呢？", "如果…呢": a supposition put to the previous turn.
_SUPPOSITION = re.compile(r"^(要是|如果|假如|万一|若)[^？?。]*呢")
# Courtesy words before the question proper ("ok thanks.", "好的。").
_COURTESY = re.compile(r"^(?:(?:ok(?:ay)?|thanks?|thank you|great|got it|好的|好|谢谢|明白了|嗯|哦)[\s,.!;:。，！；：、]*)+", re.I)
# Words that open a new topic ("另外问下…", "还有个事…", "Different question: …"): the previous
# turn must not be carried into it, though "还有"/"另外" alone continue one.
_TOPIC_SWITCH = re.compile(
    r"^(?:另外(?:问下|问一下|想问|再问|一个问题|一件事|，|,)|还有(?:个事|一件事|一个问题|个问题|，|,)|对了|换个(?:问题|话题)"
    r"|顺便问|再问(?:一下|个)|另一个问题|(?:now |and )?(?:a )?(?:different|separate|new|another|other) "
    r"(?:topic|question|issue|matter|thing)|unrelated|by the way|btw\b|one more (?:question|thing)"
    r"|also,? (?:a )?(?:question|unrelated)|switching (?:topics?|subjects?|gears)|(?:a )?change of (?:topic|subject)"
    r"|on (?:a|an)?(?:other|different|separate) (?:note|topic|matter))",
    re.I)


@dataclass(frozen=True)
class FollowUp:
    """What a search takes from the previous user turn (all empty: nothing)."""

    context: str = ""  # its words join the search (an elliptic follow-up)
    topic: str = ""  # the document it is answered from is preferred (a follow-up that states itself)
    # How `topic` itself followed the turn before it ("那外观设计呢？" after a patent question).
    topic_follows: FollowUp | None = None


def is_elliptic(question: str) -> bool:
    q = _COURTESY.sub("", question.strip())  # "ok and for the M0 land…" continues
    return bool(_ELLIPTIC.match(q) or _ANAPHORA.search(q) or _SUPPOSITION.match(q)) or len(re.sub(r"[\s\W]", "", q)) <= 6


def opens_new_topic(question: str) -> bool:
    return bool(_TOPIC_SWITCH.match(_COURTESY.sub("", question.strip())))


def follow_up(question: str, history: list[dict[str, str]] | None, chain: int = MAX_CHAIN) -> FollowUp:
    """How `question` (normalised) uses the last user turn of `history`."""
    if not history or opens_new_topic(question) or not is_elliptic(question):
        return FollowUp()
    users = [i for i, h in enumerate(history) if h.get("role") == "user"]
    previous = history[users[-1]].get("content", "") if users else ""
    if not previous.strip():
        return FollowUp()
    before = follow_up(normalize_query(previous), history[:users[-1]], chain - 1) if chain > 1 else FollowUp()
    if len(query_tokens(question)) < STANDALONE_TOKENS:
        # "那商业用地呢？" then "那工业用地呢？": the words of the whole elliptic chain.
        return FollowUp(context=f"{before.context} {previous}".strip())
    return FollowUp(topic=previous, topic_follows=before if before != FollowUp() else None)
