"""Optional cross-encoder reranking (sentence-transformers), off by default."""

from __future__ import annotations

import logging

from rag.errors import ConfigError, MissingExtraError

log = logging.getLogger(__name__)


class CrossEncoderReranker:
    """Scores (question, clause) pairs with a CrossEncoder, e.g. BAAI/bge-reranker-v2-m3 online."""

    def __init__(self, model: str) -> None:
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise MissingExtraError("reranking", "st", "sentence-transformers, torch") from exc
        try:
            self._model = CrossEncoder(model, device="cpu", max_length=512)
        except Exception as exc:  # hub errors come in many types; all mean "cannot load here"
            raise ConfigError(f"cannot load the reranker {model!r}: {exc}",
                              hint="give a local CrossEncoder path or unset RAG_RERANKER") from exc
        self.name = model

    def score(self, query: str, texts: list[str]) -> list[float]:
        if not texts:
            return []
        return [float(s) for s in self._model.predict([(query, t) for t in texts], batch_size=16)]
