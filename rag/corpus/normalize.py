"""Text normalisation shared by ingestion, queries and evaluation.

Every function here is pure. `normalize_text` is applied to every ingested
document and every query, so the two always meet in the same form;
`fold_for_match` is the stricter folding used to decide whether a chunk
"holds" an evidence snippet (punctuation and whitespace removed).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

# Bump when the output of normalize_text changes: the index records it and
# refuses to serve queries normalised differently from its documents.
NORMALIZER_VERSION = "1"

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCT = "，。、；：？！“”‘’（）《》〈〉【】—…·「」『』"
_CJK_CONTEXT = _HAN + "".join(re.escape(c) for c in _CJK_PUNCT)

_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜńňǹḿ"
_PINYIN_SYLLABLE = (
    r"(?:[bpmfdtnlgkhjqxrzcsyw]|zh|ch|sh)?"
    rf"[aeiouüv{_TONED}][a-z{_TONED}]{{0,4}}"
)
# A pinyin annotation is a lower-case syllable in ASCII parentheses right
# after a Han character, e.g. 發(fā). At least one tone mark is required so
# that genuine Latin in parentheses (M0), (5G), (a) is never touched.
_PINYIN_ANNOTATION = re.compile(
    rf"(?<=[{_HAN}])\((?=[a-z{_TONED}]*[{_TONED}])({_PINYIN_SYLLABLE})\)"
)

# Characters whose compatibility decomposition loses meaning in Chinese
# legal text (…→..., ①→1, full-width punctuation→ASCII); NFKC is applied to
# everything else, which folds full-width letters and digits, the ideographic
# space and CJK compatibility ideographs.
_NFKC_UNSAFE = re.compile(r"[\u2026\u2460-\u24ff\u3251-\u325f\u32b1-\u32bf\u2776-\u2793]")


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def safe_nfkc(text: str) -> str:
    out = []
    for ch in text:
        if ord(ch) < 128 or _NFKC_UNSAFE.match(ch):
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat.startswith("P") and ch not in "\uff08\uff09\uff0c\uff1a\uff1b\uff1f\uff01":
            out.append(ch)  # keep CJK punctuation such as 、。“” as they are
            continue
        out.append(unicodedata.normalize("NFKC", ch))
    return "".join(out)


def strip_pinyin_annotations(text: str) -> str:
    """Remove converter-added pinyin such as 發(fā) → 發; keep (M0), (5G), (一)."""
    return _PINYIN_ANNOTATION.sub("", text)


def to_simplified(text: str) -> str:
    return _t2s().convert(text)


_HAN_CHAR = re.compile(f"[{_HAN}]")


def _is_cjk(ch: str) -> bool:
    return bool(ch) and (bool(_HAN_CHAR.match(ch)) or ch in _CJK_PUNCT)


def widen_punctuation(text: str) -> str:
    """ASCII punctuation inside Chinese text → the full-width form.

    A comma or colon between two digits (1,000 / 8:30) stays ASCII; a
    parenthesis pair is widened when its content or its surroundings are
    Chinese, so English text such as "Article 21 (foreign)" is untouched.
    """
    chars = list(text)
    n = len(chars)

    def prev(i: int) -> str:
        j = i - 1
        while j >= 0 and chars[j] == " ":
            j -= 1
        return chars[j] if j >= 0 else ""

    def nxt(i: int) -> str:
        j = i + 1
        while j < n and chars[j] == " ":
            j += 1
        return chars[j] if j < n else ""

    for i, ch in enumerate(chars):
        if ch in ",:;":
            if prev(i).isdigit() and nxt(i).isdigit():
                continue
            if _is_cjk(prev(i)) or _is_cjk(nxt(i).strip() or prev(i)):
                chars[i] = {",": "，", ":": "：", ";": "；"}[ch]
        elif ch in "?!" and _is_cjk(prev(i)):
            chars[i] = {"?": "？", "!": "！"}[ch]

    stack: list[int] = []
    for i, ch in enumerate(chars):
        if ch == "(":
            stack.append(i)
        elif ch == ")" and stack:
            j = stack.pop()
            inner = chars[j + 1 : i]
            if _is_cjk(prev(j)) or any(_is_cjk(c) for c in inner) or _is_cjk(nxt(i)):
                chars[j], chars[i] = "（", "）"
    return "".join(chars)


_SPACE_RUN = re.compile(r"[ \t\u00a0\u3000]+")
_SPACE_BETWEEN_CJK = re.compile(rf"(?<=[{_CJK_CONTEXT}]) +(?=[{_CJK_CONTEXT}])")


# The space after a leading 第X条 / 第X章 marks where the number ends and the
# text begins; it is what tells an article apart from a paragraph that
# merely starts by citing one ("第十条规定的……").
_NUMBERED_HEAD = re.compile(
    r"^(第[零〇一二三四五六七八九十百千两\d]+(?:条(?:之[一二三四五六七八九十]+)?|章|节|分编|编)) +"
)


def normalize_whitespace(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    text = text.replace("\u200b", "")
    lines = []
    for line in text.split("\n"):
        line = _SPACE_RUN.sub(" ", line).strip()
        head = ""
        if m := _NUMBERED_HEAD.match(line):
            head, line = m.group(1) + " ", line[m.end() :]
        lines.append(head + _SPACE_BETWEEN_CJK.sub("", line))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_SENTENCE_END = "。；：！？…”」）"


def join_broken_lines(text: str) -> str:
    """Join a line break that falls inside a sentence (PDF and DB artefacts)."""
    out_lines: list[str] = []
    for line in text.split("\n"):
        if (
            out_lines
            and out_lines[-1]
            and line
            and out_lines[-1][-1] not in _SENTENCE_END
            and _HAN_CHAR.match(out_lines[-1][-1])
            and _HAN_CHAR.match(line[0])
        ):
            out_lines[-1] += line
        else:
            out_lines.append(line)
    return "\n".join(out_lines)


_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def replace_lone_surrogates(text: str) -> str:
    """U+FFFD for lone surrogates (from JSON "\\ud800"): no codec can encode them."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def normalize_text(text: str) -> str:
    """The one normal form of corpus text and queries."""
    text = replace_lone_surrogates(text)
    text = strip_pinyin_annotations(text)
    text = safe_nfkc(text)
    text = to_simplified(text)
    text = widen_punctuation(text)
    # After widening, so that a space beside new full-width punctuation goes too.
    return normalize_whitespace(text)


