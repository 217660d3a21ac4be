"""Uncertainty of the benchmark: bootstrap intervals and paired significance tests.

Every headline metric of `rag.bench.evaluate.summarize` is a ratio of two sums over
items (hit@1 = hits / answerable items, citation precision = good citations /
citations, abstention F1 = 2·tp / (2·tp + fp + fn), …). `contributions` turns
per-item records into those numerator/denominator columns, so one resample of
items is a weighted sum — the statistics themselves are scipy's:

- 95 % intervals: `scipy.stats.bootstrap`, percentile method, 2000 resamples of
  items with replacement, seed `SEED`. Resamples in which a metric is undefined
  (no abstentions at all, say) are left out of that metric's interval.
- paired tests: `scipy.stats.permutation_test` with `permutation_type="samples"`
  — a randomisation test that swaps the two systems' results item by item
  (9999 resamples, seed `SEED`, two-sided). Items are matched by id.

The same functions serve `rag eval compare` (deltas of two runs with paired
bootstrap intervals) and the report's comparison with the default configuration.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

SEED = 20261128
BOOTSTRAP_RESAMPLES = 2000
PERMUTATION_RESAMPLES = 9999
CONFIDENCE = 0.95
ALPHA = 0.05

# The figures that get intervals and tests (latency and counts do not).
LANGS = ("zh", "en")
MRR_CUTOFF = 10  # MRR@10
# How a multi-turn item's last question relates to the turns before (its `turn_kind`).
TURN_KINDS = ("continuation", "topic-switch")

METRICS = ("hit@1", "hit@3", "hit@5", "mrr@10", "citation_precision", "citation_recall",
           "keyword_recall", "abstention_precision", "abstention_recall", "abstention_f1")

METHOD = {
    "interval": f"{int(CONFIDENCE * 100)} % percentile bootstrap over items "
                f"(scipy.stats.bootstrap, {BOOTSTRAP_RESAMPLES} resamples, seed {SEED})",
    "test": f"paired randomisation test, items swapped between the two systems "
            f"(scipy.stats.permutation_test, {PERMUTATION_RESAMPLES} resamples, seed {SEED}, "
            "two-sided)",
}


def contributions(records: Sequence[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(numerators, denominators), each metrics × items: metric = num.sum() / den.sum()."""
    num = np.zeros((len(METRICS), len(records)))
    den = np.zeros((len(METRICS), len(records)))
    for j, r in enumerate(records):
        ans = bool(r["answerable"])
        rank = r.get("hit_rank")
        did = bool(r.get("abstained"))
        if ans:
            for i, k in enumerate((1, 3, 5)):
                num[i, j] = 1.0 if rank is not None and rank <= k else 0.0
                den[i, j] = 1.0
            num[3, j] = 1.0 / rank if rank is not None and rank <= MRR_CUTOFF else 0.0
            den[3, j] = 1.0
            if not did and r.get("n_cited", 0) > 0:
                num[4, j], den[4, j] = r.get("n_cited_ok", 0), r["n_cited"]
            num[5, j], den[5, j] = (1.0 if r.get("cited_ok") else 0.0), 1.0
            num[6, j], den[6, j] = r.get("n_keywords_found", 0), r.get("n_keywords", 0)
        tp, fp, fn = (not ans) and did, ans and did, (not ans) and not did
        num[7, j], den[7, j] = tp, tp + fp
        num[8, j], den[8, j] = tp, tp + fn
        num[9, j], den[9, j] = 2 * tp, 2 * tp + fp + fn
    return num, den


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return num.sum(axis=-1) / den.sum(axis=-1)


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def bootstrap_intervals(records: Sequence[dict[str, Any]]) -> dict[str, list[float | None]]:
    """metric → [low, high] (95 %); [None, None] when the metric is undefined."""
    from scipy.stats import bootstrap

    if len(records) < 2:  # one item has no spread to resample
        return {m: [None, None] for m in METRICS}
    num, den = contributions(records)
    point = _ratio(num, den)

    def statistic(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return _ratio(num[..., idx], den[..., idx])

    with warnings.catch_warnings():
        # One item, or a degenerate resample, makes scipy warn; the interval is still reported.
        warnings.simplefilter("ignore")
        res = bootstrap((np.arange(len(records)),), statistic, vectorized=True,
                        n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                        method="percentile", random_state=np.random.default_rng(SEED))
    low, high = np.atleast_1d(res.confidence_interval.low), np.atleast_1d(res.confidence_interval.high)
    tail = (1 - CONFIDENCE) / 2 * 100
    out: dict[str, list[float | None]] = {}
    for i, m in enumerate(METRICS):
        if not math.isfinite(point[i]):
            out[m] = [None, None]
            continue
        lo, hi = low[i], high[i]
        if not (math.isfinite(lo) and math.isfinite(hi)):
            dist = res.bootstrap_distribution[i]
            dist = dist[np.isfinite(dist)]
            lo, hi = (np.percentile(dist, [tail, 100 - tail]) if dist.size else (math.nan, math.nan))
        out[m] = [_finite(lo), _finite(hi)]
    return out


def _paired(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> tuple[
        list[dict[str, Any]], list[dict[str, Any]]]:
    by_id = {r["id"]: r for r in b}
    pairs = [(r, by_id[r["id"]]) for r in a if r["id"] in by_id]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def paired_comparison(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per metric: value of A and B, delta B − A with a paired 95 % interval, p-value.

    Only items present in both runs (by id) are compared.
    """
    from scipy.stats import bootstrap

    ra, rb = _paired(a, b)
    n = len(ra)
    result: dict[str, Any] = {"n": n, "metrics": {}}
    if n < 2:
        return result
    na, da = contributions(ra)
    nb, db = contributions(rb)
    va, vb = _ratio(na, da), _ratio(nb, db)

    def delta(idx: np.ndarray, axis: int = -1) -> np.ndarray:
        return _ratio(nb[..., idx], db[..., idx]) - _ratio(na[..., idx], da[..., idx])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        boot = bootstrap((np.arange(n),), delta, vectorized=True,
                         n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=CONFIDENCE,
                         method="percentile", random_state=np.random.default_rng(SEED))
    p_values = _permutation_p(np.concatenate([na, nb], axis=1), np.concatenate([da, db], axis=1), n)
    tail = (1 - CONFIDENCE) / 2 * 100
    for i, m in enumerate(METRICS):
        d = vb[i] - va[i]
        entry: dict[str, Any] = {"a": _finite(va[i]), "b": _finite(vb[i]), "delta": _finite(d),
                                 "ci": [None, None], "p": None}
        if math.isfinite(d):
            dist = boot.bootstrap_distribution[i]
            dist = dist[np.isfinite(dist)]
            if dist.size:
                lo, hi = np.percentile(dist, [tail, 100 - tail])
                entry["ci"] = [_finite(lo), _finite(hi)]
            entry["p"] = _finite(p_values[i])
        result["metrics"][m] = entry
    return result


def _permutation_p(num: np.ndarray, den: np.ndarray, n: int) -> np.ndarray:
    """Two-sided p per metric; columns 0..n-1 are system A's items, n..2n-1 B's, paired."""
    from scipy.stats import permutation_test

    def statistic(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        d = _ratio(num[:, y], den[:, y]) - _ratio(num[:, x], den[:, x])
        # A swap that leaves one side without a denominator counts as extreme:
        # the test errs towards "not significant".
        return np.moveaxis(np.where(np.isfinite(d), d, np.inf), 0, -1)  # metrics last

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = permutation_test((np.arange(n), np.arange(n, 2 * n)), statistic,
                               permutation_type="samples", vectorized=True,
                               n_resamples=PERMUTATION_RESAMPLES, alternative="two-sided",
                               random_state=np.random.default_rng(SEED))
    p = np.minimum(1.0, np.asarray(res.pvalue, dtype=float))
    # Identical per item: every swap gives the same statistic, the difference is nil.
    same = np.all(num[:, :n] == num[:, n:], axis=1) & np.all(den[:, :n] == den[:, n:], axis=1)
    return np.where(same, 1.0, p)


def turn_groups(records: Sequence[dict[str, Any]], of: Callable[[list[dict[str, Any]]], Any]) -> dict[str, Any]:
    """`of` each turn kind present, or {} when no item has a history."""
    turns = [t for t in ("single", "follow-up", *TURN_KINDS) if any(r.get("turn") == t for r in records)]
    if turns in ([], ["single"]):
        return {}
    return {t: of([r for r in records if r.get("turn") == t]) for t in turns}


def scopes(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """The record subsets the report shows: overall, by language, by document kind, by turn."""
    from rag.bench.judgments import kinds_in

    return {
        "overall": {"": list(records)},
        "by_lang": {lang: [r for r in records if r["lang"] == lang]
                    for lang in LANGS if any(r["lang"] == lang for r in records)},
        "by_doc_kind": {k: [r for r in records if r.get("doc_kind") == k]
                        for k in kinds_in(records) if "doc_kind" in records[0]} if records else {},
        "by_turn": turn_groups(records, list),
    }


def add_uncertainty(report: dict[str, Any]) -> dict[str, Any]:
    """Add intervals to every configuration and the paired tests against the default.

    Writes `ci` into each configuration (same shape as overall / by_lang /
    by_doc_kind, values [low, high]) and `significance` and `stats_method` at
    the top level. Idempotent: safe to call again after adding a system.
    """
    configs = report.get("configs", {})
    for data in configs.values():
        records = data.get("items", [])
        ci: dict[str, Any] = {}
        for scope, groups in scopes(records).items():
            if scope == "overall":
                ci["overall"] = bootstrap_intervals(groups[""])
            else:
                ci[scope] = {name: bootstrap_intervals(rs) for name, rs in groups.items()}
        data["ci"] = ci
    base = report.get("default_config") or ""
    significance: dict[str, Any] = {"baseline": base, "configs": {}}
    if base in configs:
        for name, data in configs.items():
            if name != base:
                significance["configs"][name] = paired_comparison(
                    configs[base].get("items", []), data.get("items", []))
    report["significance"] = significance
    report["stats_method"] = dict(METHOD, alpha=ALPHA)
    return report


def fmt_ci(ci: Sequence[float | None] | None) -> str:
    if not ci or ci[0] is None or ci[1] is None:
        return ""
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fmt_p(p: float | None) -> str:
    if p is None:
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"
