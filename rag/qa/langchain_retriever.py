"""LangChain view of the hybrid search, for chains that want a BaseRetriever.

Kept apart from rag.qa.search so that answering does not import LangChain's
retriever machinery (over a second of start-up)."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever

from rag.corpus.normalize import normalize_query
from rag.index.clauses import Filters


class ClauseRetriever(BaseRetriever):
    """LangChain view of the hybrid search, for chains that want a BaseRetriever."""

    searcher: Any
    k: int = 5
    filters: Filters = Filters()

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        results = self.searcher.search(normalize_query(query), k=self.k, filters=self.filters)
        return [LCDocument(page_content=r.chunk.text, metadata={**r.chunk.metadata(), "fused": r.fused})
                for r in results]
