"""The learned ranking stage: a linear model over the candidate features (rag/qa/features.py),
trained as a conditional logit (softmax over a query's candidates) by `make ranker`
(rag/bench/train_ranker.py) and shipped as rag/data/ranker.json. Scoring is pure."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.qa.features import FEATURE_NAMES
from rag.settings import PACKAGE_ROOT

log = logging.getLogger(__name__)

MODEL_PATH = PACKAGE_ROOT / "data" / "ranker.json"
POOL = 30  # the fused top candidates the model reorders


@dataclass(frozen=True)
class LinearRanker:
    names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    embedder: str = "e5-small"  # the dense scores it learned from: another embedder's differ

    def score(self, x: np.ndarray) -> np.ndarray:
        """One score per row of a feature matrix (higher first); a query's softmax over them is
        the model's probability that the row is the answer."""
        return ((x - self.mean) / self.scale) @ self.weights

    def to_json(self, **about: object) -> str:
        return json.dumps({"features": list(self.names), "embedder": self.embedder,
                           "mean": self.mean.round(6).tolist(),
                           "scale": self.scale.round(6).tolist(), "weights": self.weights.round(6).tolist(),
                           **about}, ensure_ascii=False, indent=1)


def ranker_from_json(text: str) -> LinearRanker:
    data = json.loads(text)
    if tuple(data["features"]) != FEATURE_NAMES:
        raise ValueError("the ranker model was trained on other features: run `make ranker`")
    return LinearRanker(tuple(data["features"]), np.asarray(data["mean"]), np.asarray(data["scale"]),
                        np.asarray(data["weights"]), data.get("embedder", "e5-small"))


@lru_cache(maxsize=4)
def load_ranker(embedder: str, path: Path = MODEL_PATH) -> LinearRanker | None:
    """The shipped model when it was trained with this embedder; else None, and fusion alone
    orders the candidates."""
    model = ranker_from_json(path.read_text(encoding="utf-8")) if path.exists() else None
    if model is not None and model.embedder != embedder:
        log.info("the learned ranking stage was trained with %s, not %s: fusion alone ranks",
                 model.embedder, embedder)
        return None
    return model


def softmax(scores: np.ndarray) -> np.ndarray:
    e = np.exp(scores - scores.max())
    return e / e.sum()
