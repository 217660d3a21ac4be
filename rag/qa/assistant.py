"""The one entry point that the CLI, the UI, the API and the benchmark call: a façade over the
live index (load, hot reload, health, browsing), the searcher, and the answerer."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from rag.corpus.normalize import normalize_query
from rag.index.clauses import ClauseTable, Filters
from rag.index.store import IndexInfo
from rag.models import AddedFiles, AskResult, Chunk, Document, Health, ScoredChunk
from rag.qa.answerer import Answerer, Request
from rag.qa.live import LiveIndex
from rag.qa.loaded import DocumentSummary
from rag.qa.search import DEFAULT_RETRIEVERS, HybridSearcher
from rag.settings import Settings, from_env

__all__ = ["Assistant", "DocumentSummary", "Filters", "load_assistant"]


class Assistant:
    def __init__(self, settings: Settings) -> None:
        from rag.index.dense import limit_blas_threads

        self.settings = settings
        self.chat_model = None  # a LangChain chat model; tests put a fake one here
        limit_blas_threads()
        self.live = LiveIndex(settings)
        self.answerer = Answerer(settings, self.live, self._model)

    # ---- answering ------------------------------------------------------------

    def ask(self, question: str, **options: Any) -> AskResult:
        """`ask_stream`'s final result; the same options."""
        *_, result = self.ask_stream(question, **options)
        assert isinstance(result, AskResult)
        return result

    def ask_stream(self, question: str, *, history: list[dict[str, str]] | None = None,
                   k: int | None = None, mode: str | None = None, filters: Filters | None = None,
                   retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS,
                   rerank: bool | None = None) -> Iterator[str | AskResult]:
        """Yields answer text pieces as they are produced, then the final AskResult."""
        request = Request.of(question, history, k or self.settings.k, mode or self.settings.mode,
                             filters or Filters(), retrievers, self._reranker_for(rerank), self.llm_available)
        yield from self.answerer.stream(request)

    def search(self, query: str, *, k: int = 10, filters: Filters | None = None,
               retrievers: tuple[str, ...] = DEFAULT_RETRIEVERS, rerank: bool | None = None) -> list[ScoredChunk]:
        with self.live.lock:
            return self.searcher.search(normalize_query(query), k=k, filters=filters or Filters(),
                                        retrievers=retrievers, reranker=self._reranker_for(rerank))

    # ---- the corpus ---------------------------------------------------------------

    def documents(self) -> list[DocumentSummary]:
        return self.live.current.documents()

    def document_records(self) -> list[Document]:
        return list(self.live.current.docs)

    def clauses(self, doc_id: str) -> list[Chunk]:
        return self.live.current.clauses(doc_id)

    def find(self, label_or_id: str) -> list[Chunk]:
        """A clause by label (《工作方案》（十三）, 外商投资法第二十一条), a chunk id, or a doc_id."""
        return self.live.current.find(label_or_id)

    # ---- the index ------------------------------------------------------------------

    @property
    def searcher(self) -> HybridSearcher:
        return self.live.current.searcher

    @property
    def table(self) -> ClauseTable:
        return self.live.current.table

    @property
    def info(self) -> IndexInfo:
        return self.live.current.info

    @property
    def build(self) -> str:
        """The id of the index build answering now (kept with feedback)."""
        return self.info.build

    @property
    def embedder(self) -> Embeddings:
        return self.searcher.embedder

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    def health(self) -> Health:
        return self.live.health(llm=self.llm_available)

    def add_files(self, paths: list[str]) -> AddedFiles:
        from rag.index.ingest import ingest

        summary = ingest(self.settings, add_paths=paths, progress=False)  # questions go on meanwhile
        with self.live.lock:
            self.live.reload_if_switched(check_registry=True)
        return AddedFiles(lines=summary.lines(), added=summary.added, updated=summary.updated,
                          skipped=[{"path": s.path, "reason": s.reason} for s in summary.skipped])

    # ---- optional parts ---------------------------------------------------------------

    @property
    def llm_available(self) -> bool:
        return bool(self.settings.llm) or self.chat_model is not None

    @property
    def reranker_available(self) -> bool:
        """A reranker is configured (RAG_RERANKER); its model loads on first use."""
        return bool(self.settings.reranker)

    @functools.cached_property
    def reranker(self) -> Any:
        from rag.qa.rerank import CrossEncoderReranker

        return CrossEncoderReranker(self.settings.reranker)

    def _reranker_for(self, rerank: bool | None) -> Any:
        """None (rerank=None) reranks when a reranker is configured."""
        return self.reranker if self.reranker_available and rerank is not False else None

    def _model(self) -> Any:
        from rag.llm_client import build_chat_model

        return self.chat_model or build_chat_model(self.settings)


_assistants: dict[Settings, Assistant] = {}


def load_assistant(settings: Settings | None = None) -> Assistant:
    """One loaded assistant per settings object in this process."""
    settings = settings or from_env()
    if settings not in _assistants:
        _assistants[settings] = Assistant(settings)
    return _assistants[settings]
