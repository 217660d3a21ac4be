"""Ingestion: sources → normalised documents → clauses → chunks → embeddings → Chroma.

Incremental by content hash: unchanged chunks reuse their stored vectors (or
the embedding cache), so an unchanged re-ingest embeds nothing and writes
nothing; any change builds a new collection aside and then switches to it.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rag.corpus import hooks, laws
from rag.corpus.chunk import chunk_document, embedding_text
from rag.corpus.corruption import Suspect, detect_corruption
from rag.corpus.loaders import LoadedFile, Skipped, load_files
from rag.corpus.normalize import NORMALIZER_VERSION, normalize_text
from rag.corpus.parse import parse_document
from rag.corpus.titles import english_law_titles
from rag.errors import CorpusError
from rag.index import faults, lexical, store
from rag.index import vectors as shipped
from rag.index.clauses import ClauseTable
from rag.index.dense import DenseIndex
from rag.index.embed import EmbeddingCache, get_embedder
from rag.index.embed_pool import embed_texts
from rag.models import IN_FORCE, Chunk, Clause, Document
from rag.settings import Settings

log = logging.getLogger(__name__)
SOURCES_FILE = "sources.json"


@dataclass
class IngestSummary:
    documents: int = 0
    clauses: int = 0
    chunks: int = 0
    embedded: int = 0
    reused: int = 0
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    hooks: int = 0
    hooks_embedded: int = 0
    changed: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"warning: {w}" for w in self.warnings]
        out += [f"skipped {s.path}: {s.reason}" for s in self.skipped]
        state = "index rebuilt" if self.changed else "index up to date, nothing embedded"
        out.append(
            f"{state}: {self.documents} documents, {self.clauses} clauses, {self.chunks} chunks "
            f"({self.embedded} embedded, {self.reused} reused), {self.hooks} question hooks "
            f"({self.hooks_embedded} embedded), {len(self.warnings)} warnings, "
            f"{len(self.skipped)} skipped, {self.seconds:.1f} s"
        )
        if self.added or self.updated or self.removed:
            out.append(f"documents added {len(self.added)}, updated {len(self.updated)}, "
                       f"removed {len(self.removed)}")
        return out


# ---- sources ---------------------------------------------------------------

def remembered_sources(data_dir: Path) -> list[str]:
    path = data_dir / SOURCES_FILE
    if not path.exists():
        return []
    try:
        return list(json.loads(path.read_text(encoding="utf-8")).get("paths", []))
    except (OSError, ValueError):
        log.warning("%s is unreadable; user-added sources must be given again", path)
        return []


def remember_sources(data_dir: Path, paths: list[str]) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / SOURCES_FILE).write_text(json.dumps({"paths": paths}, ensure_ascii=False, indent=1),
                                         encoding="utf-8")


_DOC_TYPE_BY_SUFFIX = (("条例", "行政法规"), ("法", "法律"), ("办法", "部门规章"), ("规定", "部门规章"),
                       ("通知", "政策文件"), ("方案", "政策文件"), ("意见", "政策文件"))


_NATIONAL = ("中华人民共和国", "国务院", "全国", "国家")
_LOCAL_PREFIX = re.compile(r"^(?:北京|上海|天津|重庆|[\u4e00-\u9fff]{2,3}(?:省|市|自治区))")
_NOT_PLACES = {"城镇", "城市", "农村", "中国", "中华"}


def _starts_with_place(title: str) -> bool:
    from rag.corpus.places import posseg  # jieba's place tags (ns), loaded once

    if title.startswith(_NATIONAL):
        return False
    if _LOCAL_PREFIX.match(title):
        return True
    first = next(iter(posseg().cut(title)), None)
    return first is not None and first.flag == "ns" and len(first.word) >= 2 and first.word not in _NOT_PLACES


def guess_doc_type(title: str) -> str:
    for suffix, kind in _DOC_TYPE_BY_SUFFIX:
        if title.endswith(suffix):
            # 北京经济技术开发区条例, 山东省经济开发区条例: a province's or city's regulation.
            if kind == "行政法规" and _starts_with_place(title):
                return "地方性法规"
            return kind
    return "其他"


def slug(title: str, date: str) -> str:
    base = re.sub(r"[\s《》〈〉（）()【】/\\:：,，。]+", "", laws.short_title(title))[:40] or "doc"
    return f"{base}@{date}" if date else base


def document_from_file(f: LoadedFile, english: dict[str, str]) -> tuple[Document, list[Suspect]]:
    suspects = detect_corruption(f.text, f.path)
    title = normalize_text(f.title).replace("\n", " ")
    text = normalize_text(f.text)
    if not text.startswith(title):
        text = f"{title}\n{text}"  # keeps the title searchable and offsets consistent
    short = f.short_title or laws.short_title(title)
    return Document(
        doc_id=f.doc_id or slug(title, f.date), title=title, short_title=short,
        doc_type=f.doc_type or guess_doc_type(title), issuer=f.issuer, date=f.date,
        status=f.status or IN_FORCE, text=text, source=f.path,
        effective_date=f.effective_date, english_title=f.english_title or english.get(title, ""),
    ), suspects


def gather_documents(settings: Settings, extra_paths: list[str]) -> tuple[list[Document], list[str], list[Skipped]]:
    english = english_law_titles()
    docs: list[Document] = []
    warnings: list[str] = []
    paths = [str(settings.documents_dir)] + extra_paths
    loaded, skipped = load_files(paths)
    for f in loaded:
        doc, suspects = document_from_file(f, english)
        warnings += [str(s) for s in suspects]
        docs.append(doc)
    docs += laws.load_laws(laws.load_manifest(settings.laws_manifest), english, as_of=settings.as_of_date)
    seen: dict[str, Document] = {}
    for doc in docs:
        if doc.doc_id in seen:
            warnings.append(f"{doc.source}: doc_id {doc.doc_id!r} already used by "
                            f"{seen[doc.doc_id].source}; the later one is skipped")
            continue
        seen[doc.doc_id] = doc
    return list(seen.values()), warnings, skipped


def build_chunks(docs: list[Document], cap: int) -> tuple[list[Chunk], int, list[str]]:
    chunks: list[Chunk] = []
    clauses_total = 0
    warnings = []
    for doc in docs:
        clauses = parse_document(doc.text)
        if not clauses:
            warnings.append(f"{doc.source}: no clauses found; the document is indexed as one block")
            clauses = [Clause(key="全文", kind="paragraph", section_path=("全文",), start=0,
                              end=len(doc.text))]
        clauses_total += len(clauses)
        chunks += chunk_document(doc, clauses, cap)
    return chunks, clauses_total, warnings


# ---- the run ---------------------------------------------------------------

@contextmanager
def ingest_lock(data_dir: Path) -> Iterator[None]:
    """One ingest per data directory: a second one would delete the first one's build
    as a leftover."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / "ingest.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise CorpusError(f"another ingest is running on {data_dir}",
                              hint="wait for it to finish, then run rag ingest again") from exc
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ingest(settings: Settings, add_paths: list[str] | None = None, rebuild: bool = False,
           progress: bool = True) -> IngestSummary:
    try:
        with ingest_lock(settings.data_dir):
            return _ingest(settings, add_paths, rebuild, progress)
    except PermissionError as exc:
        raise CorpusError(f"cannot write {exc.filename or settings.data_dir}: permission denied",
                          hint=f"give this user write access to {settings.data_dir.resolve()} "
                               "or set RAG_DATA_DIR to a writable folder; the index in use is unchanged") from exc


