"""The live index: the loaded build, switched under running requests when an ingest
activates another one (hot reload), and the health of the store behind it."""

from __future__ import annotations

import logging
import threading

from langchain_core.embeddings import Embeddings

from rag.index import store
from rag.models import Health
from rag.qa.loaded import LoadedIndex, load_index
from rag.settings import Settings

log = logging.getLogger(__name__)

# Queries score the vectors loaded in memory, so a Chroma outage does not touch answers;
# health says so, because ingest and a reload need the store.
STORE_UNREACHABLE = "the index store (Chroma) is unreachable; answers continue from the loaded index, ingest needs it"


class LiveIndex:
    """`current` is replaced whole by a reload; searches run under `lock`, so a switch waits
    for the search in progress and the next one sees the new build."""

    def __init__(self, settings: Settings, embedder: Embeddings | None = None) -> None:
        self.settings = settings
        self.lock = threading.RLock()
        self._embedder = embedder
        self.current: LoadedIndex = load_index(settings, embedder)

    def reload(self) -> None:
        with self.lock:
            self.current = load_index(self.settings, self._embedder)

    def reload_if_switched(self, check_registry: bool = False) -> bool:
        """Called under the lock; True when another build was loaded. A failed reload keeps
        the index in use answering."""
        marker = store.read_marker(self.settings.data_dir)
        # The marker (written right after the switch) is a cheap stat per question; the
        # registry is asked when the old build's collection was found gone.
        if not ((marker and marker != self.current.info.build)
                or (check_registry and self._registry_switched())):
            return False
        old = self.current.info.build
        try:
            self.current = load_index(self.settings, self._embedder)
        except Exception as exc:
            log.error("index %s is active but cannot be loaded (%s); still serving %s", marker, exc, old)
            return False
        log.warning("switched from index %s to %s", old, self.current.info.build)
        return True

    def _registry_switched(self) -> bool:
        """Does the store's registry name another build than the one loaded?"""
        try:
            active = store.active_info(self.current.client)
        except Exception:
            return False
        return active is not None and active.build != self.current.info.build

    def health(self, llm: bool) -> Health:
        problem = ""
        with self.lock:
            self.reload_if_switched()
            idx = self.current
        try:
            idx.collection.count()  # one cheap call: the store answers and the collection exists
        except Exception as exc:
            problem = f"{STORE_UNREACHABLE}: {type(exc).__name__}: {exc}"[:300]
        s, info = self.settings, idx.info
        return Health(
            status="degraded" if problem else "ok", problem=problem,
            index={"build": info.build, "documents": len(idx.docs), "chunks": len(idx.table.chunks),
                   "clauses": len(idx.table.clauses), "created": info.created, "normalizer": info.normalizer},
            embedder={"name": info.embedder, "dim": info.dim, "loaded": True},
            store="chroma-http" if s.chroma_url else "chroma-embedded",
            llm=llm, reranker=s.reranker or None, as_of=s.as_of_date)
