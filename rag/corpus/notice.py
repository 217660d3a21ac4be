"""Rebuild the canonical text of the 2025-05-21 notice from the user's damaged seed.

The seed went through a simplified→traditional converter that appended
pinyin, made punctuation ASCII and garbled two spans (GBK/UTF-8 mojibake).
`normalize_text` undoes the systematic damage; the two garbled spans cannot be
decoded back, so they are replaced by the official wording (see
corpus/PROVENANCE.md). The raw spans are matched exactly so that a different
seed fails loudly instead of being silently "repaired".
"""

from __future__ import annotations

from rag.corpus.normalize import normalize_text
from rag.errors import CorpusError

NOTICE_METADATA = {
    "doc_id": "etdz-work-plan-2025",
    "title": "商务部关于印发《深化国家级经济技术开发区改革创新以高水平开放引领高质量发展工作方案》的通知",
    "short_title": "工作方案",
    "doc_type": "政策文件",
    "issuer": "商务部",
    "date": "2025-05-21",
    "status": "现行有效",
}

# raw span → official text, with the measure each repair lives in.
MOJIBAKE_REPAIRS: tuple[tuple[str, str, str], ...] = (
    ("（二）", "向?qū)I(yè)化", "向专业化"),
    ("（九）", "領域?qū)ν夂献鳌VС謬壹壗?jīng)開區(qū)", "領域对外合作。支持国家级经開區(qū)"),
)


def repair_seed(raw: str) -> str:
    for measure, broken, official in MOJIBAKE_REPAIRS:
        if raw.count(broken) != 1:
            raise CorpusError(
                f"the seed no longer contains the known damaged span of measure {measure}",
                hint="check the seed file against corpus/PROVENANCE.md before rebuilding",
            )
        raw = raw.replace(broken, official)
    return raw


def build_canonical_notice(raw: str) -> str:
    """Raw seed text → the normalised, repaired body (no front matter)."""
    return normalize_text(repair_seed(raw)) + "\n"


def front_matter(meta: dict[str, str]) -> str:
    lines = ["---"] + [f"{key}: {value}" for key, value in meta.items()] + ["---", ""]
    return "\n".join(lines)
