"""The Chroma index: an embedded PersistentClient by default, or a Chroma server.

Each build writes two fresh collections (`chunks_<build>`, `docs_<build>`)
and only then points the registry at them, so a killed ingest never touches
the index in use; collections of unfinished builds are removed next time.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, IndexMismatchError, IndexNotFoundError
from .models import Chunk, Document

log = logging.getLogger(__name__)

REGISTRY = "rag_registry"
_BATCH = 1000


@dataclass(frozen=True)
class IndexInfo:
    build: str
    embedder: str
    normalizer: str
    dim: int
    created: float
    documents: int
    chunks: int
    hooks: int = 0  # hook rows (question hooks) in hooks_<build>
    hooks_fingerprint: str = ""

    @property
    def chunks_name(self) -> str:
        return f"chunks_{self.build}"

    @property
    def hooks_name(self) -> str:
        return f"hooks_{self.build}"

    @property
    def docs_name(self) -> str:
        return f"docs_{self.build}"


def make_client(data_dir: Path, chroma_url: str = ""):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    if chroma_url:
        from urllib.parse import urlparse

        url = urlparse(chroma_url)
        if not url.hostname or not url.port:
            raise ConfigError(f"RAG_CHROMA_URL={chroma_url!r} is not http://host:port",
                              hint="e.g. RAG_CHROMA_URL=http://127.0.0.1:8000")
        try:
            return chromadb.HttpClient(host=url.hostname, port=url.port,
                                       ssl=url.scheme == "https", settings=settings)
        except Exception as exc:
            raise ConfigError(f"cannot reach the Chroma server at {chroma_url}: {exc}",
                              hint="start it with `chroma run --path DIR --port N` or unset RAG_CHROMA_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)


def _registry(client):
    return client.get_or_create_collection(REGISTRY, metadata={"active": ""})


def active_info(client) -> IndexInfo | None:
    meta = _registry(client).metadata or {}
    raw = meta.get("active") or ""
    return IndexInfo(**json.loads(raw)) if raw else None


def require_index(client, embedder: str, normalizer: str) -> IndexInfo:
    info = active_info(client)
    if info is None:
        raise IndexNotFoundError("no index has been built yet", hint="run `rag ingest` first")
    if info.embedder != embedder:
        raise IndexMismatchError(
            f"the index was built with embedder {info.embedder!r}, not {embedder!r}",
            hint=f"rebuild it with `rag ingest --rebuild` (RAG_EMBEDDER={embedder}) or set RAG_EMBEDDER={info.embedder}",
        )
    if info.normalizer != normalizer:
        raise IndexMismatchError(
            f"the index was built with normaliser version {info.normalizer}, this code uses {normalizer}",
            hint="rebuild it with `rag ingest --rebuild`",
        )
    return info


def new_build_id() -> str:
    return time.strftime("%Y%m%d%H%M%S") + "_" + uuid.uuid4().hex[:6]


def remove_leftovers(client) -> list[str]:
    """Delete collections of builds that never became active (a killed ingest)."""
    info = active_info(client)
    keep = {info.chunks_name, info.docs_name, info.hooks_name} if info else set()
    removed = []
    for col in client.list_collections():
        name = col if isinstance(col, str) else col.name
        if name.startswith(("chunks_", "docs_", "hooks_")) and name not in keep:
            client.delete_collection(name)
            removed.append(name)
    if removed:
        log.info("removed %d leftover collections from an unfinished build", len(removed))
    return removed


def write_build(client, build: str, docs: list[Document], chunks: list[Chunk],
                vectors: dict[str, list[float]], dim: int) -> None:
    chunk_col = client.create_collection(f"chunks_{build}", metadata={"hnsw:space": "cosine"})
    for i in range(0, len(chunks), _BATCH):
        batch = chunks[i : i + _BATCH]
        chunk_col.add(ids=[c.chunk_id for c in batch], documents=[c.text for c in batch],
                      metadatas=[c.metadata() for c in batch],
                      embeddings=[vectors[c.chunk_id] for c in batch])
    doc_col = client.create_collection(f"docs_{build}")
    # Document records need no search; a constant vector satisfies Chroma.
    unit = [1.0] + [0.0] * (dim - 1)
    for i in range(0, len(docs), 100):
        batch_docs = docs[i : i + 100]
        doc_col.add(ids=[d.doc_id for d in batch_docs], documents=[d.text for d in batch_docs],
                    metadatas=[_doc_meta(d) for d in batch_docs],
                    embeddings=[unit for _ in batch_docs])


def write_hooks(client, build: str, rows: list, vectors: list[list[float]]) -> None:
    """Question hooks in their own collection: they score their clause, never stand for it."""
    col = client.create_collection(f"hooks_{build}", metadata={"hnsw:space": "cosine"})
    for i in range(0, len(rows), _BATCH):
        batch = rows[i : i + _BATCH]
        col.add(ids=[hook_id(r) for r in batch], documents=[r.text for r in batch],
                metadatas=[{"doc_id": r.clause[0], "ordinal": r.clause[1], "kind": r.kind} for r in batch],
                embeddings=vectors[i : i + _BATCH])


def hook_id(row) -> str:
    import hashlib

    raw = f"{row.clause[0]}|{row.clause[1]}|{row.kind}|{row.text}"
    return hashlib.sha1(raw.encode("utf-8")).hexdigest()


def read_hook_vectors(client, info: IndexInfo) -> dict[str, list[float]]:
    """Stored hook vectors by hook id (for reuse at the next build)."""
    if not info.hooks:
        return {}
    try:
        col = client.get_collection(info.hooks_name)
    except Exception:  # an index built before hooks existed
        return {}
    out: dict[str, list[float]] = {}
    for offset in range(0, col.count(), 5000):
        got = col.get(include=["embeddings"], limit=5000, offset=offset)
        out.update({cid: list(v) for cid, v in zip(got["ids"], got["embeddings"], strict=True)})
    return out


def read_hook_rows(client, info: IndexInfo) -> tuple[list[tuple[tuple[str, int], str, str]], list[list[float]]]:
    """(clause key, kind, text) rows and their vectors, for a machine without the derived files."""
    if not info.hooks:
        return [], []
    col = client.get_collection(info.hooks_name)
    rows, vecs = [], []
    for offset in range(0, col.count(), 5000):
        got = col.get(include=["documents", "metadatas", "embeddings"], limit=5000, offset=offset)
        for j in range(len(got["ids"])):
            m = got["metadatas"][j]
            rows.append(((str(m["doc_id"]), int(m["ordinal"])), str(m["kind"]), got["documents"][j]))
            vecs.append(list(got["embeddings"][j]))
    return rows, vecs


def activate(client, info: IndexInfo) -> None:
    """The switch: one metadata write makes the new build the index in use."""
    previous = active_info(client)
    _registry(client).modify(metadata={"active": json.dumps(asdict(info))})
    if previous and previous.build != info.build:
        for name in (previous.chunks_name, previous.docs_name, previous.hooks_name):
            try:
                client.delete_collection(name)
            except Exception:  # already gone: nothing to clean
                log.debug("collection %s already removed", name)


def _doc_meta(d: Document) -> dict[str, Any]:
    data = asdict(d)
    data.pop("text")
    return data


def read_chunks(client, info: IndexInfo, with_vectors: bool = False) -> tuple[list[Chunk], dict[str, list[float]]]:
    col = client.get_collection(info.chunks_name)
    include = ["documents", "metadatas"] + (["embeddings"] if with_vectors else [])
    chunks: list[Chunk] = []
    vectors: dict[str, list[float]] = {}
    total = col.count()
    for offset in range(0, total, 2000):
        got = col.get(include=include, limit=2000, offset=offset)
        for j, cid in enumerate(got["ids"]):
            chunks.append(Chunk.from_metadata(cid, got["documents"][j], got["metadatas"][j]))
            if with_vectors:
                vectors[cid] = list(got["embeddings"][j])
    chunks.sort(key=lambda c: (c.doc_id, c.ordinal, c.part))
    return chunks, vectors


def read_documents(client, info: IndexInfo) -> list[Document]:
    col = client.get_collection(info.docs_name)
    got = col.get(include=["documents", "metadatas"])
    docs = [Document(text=got["documents"][i], **got["metadatas"][i]) for i in range(len(got["ids"]))]
    return sorted(docs, key=lambda d: d.doc_id)


def dense_query(col, vector: list[float], n: int,
                where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
    """(chunk_id, cosine similarity) best first, from a chunks collection."""
    res = col.query(query_embeddings=[vector], n_results=n, where=where or None, include=["distances"])
    return [(cid, 1.0 - float(dist)) for cid, dist in zip(res["ids"][0], res["distances"][0], strict=True)]
