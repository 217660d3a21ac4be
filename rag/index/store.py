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

from rag.errors import ConfigError, IndexMismatchError, IndexNotFoundError, RagError
from rag.index import faults
from rag.models import Chunk, Document

log = logging.getLogger(__name__)

REGISTRY = "rag_registry"
_BATCH = 1000
# Every call to a Chroma server gives up after this long (the embedded store has no network).
CHROMA_TIMEOUT_S = 10.0
ACTIVE_MARKER = "active-build"  # <data_dir>/active-build: the build id, rewritten at each switch


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
            client = chromadb.HttpClient(host=url.hostname, port=url.port,
                                         ssl=url.scheme == "https", settings=settings)
            _set_timeout(client, CHROMA_TIMEOUT_S)
            return client
        except Exception as exc:
            raise ConfigError(f"cannot reach the Chroma server at {chroma_url}: {exc}",
                              hint="start it with `chroma run --path DIR --port N` or unset RAG_CHROMA_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        return chromadb.PersistentClient(path=str(data_dir / "chroma"), settings=settings)
    except Exception as exc:  # a damaged or foreign chroma.sqlite3
        _forget_system(str(data_dir / "chroma"))
        raise DamagedIndexError(
            f"the index store {data_dir / 'chroma'} cannot be opened ({type(exc).__name__}: {str(exc)[:160]})",
            hint="rebuild it with `rag ingest --rebuild` (the damaged store is moved aside)") from exc


def _forget_system(path: str) -> None:
    # chromadb caches a system per path before starting it; a failed start stays cached
    # and would fail every later client of that path in this process.
    from chromadb.api.shared_system_client import SharedSystemClient

    for key in [k for k in SharedSystemClient._identifier_to_system if k == path or k.endswith(path)]:
        SharedSystemClient._identifier_to_system.pop(key, None)


class DamagedIndexError(RagError):
    """The store exists but cannot be read: a rebuild is the fix."""


def move_aside(data_dir: Path) -> Path:
    """Keep a damaged embedded store for inspection and make room for a fresh one."""
    target = data_dir / f"chroma.damaged-{time.strftime('%Y%m%d%H%M%S')}"
    (data_dir / "chroma").rename(target)
    return target


def _set_timeout(client, seconds: float) -> None:
    # chromadb's HTTP client waits forever (httpx timeout=None): a hung server would
    # hang every question with it.
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if isinstance(session, httpx.Client):
        session.timeout = httpx.Timeout(seconds, connect=min(seconds, 3.0))
    else:
        log.warning("cannot set a timeout on the Chroma client; calls may wait long")


def write_marker(data_dir: Path, build: str) -> None:
    """Tell running servers on this machine that another build is now active."""
    tmp = data_dir / (ACTIVE_MARKER + ".tmp")
    tmp.write_text(build, encoding="utf-8")
    tmp.replace(data_dir / ACTIVE_MARKER)


def read_marker(data_dir: Path) -> str:
    try:
        return (data_dir / ACTIVE_MARKER).read_text(encoding="utf-8").strip()
    except OSError:
        return ""


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
        faults.point("chroma")
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
    if not rows:  # no document has hooks: no collection
        return
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


def get_collection(client, name: str):
    """A collection the registry names; its absence means a damaged index, not a bug."""
    try:
        return client.get_collection(name)
    except Exception as exc:
        raise DamagedIndexError(
            f"the active index names collection {name}, which the store does not have "
            f"({type(exc).__name__}: {str(exc)[:120]})",
            hint="rebuild it with `rag ingest --rebuild`") from exc


def read_chunks(client, info: IndexInfo, with_vectors: bool = False) -> tuple[list[Chunk], dict[str, list[float]]]:
    col = get_collection(client, info.chunks_name)
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
    col = get_collection(client, info.docs_name)
    got = col.get(include=["documents", "metadatas"])
    docs = [Document(text=got["documents"][i], **got["metadatas"][i]) for i in range(len(got["ids"]))]
    return sorted(docs, key=lambda d: d.doc_id)
