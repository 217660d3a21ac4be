"""`rag eval compare A/report.json B/report.json`: what changed between two runs.

Metric deltas (B − A) with paired bootstrap intervals and randomisation-test
p-values over the items both runs share, and the items that flipped: passed in
A and failed in B (regressions) or the other way (fixes). "Passed" is the
report's own definition (`rag.bench.report.failure_reason`): evidence at rank 1 and
a citation holding it, or a correct abstention.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.bench.report import _default_config, _md_table, failure_reason
from rag.bench.stats import ALPHA, METHOD, METRICS, fmt_ci, fmt_p, paired_comparison
from rag.errors import ConfigError, DatasetError

TOP = 3


def load_report(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"cannot read report {path}: {exc}",
                           hint="pass the report.json written by rag eval --out") from exc
    if not isinstance(report, dict) or not isinstance(report.get("configs"), dict):
        raise DatasetError(f"{path} is not a benchmark report",
                           hint="pass the report.json written by rag eval --out")
    return report


def _pick(report: dict[str, Any], config: str | None, path: str) -> tuple[str, list[dict[str, Any]]]:
    name = config or _default_config(report)
    if name not in report["configs"]:
        raise ConfigError(f"{path} has no configuration {name!r}",
                          hint=f"it has: {', '.join(report['configs'])}")
    return name, report["configs"][name].get("items", [])


def flips(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Items passed in one run and failed in the other, with question, reasons, top labels."""
    by_id = {r["id"]: r for r in b}
    out: dict[str, list[dict[str, Any]]] = {"regressed": [], "fixed": []}
    for ra in a:
        rb = by_id.get(ra["id"])
        if rb is None:
            continue
        why_a, why_b = failure_reason(ra), failure_reason(rb)
        if (why_a is None) == (why_b is None):
            continue
        row = {"id": ra["id"], "question": ra.get("question", ""), "lang": ra.get("lang", ""),
               "doc_kind": ra.get("doc_kind", ""), "why_a": why_a or "", "why_b": why_b or "",
               "top_a": ra.get("top_labels", [])[:TOP], "top_b": rb.get("top_labels", [])[:TOP]}
        out["regressed" if why_a is None else "fixed"].append(row)
    return out


def compare_reports(a: dict[str, Any], b: dict[str, Any], *, config_a: str | None = None,
                    config_b: str | None = None, path_a: str = "A", path_b: str = "B") -> dict[str, Any]:
    name_a, items_a = _pick(a, config_a, path_a)
    name_b, items_b = _pick(b, config_b, path_b)
    ids_a, ids_b = {r["id"] for r in items_a}, {r["id"] for r in items_b}
    return {
        "a": {"report": path_a, "config": name_a, "created": a.get("created", "")},
        "b": {"report": path_b, "config": name_b, "created": b.get("created", "")},
        "only_in_a": sorted(ids_a - ids_b), "only_in_b": sorted(ids_b - ids_a),
        "comparison": paired_comparison(items_a, items_b),
        "flips": flips(items_a, items_b),
        "method": METHOD,
    }


def _val(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def render_comparison(c: dict[str, Any]) -> str:
    a, b = c["a"], c["b"]
    cmp = c["comparison"]
    out = [f"# {a['config']} ({a['report']}) → {b['config']} ({b['report']})", "",
           f"{cmp['n']} items in both runs; delta = B − A; 95 % paired bootstrap interval; "
           f"p from a paired randomisation test (* p < {ALPHA}).", ""]
    if c["only_in_a"] or c["only_in_b"]:
        out += [f"Not compared: {len(c['only_in_a'])} item(s) only in A, "
                f"{len(c['only_in_b'])} only in B.", ""]
    rows = []
    for m in METRICS:
        e = cmp["metrics"].get(m)
        if not e:
            continue
        star = " *" if e["p"] is not None and e["p"] < ALPHA else ""
        delta = "n/a" if e["delta"] is None else f"{e['delta']:+.3f}"
        rows.append([m, _val(e["a"]), _val(e["b"]), delta, fmt_ci(e["ci"]), fmt_p(e["p"]) + star])
    out += _md_table(["metric", "A", "B", "delta", "95 % CI", "p"], rows)
    for key, title in (("regressed", "Passed in A, failed in B"), ("fixed", "Failed in A, passed in B")):
        items = c["flips"][key]
        out += [f"## {title}: {len(items)}", ""]
        if items:
            out += _md_table(
                ["id", "question", "why (failed run)", "top labels A", "top labels B"],
                [[r["id"], r["question"], r["why_b"] or r["why_a"], ", ".join(r["top_a"]),
                  ", ".join(r["top_b"])] for r in items])
    return "\n".join(out).rstrip() + "\n"