def _ingest(settings: Settings, add_paths: list[str] | None, rebuild: bool,
            progress: bool) -> IngestSummary:
    started = time.perf_counter()
    summary = IngestSummary()
    sources, docs, chunks = _read_sources(settings, add_paths, summary)
    client = _open_store(settings, rebuild, summary)
    get_embedder(settings.embedder)  # an unknown embedder fails before any work
    current, old_chunks, old_docs = _previous_build(client, settings, rebuild, summary)
    new_ids = {c.chunk_id for c in chunks}
    old_ids = {c.chunk_id for c in old_chunks}
    new_docs = {d.doc_id: d for d in docs}
    summary.added = sorted(set(new_docs) - set(old_docs))
    summary.removed = sorted(set(old_docs) - set(new_docs))
    summary.updated = sorted(d for d in set(new_docs) & set(old_docs)
                             if new_docs[d].content_hash != old_docs[d].content_hash)
    match = match_hooks(settings, chunks)
    summary.warnings += [f"{e.source}: stale question hooks for {e.label} (the clause text changed); "
                         "rewrite them or run `rag enrich`" for e in match.stale]
    rows = hooks.hook_rows(match)
    fingerprint = hooks_fingerprint(rows)
    summary.hooks = len(rows)
    if (current is not None and not rebuild and new_ids == old_ids and not summary.updated
            and current.hooks_fingerprint == fingerprint):
        remember_sources(settings.data_dir, sources)
        summary.reused = len(chunks)
        summary.seconds = time.perf_counter() - started
        return summary
    info = _write_build(client, current, settings, docs, chunks, old_ids, (match, rows, fingerprint), summary,
                        progress)
    faults.point("switch")
    store.activate(client, info)
    store.write_marker(settings.data_dir, info.build)
    lexical.remove_other_builds(settings.data_dir / "lexical", keep=info.build)
    remember_sources(settings.data_dir, sources)
    summary.changed = True
    summary.seconds = time.perf_counter() - started
    return summary


