"""The one entry point that the CLI, the UI, the API and the benchmark call.

(Interface first; the lead engineer is filling in the bodies.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langchain_core.embeddings import Embeddings

from .models import AskResult, Chunk, Document, ScoredChunk


@dataclass(frozen=True)
class DocumentSummary:
    doc_id: str
    title: str
    short_title: str
    doc_type: str
    issuer: str
    date: str
    status: str
    chunk_count: int
    clause_count: int
    english_title: str = ""
    effective_date: str = ""


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()  # empty: all documents
    doc_types: tuple[str, ...] = ()  # empty: all types
    in_force_only: bool = True  # the notice and other 现行有效 documents only

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Filters:
        ...


class Assistant:
    """Holds the loaded index (Chroma + lexical) and the embedder."""

    def ask(
        self,
        question: str,
        *,
        history: list[dict[str, str]] | None = None,  # [{"role": "user"|"assistant", "content": ...}]
        k: int = 5,
        mode: str = "extractive",  # or "llm" when configured
        filters: Filters | None = None,
        retrievers: tuple[str, ...] = ("bm25", "dense"),  # ("bm25",) / ("dense",) for ablations
        rerank: bool | None = None,  # None: as configured
    ) -> AskResult: ...

    def ask_stream(self, question: str, **kwargs: Any):  # yields str pieces, then the AskResult
        ...

    def search(
        self, query: str, *, k: int = 10, filters: Filters | None = None,
        retrievers: tuple[str, ...] = ("bm25", "dense"),
    ) -> list[ScoredChunk]: ...

    def documents(self) -> list[DocumentSummary]: ...

    def document_records(self) -> list[Document]: ...  # full normalised texts, for baselines

    @property
    def embedder(self) -> Embeddings: ...  # embed_documents / embed_query, cached by content hash

    @property
    def reranker_available(self) -> bool: ...

    def clauses(self, doc_id: str) -> list[Chunk]: ...  # document order

    def find(self, label_or_id: str) -> list[Chunk]: ...  # 《工作方案》（十三）, 外商投资法第二十一条, chunk id

    def health(self) -> dict[str, Any]: ...

    @property
    def llm_available(self) -> bool: ...


def load_assistant(settings: Any = None) -> Assistant: ...
