"""Rendering of a benchmark report: terminal table, Markdown, JSON, PNG chart,
and the target / threshold checks the CLI turns into an exit code."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.bench.evaluate import DEFAULT_CONFIG, LANGS
from rag.errors import ConfigError
from rag.settings import REPO_ROOT

log = logging.getLogger(__name__)

# (JSON key, short column header) in display order.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("hit@1", "hit@1"), ("hit@3", "hit@3"), ("hit@5", "hit@5"), ("mrr@10", "MRR@10"),
    ("citation_precision", "cit.P"), ("citation_recall", "cit.R"),
    ("keyword_recall", "kw.R"), ("abstention_precision", "abs.P"),
    ("abstention_recall", "abs.R"), ("abstention_f1", "abs.F1"),
    ("latency_p50_ms", "p50 ms"), ("latency_p95_ms", "p95 ms"), ("n", "n"),
)
LANG_COLUMNS = ("hit@1", "hit@5", "mrr@10", "citation_precision", "keyword_recall",
                "abstention_f1", "n")
_HEADERS = dict(COLUMNS)
MAX_FAILURES = 300  # keeps report.md readable when a configuration is badly broken


@dataclass(frozen=True)
class Target:
    metric: str  # "hit@1" (overall), "en.hit@5" (one language), "gap.hit@5" (zh minus en)
    bound: float
    maximum: bool = False  # latency and the language gap are upper bounds
    label: str = ""


# The acceptance targets (hybrid, test split).
DEFAULT_TARGETS: tuple[Target, ...] = (
    Target("hit@1", 0.85, label="hit@1 ≥ 0.85"),
    Target("hit@5", 0.95, label="hit@5 ≥ 0.95"),
    Target("gap.hit@5", 0.03, maximum=True, label="English hit@5 within 3 points of Chinese"),
    Target("citation_precision", 0.90, label="citation precision ≥ 0.9"),
    Target("keyword_recall", 0.85, label="keyword recall ≥ 0.85"),
    Target("abstention_f1", 0.90, label="abstention F1 ≥ 0.9"),
)


def _default_config(report: dict[str, Any]) -> str:
    configs = report.get("configs", {})
    name = report.get("default_config") or DEFAULT_CONFIG
    return name if name in configs else next(iter(configs), DEFAULT_CONFIG)


def metric_value(report: dict[str, Any], metric: str, config: str = DEFAULT_CONFIG) -> float | None:
    """A metric of one configuration; None when undefined (e.g. no items of a language)."""
    if config not in report.get("configs", {}):
        raise ConfigError(f"the report has no configuration {config!r}",
                          hint=f"it has: {', '.join(report.get('configs', {}))}")
    data = report["configs"][config]
    scope, _, name = metric.rpartition(".")
    if name not in data["overall"]:
        raise ConfigError(f"unknown metric {metric!r}",
                          hint=f"use one of {', '.join(data['overall'])}, optionally "
                               "prefixed zh. / en. / gap.")
    if scope == "gap":
        zh, en = (data["by_lang"].get(lang, {}).get(name) for lang in ("zh", "en"))
        return None if zh is None or en is None else zh - en
    if scope in LANGS:
        value = data["by_lang"].get(scope, {}).get(name)
        return None if value is None else float(value)
    if scope:
        raise ConfigError(f"unknown metric scope in {metric!r}", hint="use zh. / en. / gap.")
    value = data["overall"][name]
    return None if value is None else float(value)


def evaluate_targets(
    report: dict[str, Any], targets: Sequence[Target] = DEFAULT_TARGETS, config: str = DEFAULT_CONFIG
) -> list[dict[str, Any]]:
    """Per target: value, met and margin (positive = by how much it is met)."""
    results = []
    for t in targets:
        value = metric_value(report, t.metric, config)
        margin = None if value is None else (t.bound - value if t.maximum else value - t.bound)
        results.append({"target": t, "value": value, "met": margin is not None and margin >= 0,
                        "margin": margin})
    return results


def _num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".") if abs(v) < 100 else f"{v:.0f}"


def check_thresholds(
    report: dict[str, Any], mins: dict[str, float], config: str = DEFAULT_CONFIG
) -> list[str]:
    """Failures like "hit@1 0.81 < 0.85"; empty when every threshold holds.

    Keys are metric names ("hit@1", "en.hit@5"); latency_* and gap.* keys are
    maxima, since lower is better there.
    """
    targets = [
        Target(m, b, maximum=m.startswith("gap.") or m.rpartition(".")[2].startswith("latency"))
        for m, b in mins.items()
    ]
    failures = []
    for r in evaluate_targets(report, targets, config):
        t, value = r["target"], r["value"]
        op = ">" if t.maximum else "<"
        if value is None:
            failures.append(f"{t.metric} n/a {op} {_num(t.bound)}")
        elif not r["met"]:
            failures.append(f"{t.metric} {_num(value)} {op} {_num(t.bound)}")
    return failures


# --------------------------------------------------------------------------- tables


def _fmt(value: Any, key: str) -> str:
    if value is None:
        return "n/a"
    if key == "n" or key.startswith("n_"):
        return str(value)
    if key.startswith("latency"):
        return f"{value:.0f}"
    return f"{value:.3f}"


def format_table(report: dict[str, Any]) -> str:
    """The side-by-side terminal table: configurations × metrics."""
    header = ["config"] + [h for _, h in COLUMNS]
    rows = [
        [name] + [_fmt(data["overall"].get(key), key) for key, _ in COLUMNS]
        for name, data in report["configs"].items()
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    out = [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]
    out += _terminal_uncertainty(report)
    unloc = report.get("unlocatable") or []
    if unloc:
        out.append(f"{len(unloc)} unlocatable item(s) excluded: {', '.join(unloc[:10])}"
                   + (" …" if len(unloc) > 10 else ""))
    return "\n".join(out)


TERMINAL_CI = ("hit@1", "hit@5", "mrr@10", "citation_precision", "abstention_f1")


def _terminal_uncertainty(report: dict[str, Any]) -> list[str]:
    from rag.bench.stats import ALPHA, fmt_ci, fmt_p

    out = []
    for name, d in report["configs"].items():
        ci = d.get("ci", {}).get("overall")
        if ci:
            out.append(f"95% CI {name}: " + "  ".join(
                f"{_HEADERS[k]} {fmt_ci(ci.get(k)) or 'n/a'}" for k in TERMINAL_CI))
    sig = report.get("significance", {})
    for name, cmp in sig.get("configs", {}).items():
        parts = []
        for k in TERMINAL_CI:
            e = cmp.get("metrics", {}).get(k)
            if e and e["delta"] is not None:
                star = "*" if e["p"] is not None and e["p"] < ALPHA else ""
                parts.append(f"{_HEADERS[k]} {e['delta']:+.3f} (p {fmt_p(e['p'])}){star}")
        if parts:
            out.append(f"{name} vs {sig['baseline']}: " + "  ".join(parts))
    return out


def _md_cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return out + [""]


def _fmt_ci(value: Any, key: str, data: dict[str, Any], scope: str, group: str) -> str:
    """A value with its 95 % interval when the report has one ("0.690 [0.610, 0.770]")."""
    from rag.bench.stats import fmt_ci

    text = _fmt(value, key)
    ci = data.get("ci", {}).get(scope, {}).get(group, {}).get(key)
    return f"{text} {fmt_ci(ci)}".rstrip()


def _md_uncertainty(report: dict[str, Any]) -> list[str]:
    """Headline intervals per configuration, and each compared with the default."""
    from rag.bench.stats import ALPHA, METRICS, fmt_ci, fmt_p

    configs = report["configs"]
    if not any("ci" in d for d in configs.values()):
        return []  # a report written before intervals existed
    method = report.get("stats_method", {})
    out = ["## 95 % intervals", "", f"Method: {method.get('interval', 'bootstrap')}.", ""]
    out += _md_table(["config"] + [_HEADERS[k] for k in METRICS],
                     [[name] + [fmt_ci(d.get("ci", {}).get("overall", {}).get(k)) or "n/a"
                                for k in METRICS] for name, d in configs.items()])
    sig = report.get("significance", {})
    base, rows = sig.get("baseline", ""), []
    for name, cmp in sig.get("configs", {}).items():
        cells = [name, str(cmp.get("n", ""))]
        for k in METRICS:
            e = cmp.get("metrics", {}).get(k)
            if not e or e["delta"] is None:
                cells.append("n/a")
                continue
            star = "*" if e["p"] is not None and e["p"] < ALPHA else ""
            cells.append(f"{e['delta']:+.3f} (p {fmt_p(e['p'])}){star}")
        rows.append(cells)
    if rows:
        out += [f"## Compared with `{base}`", "",
                f"Delta = configuration − `{base}` over the same items; p from a "
                f"{method.get('test', 'paired test')}; * p < {ALPHA} (not corrected for "
                "the number of comparisons).", ""]
        out += _md_table(["config", "n"] + [_HEADERS[k] for k in METRICS], rows)
    return out


def failure_reason(item: dict[str, Any]) -> str | None:
    """Why an item counts as a failure of its configuration; None when it passed."""
    if item.get("error"):
        return f"error: {item['error']}"
    if not item["answerable"]:
        return None if item["abstained"] else "answered (should abstain)"
    reasons = []
    if item["hit_rank"] is None:
        reasons.append("evidence not retrieved")
    elif item["hit_rank"] > 1:
        reasons.append(f"evidence at rank {item['hit_rank']}")
    if item["abstained"]:
        reasons.append("abstained")
    elif not item["cited_ok"]:
        reasons.append("no citation holds the evidence")
    return "; ".join(reasons) or None


def render_markdown(report: dict[str, Any]) -> str:
    default = _default_config(report)
    configs = report["configs"]
    datasets = ", ".join(f"`{d['path']}` ({d['items']})" for d in report.get("datasets", []))
    corpus = report.get("corpus", {})
    out = [
        "# QA accuracy benchmark", "",
        f"- created: {report.get('created', '')}",
        f"- datasets: {datasets}",
        f"- corpus: {corpus.get('documents', '?')} documents, {corpus.get('chunks', '?')} chunks",
        f"- k: {report.get('k')}; default configuration: `{default}`",
        f"- unlocatable items (excluded from all metrics): "
        f"{', '.join(report.get('unlocatable', [])) or 'none'}", "",
        "## Configurations", "",
    ]
    out += _md_table(["config"] + [h for _, h in COLUMNS],
                     [[name] + [_fmt(d["overall"].get(k), k) for k, _ in COLUMNS]
                      for name, d in configs.items()])
    out += _md_uncertainty(report)
    out += ["## By language", ""]
    out += _md_table(["config", "lang"] + [_HEADERS[k] for k in LANG_COLUMNS],
                     [[name, lang] + [_fmt_ci(m.get(k), k, d, "by_lang", lang) for k in LANG_COLUMNS]
                      for name, d in configs.items() for lang, m in d["by_lang"].items()])
    if any(d.get("by_doc_kind") for d in configs.values()):
        out += ["## By document type", "",
                "The document holding the item's evidence (notice, law, regulation bundled in "
                "corpus/, or user-added); `none`: unanswerable items.", ""]
        out += _md_table(["config", "type"] + [_HEADERS[k] for k in LANG_COLUMNS],
                         [[name, kind] + [_fmt_ci(m.get(k), k, d, "by_doc_kind", kind)
                                          for k in LANG_COLUMNS]
                          for name, d in configs.items()
                          for kind, m in d.get("by_doc_kind", {}).items()])
    if any(d.get("by_turn") for d in configs.values()):
        out += ["## By turn", "",
                "A single question, or the last question of a conversation: a continuation of the "
                "turn before, a switch to a new topic, or a follow-up of unlabelled kind.", ""]
        out += _md_table(["config", "turn"] + [_HEADERS[k] for k in LANG_COLUMNS],
                         [[name, turn] + [_fmt_ci(m.get(k), k, d, "by_turn", turn) for k in LANG_COLUMNS]
                          for name, d in configs.items()
                          for turn, m in d.get("by_turn", {}).items()])
    if default in configs:
        out += [f"## By category (`{default}`)", ""]
        out += _md_table(["category"] + [h for _, h in COLUMNS],
                         [[cat] + [_fmt(m.get(k), k) for k, _ in COLUMNS]
                          for cat, m in configs[default]["by_category"].items()])
    if DEFAULT_CONFIG in configs:
        out += [f"## Targets (`{DEFAULT_CONFIG}`, test split)", "",
                "Targets apply to the test split; check the datasets above before reading "
                "these as acceptance results.", ""]
        rows = []
        for r in evaluate_targets(report):
            t, m = r["target"], r["margin"]
            value = "n/a" if r["value"] is None else f"{r['value']:.3f}"
            status = "met" if r["met"] else "**missed**"
            by = "" if m is None else (f"by {m:.3f}" if r["met"] else f"short by {-m:.3f}")
            rows.append([t.label or t.metric, value, status, by])
        out += _md_table(["target", "value", "status", "margin"], rows)
    if default in configs:
        fails = [(i, failure_reason(i)) for i in configs[default]["items"]]
        fails = [(i, why) for i, why in fails if why]
        out += [f"## Failures (`{default}`): {len(fails)}", ""]
        rows = [[i["id"], i.get("question", ""), i.get("source", ""), why,
                 ", ".join(i["top_labels"][:3])] for i, why in fails[:MAX_FAILURES]]
        if rows:
            out += _md_table(["id", "question", "expected source", "why", "top labels"], rows)
        if len(fails) > MAX_FAILURES:
            out += [f"… and {len(fails) - MAX_FAILURES} more in report.json", ""]
    return "\n".join(out).rstrip() + "\n"


# --------------------------------------------------------------------------- chart


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Grouped bars: hit@1, hit@5, abstention F1 per configuration, overall and per language,
    with 95 % interval whiskers."""
    import matplotlib

    matplotlib.use("Agg")  # headless: the CLI and the UI server have no display
    import matplotlib.pyplot as plt
    import numpy as np

    configs = list(report["configs"])
    scopes = ["overall", *LANGS]
    metrics = [("hit@1", "hit@1"), ("hit@5", "hit@5"), ("abstention_f1", "abstention F1")]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 4.2), sharey=True)
    x = np.arange(len(configs))
    width = 0.8 / len(scopes)
    for ax, (key, title) in zip(axes, metrics, strict=True):
        for j, scope in enumerate(scopes):
            values = []
            for name in configs:
                d = report["configs"][name]
                m = d["overall"] if scope == "overall" else d["by_lang"].get(scope, {})
                values.append(m.get(key))
            heights = [0.0 if v is None else v for v in values]
            # 95 % intervals as error bars, when the report has them.
            errs = np.zeros((2, len(configs)))
            for i, name in enumerate(configs):
                ci = report["configs"][name].get("ci", {})
                ci = ci.get("overall", {}) if scope == "overall" else ci.get("by_lang", {}).get(scope, {})
                lo, hi = ci.get(key) or (None, None)
                if lo is not None and hi is not None and values[i] is not None:
                    errs[:, i] = (max(0.0, values[i] - lo), max(0.0, hi - values[i]))
            bars = ax.bar(x + (j - (len(scopes) - 1) / 2) * width, heights, width, label=scope,
                          yerr=errs if errs.any() else None, capsize=2, error_kw={"lw": 0.8})
            for bar, v in zip(bars, values, strict=True):
                if v is None:  # undefined, not zero: say so on the chart
                    ax.text(bar.get_x() + bar.get_width() / 2, 0.02, "n/a", ha="center",
                            rotation=90, fontsize=7)
        ax.set_title(title)
        ax.set_xticks(x, configs, rotation=30, ha="right")
        ax.set_ylim(0, 1.18)  # headroom for the legend above full bars
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(loc="upper center", ncol=len(scopes), fontsize=8)
    fig.suptitle(f"QA benchmark (k={report.get('k')})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _atomic_write(path: Path, text: str) -> None:
    # The UI may read report.json while a new run writes it.
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(report: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write report.md, report.json and chart.png into out_dir; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out_dir / "report.md", "json": out_dir / "report.json",
             "chart": out_dir / "chart.png"}
    _atomic_write(paths["json"], json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    _atomic_write(paths["markdown"], render_markdown(report))
    tmp_png = out_dir / f"chart.{os.getpid()}.tmp.png"
    write_chart(report, tmp_png)
    os.replace(tmp_png, paths["chart"])
    log.info("benchmark reports written to %s", out_dir)
    return paths


def latest_report_dir() -> Path:
    """eval/reports/ of the repository (where the CLI writes and the UI reads)."""
    root = REPO_ROOT
    if not (root / "pyproject.toml").exists():
        root = Path.cwd()  # installed as a wheel: reports live next to the working dir
    return root / "eval" / "reports"