def _read_sources(settings: Settings, add_paths: list[str] | None,
                  summary: IngestSummary) -> tuple[list[str], list[Document], list[Chunk]]:
    """(the sources to remember, their documents, the chunks): a bad file is skipped with its reason."""
    sources = remembered_sources(settings.data_dir)
    for p in add_paths or []:
        resolved = str(Path(p).resolve())
        if not Path(resolved).exists():
            summary.skipped.append(Skipped(p, "no such file or folder — check the path"))
            continue
        if resolved not in sources:
            sources.append(resolved)
    docs, warnings, skipped = gather_documents(settings, sources)
    summary.warnings += warnings
    summary.skipped += skipped
    chunks, summary.clauses, chunk_warnings = build_chunks(docs, settings.token_cap)
    summary.warnings += chunk_warnings
    summary.documents, summary.chunks = len(docs), len(chunks)
    if not chunks:
        raise CorpusError("nothing to index", hint="check corpus/ and the paths given to rag ingest")
    return sources, docs, chunks


def _open_store(settings: Settings, rebuild: bool, summary: IngestSummary):
    try:
        client = store.make_client(settings.data_dir, settings.chroma_url)
    except store.DamagedIndexError:
        if not rebuild or settings.chroma_url:
            raise
        aside = store.move_aside(settings.data_dir)
        summary.warnings.append(f"the damaged index store was moved to {aside}; building a new one")
        client = store.make_client(settings.data_dir, settings.chroma_url)
    store.remove_leftovers(client)
    return client


def _previous_build(client, settings: Settings, rebuild: bool, summary: IngestSummary
                    ) -> tuple[store.IndexInfo | None, list[Chunk], dict[str, Document]]:
    """The active build when this one can reuse it (same embedder and normaliser), its chunks
    and documents; (None, [], {}) otherwise."""
    current = store.active_info(client)
    if current is None or current.embedder != settings.embedder or current.normalizer != NORMALIZER_VERSION:
        return None, [], {}
    try:
        old_chunks, _ = store.read_chunks(client, current)
        return current, old_chunks, {d.doc_id: d for d in store.read_documents(client, current)}
    except store.DamagedIndexError as exc:
        if not rebuild:
            raise
        # Nothing of the damaged build is reused; vectors come from the cache.
        summary.warnings.append(f"the index in use is damaged ({exc.message}); building a new one")
        return None, [], {}


