"""One index build, fully loaded: its clauses, the searcher over them, the data written about
them (hooks, gists, links, versions), and the corpus browsing that reads them. A reload builds a
new one and swaps it whole, so a request always sees one consistent build."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from rag.corpus.aliases import chinese_aliases, english_aliases
from rag.corpus.hooks import HookMatch, lexical_document
from rag.corpus.laws import short_title
from rag.corpus.lexicon import glossary_words
from rag.corpus.links import ClauseText, LinkGraph, build_links
from rag.corpus.normalize import NORMALIZER_VERSION, normalize_query
from rag.corpus.titles import english_law_titles
from rag.index import lexical, store
from rag.index.clauses import ClauseTable
from rag.index.dense import DenseIndex
from rag.index.embed import get_embedder
from rag.index.ingest import match_hooks, save_hook_lexical
from rag.models import IN_FORCE, NOT_YET_IN_FORCE, Chunk, Document
from rag.qa.ranker import load_ranker
from rag.qa.search import HybridSearcher
from rag.settings import Settings

log = logging.getLogger(__name__)


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
    hooked_clauses: int = 0  # clauses with question hooks
    part_count: int = 0  # 一、二、… headings of a policy document
    measure_count: int = 0  # （一）…（十六）


@dataclass
class LoadedIndex:
    client: Any
    collection: Any  # the build's chunks collection: health asks it for a count
    info: store.IndexInfo
    docs: list[Document]
    table: ClauseTable
    searcher: HybridSearcher
    hook_match: HookMatch
    links: LinkGraph
    coming: dict[str, Document]  # short title in force → its adopted, not yet in force version
    corpus_text: str = field(repr=False)
    english_words: set[str] = field(repr=False)  # English words the corpus knows (scope checks)

    # ---- what answers show beside a clause ------------------------------------

    def gist(self, chunk: Chunk) -> str:
        """The clause's unofficial English gist ("" when it has none)."""
        entry = self.hook_match.by_clause.get((chunk.doc_id, chunk.ordinal))
        return entry.gist_en if entry else ""

    def see_also(self, chunk: Chunk) -> list[str]:
        """Labels of the clauses linked to this one (rag/corpus/links.py)."""
        keys = [self.table.by_label.get(k) for k in self.links.see_also((chunk.short_title, chunk.clause_key))]
        return [self.table.clauses[k].label for k in keys if k is not None]

    def other_version(self, chunk: Chunk) -> dict[str, str] | None:
        """The same clause in a version adopted but not yet in force, if the corpus has one."""
        doc = self.coming.get(chunk.short_title)
        if doc is None:
            return None
        key = self.table.by_label.get((doc.short_title, chunk.clause_key))
        label = self.table.clauses[key].label if key else f"《{doc.short_title}》"
        return {"label": label, "status": doc.status, "effective_date": doc.effective_date, "date": doc.date}

    # ---- browsing ---------------------------------------------------------------

    def hook_coverage(self) -> dict[str, tuple[int, int]]:
        """doc_id → (clauses with question hooks, clauses)."""
        return self.hook_match.coverage(self.table.clauses)

    def documents(self) -> list[DocumentSummary]:
        counts: dict[str, int] = {}
        for c in self.table.chunks:
            counts[c.doc_id] = counts.get(c.doc_id, 0) + 1
        clause_counts: dict[str, int] = {}
        measures: dict[str, int] = {}
        parts: dict[str, set[str]] = {}
        for (doc_id, _), c in self.table.clauses.items():
            clause_counts[doc_id] = clause_counts.get(doc_id, 0) + 1
            if c.kind == "measure":
                measures[doc_id] = measures.get(doc_id, 0) + 1
            if c.kind in ("part", "measure") and "、" in c.section_path.split(" > ")[0]:
                parts.setdefault(doc_id, set()).add(c.section_path.split(" > ")[0])
        hooked = self.hook_coverage()
        docs = [DocumentSummary(d.doc_id, d.title, d.short_title, d.doc_type, d.issuer, d.date, d.status,
                                counts.get(d.doc_id, 0), clause_counts.get(d.doc_id, 0),
                                d.english_title, d.effective_date, hooked.get(d.doc_id, (0, 0))[0],
                                len(parts.get(d.doc_id, ())), measures.get(d.doc_id, 0)) for d in self.docs]
        # The work plan first, then by type and title, as people browse them.
        return sorted(docs, key=lambda d: (d.doc_type != "政策文件", d.doc_type, d.title))

    def clauses(self, doc_id: str) -> list[Chunk]:
        return sorted((c for (d, _), c in self.table.clauses.items() if d == doc_id), key=lambda c: c.ordinal)

    def find(self, label_or_id: str) -> list[Chunk]:
        """A clause by label (《工作方案》（十三）, 外商投资法第二十一条), a chunk id, or a doc_id."""
        text = normalize_query(label_or_id).strip()
        if text in self.table.by_id:
            c = self.table.by_id[text]
            return [self.table.clauses[(c.doc_id, c.ordinal)]]
        if m := re.match(r"^《([^》]+)》(.+)$", text):
            key = self.table.by_label.get((short_title(m.group(1)), m.group(2).strip()))
            if key:
                return [self.table.clauses[key]]
        ref = self.searcher.reference(text)
        if ref and ref.short_title:
            key = self.table.by_label.get((ref.short_title, ref.clause_key))
            if key:
                return [self.table.clauses[key]]
        if any(d.doc_id == text for d in self.docs):
            return self.clauses(text)
        return []


