"""TREC files of a benchmark run, so trec_eval / ranx / ir-measures run on them unchanged.

- `qrels.txt`: `qid 0 docid 1` for every clause holding an answerable item's
  evidence (found through the index, like the benchmark's own matching);
  unanswerable and unlocatable items have no judgments.
- `run-<config>.txt`: `qid Q0 docid rank score tag`, the clause labels each
  configuration ranked (its top k), score k+1−rank.

Query ids are the dataset ids, document ids the clause labels with any
whitespace removed (《外商投资法》第二十一条). The naive baseline ranks
fixed-size chunks, not clauses, so it has no run file. A query a system
retrieved nothing for has no run lines: use `trec_eval -c` to count it as 0.
The project's hit@k matches evidence in the retrieved text, TREC tools match
labels; they differ only when a clause is split into several chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rag.bench.evaluate import EvalItem
from rag.bench.judgments import EvalIndex

NOT_CLAUSES = ("naive",)


def doc_id(label: str) -> str:
    return re.sub(r"\s+", "", label)


def _qid(item_id: str) -> str:
    return re.sub(r"\s+", "_", item_id)


def qrels_lines(items: Iterable[EvalItem], index: EvalIndex, skip: Iterable[str] = ()) -> list[str]:
    skipped = set(skip)
    lines = []
    for it in items:
        if not it.answerable or it.id in skipped:
            continue
        seen: set[str] = set()
        for clause in index.evidence_clauses(it.evidence):
            d = doc_id(clause.label)
            if d not in seen:
                seen.add(d)
                lines.append(f"{_qid(it.id)} 0 {d} 1")
    return lines


def run_lines(records: Sequence[dict[str, Any]], tag: str) -> list[str]:
    lines = []
    tag = re.sub(r"\s+", "_", tag)
    for r in records:
        ranked: list[str] = []
        for label in r.get("top_labels", []):
            d = doc_id(label)
            if d and d not in ranked:  # a clause split into chunks is ranked once
                ranked.append(d)
        lines += [f"{_qid(r['id'])} Q0 {d} {rank} {len(ranked) + 1 - rank} {tag}"
                  for rank, d in enumerate(ranked, start=1)]
    return lines


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name)


def write_trec(report: dict[str, Any], items: Sequence[EvalItem], index: EvalIndex,
               out_dir: str | Path) -> list[Path]:
    """Write qrels.txt and one run file per configuration; return the paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qrels = out / "qrels.txt"
    qrels.write_text("\n".join(qrels_lines(items, index, report.get("unlocatable", []))) + "\n",
                     encoding="utf-8")
    paths = [qrels]
    for name, data in report["configs"].items():
        if name in NOT_CLAUSES:
            continue
        path = out / f"run-{_safe(name)}.txt"
        lines = run_lines(data.get("items", []), name)
        path.write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
        paths.append(path)
    return paths


def score_with_ir_measures(qrels_path: Path, run_path: Path) -> dict[str, float]:
    """hit@1/3/5 and MRR@10 as ir-measures computes them (queries without run lines = 0)."""
    import ir_measures
    from ir_measures import RR, Success

    qrels = list(ir_measures.read_trec_qrels(str(qrels_path)))
    run = list(ir_measures.read_trec_run(str(run_path)))
    measures = {"hit@1": Success @ 1, "hit@3": Success @ 3, "hit@5": Success @ 5, "mrr@10": RR @ 10}
    qids = {q.query_id for q in qrels}
    per: dict[str, dict[str, float]] = {name: {} for name in measures}
    names = {str(m): name for name, m in measures.items()}
    for metric in ir_measures.iter_calc(list(measures.values()), qrels, run):
        per[names[str(metric.measure)]][metric.query_id] = float(metric.value)
    return {name: sum(per[name].get(q, 0.0) for q in qids) / len(qids) if qids else 0.0
            for name in measures}