def _write_build(client, current: store.IndexInfo | None, settings: Settings, docs: list[Document],
                 chunks: list[Chunk], old_ids: set[str],
                 hook_data: tuple[hooks.HookMatch, list[hooks.HookRow], str],
                 summary: IngestSummary, progress: bool) -> store.IndexInfo:
    """A new build beside the active one (not yet active): store, lexical and dense files.
    `hook_data`: the hooks matched to the chunks, their rows and the rows' fingerprint."""
    match, rows, fingerprint = hook_data
    try:
        vectors = _vectors_for(chunks, client, current, old_ids, settings, summary, progress)
        hook_vectors = _hook_vectors(rows, client, current, settings, summary, progress)
        dim = len(next(iter(vectors.values())))
        build = store.new_build_id()
        store.write_build(client, build, docs, chunks, vectors, dim)
        store.write_hooks(client, build, rows, hook_vectors)
        folder = settings.data_dir / "lexical" / build
        lexical.build_and_save(chunks, folder)
        save_hook_lexical(match, folder)
        DenseIndex.build([c.chunk_id for c in chunks], [vectors[c.chunk_id] for c in chunks], dim,
                         [r.clause for r in rows], [r.kind for r in rows], hook_vectors).save(folder)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        _discard_partial_build(client)
        raise CorpusError(
            f"the disk is full while writing the new index ({exc})",
            hint=f"free space on the disk of {settings.data_dir.resolve()} and of {settings.cache_dir} "
                 "(about 3x the size of the data dir), then run rag ingest again; "
                 "the index in use is unchanged") from exc
    return store.IndexInfo(build=build, embedder=settings.embedder, normalizer=NORMALIZER_VERSION,
                           dim=dim, created=time.time(), documents=len(docs), chunks=len(chunks),
                           hooks=len(rows), hooks_fingerprint=fingerprint)


def hook_folders(settings: Settings) -> list[Path]:
    """Bundled hooks, then hooks written by `rag enrich` for user documents."""
    return [settings.corpus_dir / "hooks", settings.data_dir / "hooks"]


def match_hooks(settings: Settings, chunks: list[Chunk], table: ClauseTable | None = None) -> hooks.HookMatch:
    entries, problems = hooks.read_entries(hook_folders(settings))
    for p in problems:
        log.warning("question hooks skipped: %s", p)
    return hooks.match_entries(entries, (table or ClauseTable(chunks)).clauses)


def hooks_fingerprint(rows: list[hooks.HookRow]) -> str:
    digest = hashlib.sha1()
    for r in rows:
        digest.update(f"{r.clause[0]}|{r.clause[1]}|{r.kind}|{r.text}\n".encode())
    return digest.hexdigest()


def save_hook_lexical(match: hooks.HookMatch, folder: Path) -> None:
    if not match.by_clause:  # no document has hooks: nothing to index
        return
    index = lexical.build_hook_field({k: hooks.lexical_document(e) for k, e in match.by_clause.items()})
    lexical.build_and_save([], folder / "hooks", index=index)


def _hook_vectors(rows: list[hooks.HookRow], client, current, settings: Settings,
                  summary: IngestSummary, progress: bool) -> list[list[float]]:
    """Stored vectors of the active build, then shipped, cached or embedded (questions as
    queries: their keys carry the query marker the embedding pool honours)."""
    stored = store.read_hook_vectors(client, current) if current is not None else {}
    keys = [hooks.vector_key(r.kind, r.text) for r in rows]
    found: dict[str, list[float]] = {}
    for r, key in zip(rows, keys, strict=True):
        if (v := stored.get(store.hook_id(r))) is not None:
            found[key] = v
    rest, summary.hooks_embedded = vectors_for_texts([k for k in keys if k not in found], settings, progress,
                                                      desc="embedding question hooks")
    found.update(rest)
    return [found[k] for k in keys]


