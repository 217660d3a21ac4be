"""Retrieval ablation on a dataset: which signal gains what.

    python eval/ablation.py --dataset eval/test.jsonl [--dataset ...] [--out eval/reports/ablation.md]

Rows: clause text only (bm25 + dense), + hook bm25, + hook vectors, + both (the default),
both with the hooks of every other law removed (coverage neutrality), and the default with
Chroma's approximate HNSW search in place of exact dense scoring. Columns: hit@1 / hit@5
overall, per language and per document type of the expected clause, on answerable items.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.bench.evaluate import first_hit_rank, holds_evidence, load_dataset  # noqa: E402
from rag.bench.judgments import doc_kind  # noqa: E402
from rag.corpus.normalize import normalize_query  # noqa: E402
from rag.index import store  # noqa: E402
from rag.index.clauses import Filters  # noqa: E402
from rag.qa.assistant import Assistant  # noqa: E402
from rag.qa.compose import resolve_follow_up  # noqa: E402
from rag.settings import from_env  # noqa: E402


def dense_query(col, vector: list[float], n: int,
                where: dict[str, Any] | None = None) -> list[tuple[str, float]]:
    """(chunk_id, cosine similarity) best first, from a chunks collection."""
    res = col.query(query_embeddings=[vector], n_results=n, where=where or None, include=["distances"])
    return [(cid, 1.0 - float(dist)) for cid, dist in zip(res["ids"][0], res["distances"][0], strict=True)]


DROPPED: set[str] = set()  # laws whose hooks the neutrality row removes


def expected_doc(item, clauses, kinds: dict[str, str]) -> tuple[str, str]:
    """(document kind, doc_id) of the first clause holding the item's evidence."""
    for c in clauses:
        if holds_evidence(c.text, item.evidence):
            return kinds[c.doc_id], c.doc_id
    return "unlocatable", ""


def run(a: Assistant, items, retrievers, prepare: Callable[[], None] | None = None) -> dict[str, tuple]:
    if prepare:
        prepare()
    groups: dict[str, list] = {}
    for item, kind, doc_id in items:
        q = normalize_query(item.question)
        _, ctx = resolve_follow_up(q, list(item.history) or None)
        hits = a.searcher.search(q, k=10, filters=Filters(), retrievers=retrievers,
                                 extra_query=normalize_query(ctx) if ctx else "")
        rank = first_hit_rank([h.chunk.text for h in hits], item.evidence)
        for key in ("all", item.lang, kind) + (("hooks removed",) if doc_id in DROPPED else ()):
            groups.setdefault(key, []).append(rank)
    return {key: (sum(r == 1 for r in ranks) / len(ranks), sum(bool(r and r <= 5) for r in ranks) / len(ranks),
                  len(ranks)) for key, ranks in groups.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", action="append", required=True)
    p.add_argument("--out", default="")
    args = p.parse_args()
    a = Assistant(from_env())
    kinds = {d.doc_id: doc_kind(d.doc_type, d.source, a.settings.corpus_dir) for d in a.document_records()}
    clauses = list(a.table.clauses.values())
    items = [(i, *expected_doc(i, clauses, kinds)) for i in load_dataset(args.dataset) if i.answerable]
    items = [row for row in items if row[1] != "unlocatable"]
    searcher = a.searcher
    dense, hook_lex = searcher.dense, searcher.hook_lexical
    laws = sorted({c.doc_id for c in clauses if c.doc_type == "法律"})
    dropped = DROPPED
    dropped.update(laws[::2])

    original_mask = searcher._mask

    def half_hooks() -> None:
        keep = [i for i, key in enumerate(dense.hook_clauses) if key[0] not in dropped]
        searcher.dense = replace(dense, hook_clauses=[dense.hook_clauses[i] for i in keep],
                                 hook_kinds=[dense.hook_kinds[i] for i in keep], hooks=dense.hooks[keep])
        searcher._mask_cache.clear()
        if hook_lex is not None:
            # Their hook field is masked as if they had none (a masked clause counts as unhooked).
            drop = np.array([0.0 if cid.rpartition("\x00")[0] in dropped else 1.0 for cid in hook_lex.chunk_ids],
                            dtype=np.float32)

            def masked(filters, which="lexical"):
                m = original_mask(filters, which)
                return m * drop if which == "hooks_lexical" else m

            searcher._mask = masked  # type: ignore[method-assign]

    def restore() -> None:
        searcher.dense = dense
        searcher._mask_cache.clear()
        searcher.__dict__.pop("_mask", None)

    def hnsw() -> None:
        restore()
        client = store.make_client(a.settings.data_dir, a.settings.chroma_url)
        col = client.get_collection(a.info.chunks_name)
        pos = {cid: i for i, cid in enumerate(dense.chunk_ids)}

        def approximate(query: np.ndarray) -> np.ndarray:
            # Chroma's top 60 in its own order; everything else just below them (so the
            # query's score population stays comparable).
            exact = dense.chunks @ query
            found = dense_query(col, query.tolist(), 60)
            scores = np.minimum(exact, min((s for _, s in found), default=0.0) - 1e-3)
            for cid, s in found:
                scores[pos[cid]] = s
            return scores

        searcher.dense = replace(dense)
        searcher.dense.chunk_scores = approximate  # type: ignore[method-assign]

    rows = [
        ("clause text only (bm25 + dense)", ("bm25", "dense"), restore),
        ("+ hook bm25 field", ("bm25", "dense", "hooks-lex"), restore),
        ("+ hook vectors", ("bm25", "dense", "hooks-dense"), restore),
        ("+ both (default)", ("bm25", "dense", "hooks"), restore),
        (f"+ both, hooks removed from {len(dropped)} of {len(laws)} laws", ("bm25", "dense", "hooks"), half_hooks),
        ("+ both, HNSW instead of exact dense", ("bm25", "dense", "hooks"), hnsw),
    ]
    keys = ["all", "en", "zh", "notice", "law", "regulation", "user-added", "hooks removed"]
    results = [(name, run(a, items, retrievers, prep)) for name, retrievers, prep in rows]
    restore()
    head = "| configuration | " + " | ".join(keys) + " |"
    lines = [f"Ablation on {', '.join(args.dataset)} (answerable items; hit@1 / hit@5)", "", head,
             "|" + "---|" * (len(keys) + 1)]
    for name, res in results:
        cells = [f"{res[k][0]:.3f} / {res[k][1]:.3f} ({res[k][2]})" if k in res else "–" for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Laws whose hooks the fifth row removes: {', '.join(sorted(dropped))}. The column "
              "'hooks removed' holds the items about those laws: in the first row and the fifth they are "
              "ranked on their own text, so equal figures mean hooks elsewhere do not push them down."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
