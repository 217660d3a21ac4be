"""The clauses of an index in memory: chunks grouped back into clauses, looked up by id or
label, and the filters (documents, types, in force) a search applies to them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rag.corpus.references import ClauseRef
from rag.errors import ConfigError
from rag.models import IN_FORCE, Chunk


@dataclass(frozen=True)
class Filters:
    doc_ids: tuple[str, ...] = ()
    doc_types: tuple[str, ...] = ()
    in_force_only: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Filters:
        data = data or {}
        return cls(doc_ids=tuple(data.get("doc_ids") or ()), doc_types=tuple(data.get("doc_types") or ()),
                   in_force_only=bool(data.get("in_force_only", True)))

    def allows(self, chunk: Chunk) -> bool:
        if self.doc_ids and chunk.doc_id not in self.doc_ids:
            return False
        if self.doc_types and chunk.doc_type not in self.doc_types:
            return False
        return not (self.in_force_only and chunk.status != IN_FORCE)

    def where(self) -> dict[str, Any] | None:
        conds: list[dict[str, Any]] = []
        if self.doc_ids:
            conds.append({"doc_id": {"$in": list(self.doc_ids)}})
        if self.doc_types:
            conds.append({"doc_type": {"$in": list(self.doc_types)}})
        if self.in_force_only:
            conds.append({"status": IN_FORCE})
        if not conds:
            return None
        return conds[0] if len(conds) == 1 else {"$and": conds}


def clause_key_of(chunk: Chunk) -> tuple[str, int]:
    return (chunk.doc_id, chunk.ordinal)


def merge_parts(parts: list[Chunk]) -> Chunk:
    """The parts of one over-long clause, back as the whole clause."""
    parts = sorted(parts, key=lambda c: c.part)
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    return replace(first, text="".join(p.text for p in parts), end=parts[-1].end,
                   token_count=sum(p.token_count for p in parts), part=1, parts=1)


@dataclass
class ClauseTable:
    """All chunks in memory, grouped by clause, for lookups and filtering."""

    chunks: list[Chunk]
    by_id: dict[str, Chunk] = field(init=False)
    clauses: dict[tuple[str, int], Chunk] = field(init=False)
    by_label: dict[tuple[str, str], tuple[str, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.by_id = {c.chunk_id: c for c in self.chunks}
        groups: dict[tuple[str, int], list[Chunk]] = {}
        for c in self.chunks:
            groups.setdefault(clause_key_of(c), []).append(c)
        self.clauses = {k: merge_parts(v) for k, v in groups.items()}
        self.by_label = {}
        for key, c in self.clauses.items():
            self.by_label.setdefault((c.short_title, c.clause_key), key)

    def lookup(self, ref: ClauseRef, filters: Filters) -> list[Chunk]:
        # Naming a clause overrides "in force only" (the answer flags its status),
        # but not a choice of documents or types.
        filters = replace(filters, in_force_only=False)
        if ref.short_title:
            key = self.by_label.get((ref.short_title, ref.clause_key))
            return [self.clauses[key]] if key and filters.allows(self.clauses[key]) else []
        # "第二十一条" alone: only meaningful when the filters leave one document.
        hits = [c for (short, ck), key in self.by_label.items() if ck == ref.clause_key
                and filters.allows(c := self.clauses[key])]
        return hits if len(hits) == 1 else []


FILTER_KEYS = ("doc_ids", "doc_types", "in_force_only")


def filters_from(data: Any, known_docs: Mapping[str, str] | None, docs_hint: str = "") -> Filters:
    """Filters from a client's JSON object (the API, the MCP tools); ConfigError says what is
    wrong and what to send. `known_docs` (doc_id → doc_type) turns a filter naming no document
    into an error instead of an empty answer; `docs_hint` says where the doc_ids are listed."""
    example = '{"doc_ids": [], "doc_types": [], "in_force_only": true}'
    if data is None:
        return Filters()
    if not isinstance(data, dict):
        raise ConfigError("filters must be an object", hint=example)
    unknown = sorted(set(data) - set(FILTER_KEYS))
    if unknown:
        raise ConfigError(f"unknown filter {', '.join(map(repr, unknown))}",
                          hint=f"filters accepts only {', '.join(FILTER_KEYS)}, e.g. {example}")
    for name in ("doc_ids", "doc_types"):
        value = data.get(name)
        if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
            raise ConfigError(f"filters.{name} must be a list of strings", hint=f'e.g. "{name}": ["..."]')
    in_force = data.get("in_force_only")
    if in_force is not None and not isinstance(in_force, bool):
        raise ConfigError("filters.in_force_only must be true or false",
                          hint="true (the default) leaves out documents no longer in force")
    if known_docs is not None:
        missing = [d for d in data.get("doc_ids") or [] if d not in known_docs]
        if missing:
            ids = sorted(known_docs)
            raise ConfigError(f"unknown document {', '.join(map(repr, missing))} in filters.doc_ids",
                              hint=f"{docs_hint}known: " + ", ".join(ids[:8]) + (f" … ({len(ids)} in all)"
                                                                                 if len(ids) > 8 else ""))
        types = set(known_docs.values())
        missing = [t for t in data.get("doc_types") or [] if t not in types]
        if missing:
            raise ConfigError(f"unknown document type {', '.join(map(repr, missing))} in filters.doc_types",
                              hint="known types: " + ", ".join(sorted(types)))
    return Filters.from_dict(data)