def normalize_query(text: str) -> str:
    return normalize_text(text).replace("\n", " ")


def fold_for_match(text: str) -> str:
    """Folding for evidence matching: NFKC, t2s, ％→%, no whitespace or punctuation."""
    text = unicodedata.normalize("NFKC", replace_lone_surrogates(text)).replace("％", "%")
    text = to_simplified(text)
    # % carries meaning in figures such as 15%, so it survives the folding.
    return "".join(ch for ch in text if ch.isalnum() or ch == "%").lower()


_LATIN = re.compile(r"[A-Za-z]")


def detect_language(text: str) -> str:
    """'zh', 'en' or 'mixed' by the share of Han characters among letters."""
    han = len(_HAN_CHAR.findall(text))
    latin = len(_LATIN.findall(text))
    # Clause names like M0 or 5G inside a Chinese question stay 'zh'.
    if han and latin <= 3:
        return "zh"
    if not han:
        return "en"
    words = len(re.findall(r"[A-Za-z]{2,}", text))
    if han >= 4 and words <= 2:
        return "zh"
    return "mixed" if han >= 2 else "en"


def unusable_character(text: str) -> tuple[str, str]:
    """("", "") for text a question may hold; else what is wrong and what to do, for the
    first lone surrogate (no codec carries it) or control character (never part of a real
    question, and it would surface deep inside): what every entry point refuses."""
    for i, ch in enumerate(text):
        code = ord(ch)
        if 0xD800 <= code <= 0xDFFF:
            return (f"holds invalid Unicode (a lone surrogate U+{code:04X} at position {i})",
                    "send the text as valid UTF-8")
        if (code < 0x20 and ch not in "\t\n\r") or 0x7F <= code <= 0x9F:
            what = "a NUL character" if code == 0 else f"a control character U+{code:04X}"
            return f"holds {what} at position {i}", "remove control characters and send again"
    return "", ""
