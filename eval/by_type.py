"""hit@1 / hit@5 per document type (notice, law, regulation, user-added) from report.json
files written by `rag eval --out`. The type of an item is the items file it comes from.

    python eval/by_type.py eval/reports/report.json eval/reports/local/report.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EVAL = Path(__file__).resolve().parent
TYPES = {"notice": "notice", "laws": "law", "state-regulations": "regulation",
         "local-regulations": "user-added", "unanswerable": "unanswerable"}


def item_types() -> dict[str, str]:
    out = {}
    for path in (EVAL / "items").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                out[json.loads(line)["id"]] = TYPES.get(path.stem, path.stem)
    return out


def rows(reports: list[Path]) -> list[tuple[str, str, int, float, float]]:
    types = item_types()
    per: dict[tuple[str, str], list[dict]] = {}
    for report in reports:
        data = json.loads(report.read_text(encoding="utf-8"))
        for config, result in data["configs"].items():
            for r in result["items"]:
                if r["answerable"]:
                    per.setdefault((types.get(r["id"], "?"), config), []).append(r)
    out = []
    for (kind, config), records in sorted(per.items()):
        ranks = [r["hit_rank"] for r in records]
        hit1 = sum(1 for x in ranks if x is not None and x <= 1) / len(ranks)
        hit5 = sum(1 for x in ranks if x is not None and x <= 5) / len(ranks)
        out.append((kind, config, len(records), hit1, hit5))
    return out


def main(argv: list[str]) -> None:
    print("| type | config | answerable items | hit@1 | hit@5 |")  # noqa: T201
    print("|---|---|---|---|---|")  # noqa: T201
    for kind, config, n, h1, h5 in rows([Path(a) for a in argv]):
        print(f"| {kind} | {config} | {n} | {h1:.3f} | {h5:.3f} |")  # noqa: T201


if __name__ == "__main__":
    main(sys.argv[1:])