def is_disk_full(exc: BaseException) -> bool:
    """ENOSPC from Python, or the same condition reported by SQLite/Chroma as text."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        text = str(exc).lower()
        if "no space left" in text or "disk is full" in text or "database or disk is full" in text:
            return True
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return False


def _discard_partial_build(client) -> None:
    try:
        store.remove_leftovers(client)
    except Exception as exc:  # the disk may still be full: the next ingest cleans up
        log.warning("could not remove the unfinished build yet: %s", exc)


def _vectors_for(chunks: list[Chunk], client, current, old_ids: set[str], settings: Settings,
                 summary: IngestSummary, progress: bool) -> dict[str, list[float]]:
    """Each chunk's vector from, in order: the index in use, the shipped vectors, the
    embedding cache; only the rest is embedded."""
    vectors: dict[str, list[float]] = {}
    if current is not None:
        reusable = [c.chunk_id for c in chunks if c.chunk_id in old_ids]
        if reusable:
            _, stored = store.read_chunks(client, current, with_vectors=True)
            vectors.update({cid: stored[cid] for cid in reusable if cid in stored})
    texts = {c.chunk_id: embedding_text(c) for c in chunks if c.chunk_id not in vectors}
    by_text, summary.embedded = vectors_for_texts(list(texts.values()), settings, progress)
    vectors.update({cid: by_text[text] for cid, text in texts.items()})
    summary.reused = len(chunks) - summary.embedded
    return vectors


def vectors_for_texts(texts: list[str], settings: Settings, progress: bool,
                      desc: str = "embedding") -> tuple[dict[str, list[float]], int]:
    """Vectors of `texts` (shipped, else cached, else embedded in worker processes and
    cached as they arrive) and how many were embedded."""
    unique = list(dict.fromkeys(texts))
    found = shipped.lookup(unique, settings.embedder, settings.vectors_dir)
    cache = EmbeddingCache(settings.cache_dir / "embeddings.sqlite", settings.embedder)
    try:
        rest = [t for t in unique if t not in found]
        found.update(cache.get_many(rest))
        missing = [t for t in rest if t not in found]

        def keep(pairs: list[tuple[str, list[float]]]) -> None:
            cache.put_many(pairs)
            faults.point("embedding")  # tests kill an ingest here (RAG_FAULT_KILL_AT)

        embedded = embed_texts(missing, settings.embedder, settings.embed_workers,
                               on_batch=keep, progress=progress, desc=desc)
        found.update(zip(missing, embedded, strict=True))
    finally:
        cache.close()
    return found, len(missing)


def export_bundled_vectors(settings: Settings, progress: bool = True) -> shipped.ExportSummary:
    """`rag vectors export`: shipped vectors for every chunk of the bundled corpus (the
    documents folder and the laws manifest; no user-added sources), one file per document."""
    docs, _, _ = gather_documents(settings, [])
    chunks, _, _ = build_chunks(docs, settings.token_cap)
    groups: dict[str, list[str]] = {}
    for c in chunks:
        groups.setdefault(c.doc_id, []).append(embedding_text(c))
    # The question hooks ship with their clause's document (the export prunes every file
    # of a group it was not given).
    for row in hooks.hook_rows(match_hooks(settings, chunks)):
        groups[row.clause[0]].append(hooks.vector_key(row.kind, row.text))
    all_texts = [t for texts in groups.values() for t in texts]
    by_text, _ = vectors_for_texts(all_texts, settings, progress)
    return shipped.export(groups, settings.embedder, settings.vectors_dir, by_text, prune=True)
