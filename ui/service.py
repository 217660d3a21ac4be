"""What the web app needs of an assistant: the real one (rag.qa.assistant.Assistant) and the
in-memory demo (ui/demo.py) both provide it; mypy checks both against this Protocol."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from rag.index.clauses import Filters
from rag.models import AddedFiles, AskResult, Chunk, Health, ScoredChunk
from rag.qa.loaded import DocumentSummary


class AssistantService(Protocol):
    @property
    def llm_available(self) -> bool: ...

    @property
    def build(self) -> str:
        """The index build answering now."""
        ...

    @property
    def data_dir(self) -> Path | None:
        """Where uploads are kept (<data_dir>/uploads); None: nothing is written."""
        ...

    def ask(self, question: str, *, history: list[dict[str, str]] | None = ..., k: int | None = ...,
            mode: str | None = ..., filters: Filters | None = ..., retrievers: tuple[str, ...] = ...,
            rerank: bool | None = ...) -> AskResult: ...

    def ask_stream(self, question: str, *, history: list[dict[str, str]] | None = ..., k: int | None = ...,
                   mode: str | None = ..., filters: Filters | None = ..., retrievers: tuple[str, ...] = ...,
                   rerank: bool | None = ...) -> Iterator[str | AskResult]: ...

    def search(self, query: str, *, k: int = ..., filters: Filters | None = ...,
               retrievers: tuple[str, ...] = ..., rerank: bool | None = ...) -> list[ScoredChunk]: ...

    def documents(self) -> list[DocumentSummary]: ...

    def clauses(self, doc_id: str) -> list[Chunk]: ...

    def find(self, label_or_id: str) -> list[Chunk]: ...

    def health(self) -> Health: ...

    def add_files(self, paths: list[str]) -> AddedFiles: ...