def load_index(settings: Settings, embedder: Embeddings | None = None) -> LoadedIndex:
    """Reads the active build: from the files derived beside it when they match, else rebuilt
    from the store (a Chroma server filled from another machine)."""
    # jieba's dictionary loads while Chroma is read: a shorter cold start.
    threading.Thread(target=lexical.warm_up, daemon=True).start()
    client = store.make_client(settings.data_dir, settings.chroma_url)
    info = store.require_index(client, settings.embedder, NORMALIZER_VERSION)
    collection = store.get_collection(client, info.chunks_name)  # a deleted one: DamagedIndexError
    chunks, _ = store.read_chunks(client, info)
    docs = store.read_documents(client, info)
    folder = settings.data_dir / "lexical" / info.build
    chunk_ids = {c.chunk_id for c in chunks}
    lex = lexical.load(folder)
    if lex is None or set(lex.chunk_ids) != chunk_ids:
        lex = lexical.build_and_save(chunks, folder)
    table = ClauseTable(chunks)
    dense = DenseIndex.load(folder)
    if dense is None or set(dense.chunk_ids) != chunk_ids or len(dense.hook_clauses) != info.hooks:
        dense = _dense_from_store(client, info, table, folder)
    hook_match = match_hooks(settings, chunks, table)
    hook_lex = lexical.load(folder / "hooks") if info.hooks else None
    if info.hooks and hook_lex is None:
        save_hook_lexical(hook_match, folder)
        hook_lex = lexical.load(folder / "hooks")
    english_to_short = {en: short_title(zh) for zh, en in english_law_titles().items()}
    english_to_short |= {d.english_title: d.short_title for d in docs
                         if d.english_title and d.status == IN_FORCE}
    english_to_short |= english_aliases()
    searcher = HybridSearcher(table, lex, dense, embedder or get_embedder(settings.embedder), english_to_short,
                              hook_lexical=hook_lex, zh_aliases=chinese_aliases(), ranker=load_ranker(settings.embedder),
                              hook_texts={key: lexical_document(e) for key, e in hook_match.by_clause.items()})
    links = build_links(ClauseText(c.short_title, c.clause_key, c.text)
                        for c in table.clauses.values() if c.kind == "article")
    coming = {d.title: d for d in docs if d.status == NOT_YET_IN_FORCE}
    # Romanised place names of the documents (Ningbo, Daxie) are known English words.
    english_words = (set(lex.vocabulary()) | glossary_words()
                     | {w for names in searcher.romanised.values() for n in names for w in n.split()})
    log.info("index %s loaded: %d documents, %d chunks", info.build, len(docs), len(chunks))
    return LoadedIndex(client=client, collection=collection, info=info, docs=docs, table=table,
                       searcher=searcher, hook_match=hook_match, links=links,
                       coming={d.short_title: coming[d.title] for d in docs
                               if d.status == IN_FORCE and d.title in coming},
                       corpus_text="\n".join(d.text for d in docs), english_words=english_words)


def _dense_from_store(client, info: store.IndexInfo, table: ClauseTable, folder: Path) -> DenseIndex:
    _, vectors = store.read_chunks(client, info, with_vectors=True)
    rows, hook_vectors = store.read_hook_rows(client, info)
    rows_ok = sorted((i for i, r in enumerate(rows) if r[0] in table.clauses), key=lambda i: rows[i][0])
    ids = sorted(vectors)
    dense = DenseIndex.build(ids, [vectors[i] for i in ids], info.dim, [rows[i][0] for i in rows_ok],
                             [rows[i][1] for i in rows_ok], [hook_vectors[i] for i in rows_ok])
    dense.save(folder)
    return dense
