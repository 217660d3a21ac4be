"""Retrieval ablation on a dataset: which signal gains what.

    python eval/ablation.py --dataset eval/test.jsonl [--dataset ...] [--out eval/reports/ablation.md]

Rows: clause text only (bm25 + dense), + hook bm25, + hook vectors, + both (fusion alone),
+ the learned ranking stage (the default), and the default with the hooks of every other law
removed (coverage neutrality: clauses without hooks must not be pushed down). Columns: hit@1 /
hit@5 overall, per language and per document type of the expected clause, on answerable items.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rag.bench.evaluate import first_hit_rank, holds_evidence, load_dataset  # noqa: E402
from rag.bench.judgments import doc_kind  # noqa: E402
from rag.corpus.normalize import normalize_query  # noqa: E402
from rag.qa.assistant import Assistant  # noqa: E402
from rag.qa.followup import follow_up  # noqa: E402
from rag.qa.search import HybridSearcher  # noqa: E402
from rag.settings import from_env  # noqa: E402

KEYS = ["all", "en", "zh", "notice", "law", "regulation", "user-added", "hooks removed"]


def expected_doc(item, clauses, kinds: dict[str, str]) -> tuple[str, str]:
    """(document kind, doc_id) of the first clause holding the item's evidence."""
    for c in clauses:
        if holds_evidence(c.text, item.evidence):
            return kinds[c.doc_id], c.doc_id
    return "unlocatable", ""


def run(searcher: HybridSearcher, items, retrievers, dropped: set[str]) -> dict[str, tuple]:
    groups: dict[str, list] = {}
    for item, kind, doc_id in items:
        q = normalize_query(item.question)
        hits = searcher.search(q, k=10, retrievers=retrievers,
                               **searcher.follow_up_args(follow_up(q, list(item.history) or None)))
        rank = first_hit_rank([h.chunk.text for h in hits], item.evidence)
        for key in ("all", item.lang, kind) + (("hooks removed",) if doc_id in dropped else ()):
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
    laws = sorted({c.doc_id for c in clauses if c.doc_type == "法律"})
    dropped = set(laws[::2])
    half = a.searcher.without_hooks(lambda key: key[0] in dropped)
    rows = [
        ("clause text only (bm25 + dense)", a.searcher, ("bm25", "dense")),
        ("+ hook bm25 field", a.searcher, ("bm25", "dense", "hooks-lex")),
        ("+ hook vectors", a.searcher, ("bm25", "dense", "hooks-dense")),
        ("+ both, fusion alone (RRF)", a.searcher, ("bm25", "dense", "hooks")),
        ("+ the learned ranking stage (default)", a.searcher, ("bm25", "dense", "hooks", "learned")),
        (f"default, hooks removed from {len(dropped)} of {len(laws)} laws", half,
         ("bm25", "dense", "hooks", "learned")),
    ]
    lines = [f"Ablation on {', '.join(args.dataset)} (answerable items; hit@1 / hit@5)", "",
             "| configuration | " + " | ".join(KEYS) + " |", "|" + "---|" * (len(KEYS) + 1)]
    for name, searcher, retrievers in rows:
        res = run(searcher, items, retrievers, dropped)
        cells = [f"{res[k][0]:.3f} / {res[k][1]:.3f} ({res[k][2]})" if k in res else "–" for k in KEYS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"Laws whose hooks the last row removes: {', '.join(sorted(dropped))}. The column "
              "'hooks removed' holds the items about those laws: in the first row and the last they are "
              "ranked on their own text, so equal figures mean that hooks elsewhere, and the learned stage, "
              "do not push clauses without hooks down."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
