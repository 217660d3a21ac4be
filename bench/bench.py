"""Speed and memory benchmark (`make bench`): medians and percentiles in one run.

- cold start: a fresh process loads the index and answers one question;
- warm answers: retrieval + extractive answer over >= 100 benchmark questions;
- unchanged re-ingest time, index size on disk, peak memory.
Writes bench/out/report.md and prints it. Numbers from a shared 2-core machine:
compare ratios measured in the same run, not across runs.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLD = """
import time, json
t0 = time.perf_counter()
from rag.qa.assistant import load_assistant
a = load_assistant()
t1 = time.perf_counter()
a.ask("M0用地能建住宅吗？")
t2 = time.perf_counter()
print(json.dumps({"load_s": t1 - t0, "first_answer_s": t2 - t1, "total_s": t2 - t0}))
"""


def dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def questions() -> list[tuple[str, list]]:
    out = []
    for path in sorted((ROOT / "eval" / "items").glob("*.jsonl")):
        if path.stem == "local-regulations":
            continue  # not in the default corpus
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                out.append((item["question"], item.get("history") or []))
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> int:
    from rag.index.ingest import ingest
    from rag.settings import from_env

    settings = from_env()
    t = time.perf_counter()
    summary = ingest(settings, progress=False)
    reingest_s = time.perf_counter() - t

    colds = []
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", COLD], capture_output=True, text=True, cwd=ROOT,
                             env=os.environ, check=True)
        colds.append(json.loads(res.stdout.strip().splitlines()[-1]))

    from rag.qa.assistant import load_assistant

    assistant = load_assistant(settings)
    qs = questions()
    for q, h in qs[:5]:
        assistant.ask(q, history=h)  # warm-up: caches, jieba, first query path
    total, retrieve = [], []
    abstained = 0
    for q, h in qs:
        t = time.perf_counter()
        r = assistant.ask(q, history=h)
        total.append((time.perf_counter() - t) * 1000)
        retrieve.append(r.timings_ms.get("retrieve", 0.0))
        abstained += r.abstained
    # The same questions again: what remembering query vectors saves (a follow-up, an
    # example clicked twice, the benchmark run twice).
    again = []
    for q, h in qs:
        t = time.perf_counter()
        assistant.ask(q, history=h)
        again.append((time.perf_counter() - t) * 1000)
    # The learned ranking stage's cost: the same cached questions with fusion alone.
    from rag.models import Retriever
    from rag.qa.search import DEFAULT_RETRIEVERS

    fused_only = tuple(r for r in DEFAULT_RETRIEVERS if r != Retriever.LEARNED)
    again_fused = []
    for q, h in qs:
        t = time.perf_counter()
        assistant.ask(q, history=h, retrievers=fused_only)
        again_fused.append((time.perf_counter() - t) * 1000)
    embed_ms = []
    for i, (q, _) in enumerate(qs[:100]):
        t = time.perf_counter()
        assistant.embedder.embed_query(f"{q} #{i}")  # unseen text: the e5 pass itself
        embed_ms.append((time.perf_counter() - t) * 1000)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    size_mb = dir_size(settings.data_dir) / 1e6
    chroma_mb = dir_size(settings.data_dir / "chroma") / 1e6 if (settings.data_dir / "chroma").exists() else 0.0
    rows = [
        ("questions (warm, extractive)", f"{len(total)}"),
        ("warm answer p50 / p95 (ms)", f"{statistics.median(total):.1f} / {pct(total, 95):.1f}"),
        ("same questions again p50 / p95 (ms)", f"{statistics.median(again):.1f} / {pct(again, 95):.1f}"),
        ("  the same with fusion alone (no learned stage) p50 / p95 (ms)",
         f"{statistics.median(again_fused):.1f} / {pct(again_fused, 95):.1f}"),
        ("  of which retrieval p50 (ms)", f"{statistics.median(retrieve):.1f}"),
        ("  e5 query embedding alone p50 (ms)", f"{statistics.median(embed_ms):.1f}"),
        ("cold start median: load + first answer (s)",
         f"{statistics.median(c['total_s'] for c in colds):.2f} "
         f"(load {statistics.median(c['load_s'] for c in colds):.2f}, "
         f"first answer {statistics.median(c['first_answer_s'] for c in colds):.2f})"),
        ("unchanged re-ingest (s)", f"{reingest_s:.1f} (embedded {summary.embedded})"),
        ("index: documents / clauses / chunks", f"{summary.documents} / {summary.clauses} / {summary.chunks}"),
        ("data dir on disk (MB)", f"{size_mb:.1f} (chroma {chroma_mb:.1f})"),
        ("peak memory of this process (MB)", f"{peak_mb:.0f}"),
        ("abstained", f"{abstained}"),
    ]
    report = "# Benchmark\n\n| measure | value |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows)
    out = ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report, encoding="utf-8")
    sys.stdout.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
