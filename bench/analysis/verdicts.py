"""Verdicts on claims: the statistics behind `bench.analysis.claims`, pure functions over a runs table.

The runs table has one row per finished child run: `run_id`, `task`, `profile`, `seed`, `setting`,
`series_value`, every metric under its own name (`ncc_dist_mean`, `memorised/frac`, ...) and every
config parameter under its dotted key (`data.blob_size`, `model.width`, ...; values as logged, often
strings: use `num`). Seeds are the statistical unit throughout: rows of one seed (population settings,
series points pooled by a rule) are averaged first, and intervals are 95% t intervals over seeds.

Verdict words: `reproduced` (bench's interval lies on the side the claim asserts), `opposite` (it lies on
the other side), `not reproduced` (it contains no effect and rules out one of the claim's size),
`inconclusive` (too few seeds or x values, or an interval too wide to tell), `no runs`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

VERDICTS = ("reproduced", "not reproduced", "opposite", "inconclusive", "no runs")
MIN_SEEDS = 3  # fewer seeds give no usable interval: inconclusive


@dataclass
class Verdict:
    """One claim judged on bench's runs.

    `bench`: bench's headline number in words (mean or difference with its 95% CI over seeds);
    `rows`: the detail behind it, one dict per (task, group, metric) with keys task, group, metric,
    verdict, bench (trend rows also profile, n and the trend statistics); `run_ids`: the child runs used; `note`: fallbacks, left-out runs, disagreements.
    """

    claim: str
    verdict: str
    rule: str
    paper: str
    bench: str = "–"
    value: float = float("nan")
    lo: float = float("nan")
    hi: float = float("nan")
    n_seeds: int = 0
    run_ids: tuple[str, ...] = ()
    note: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)
    profile: str = ""
    head: dict[str, Any] = field(default_factory=dict)  # the detail row behind the headline, if one


def num(df: pd.DataFrame, col: str) -> pd.Series:
    """Column `col` as floats (NaN where absent or not a number)."""
    if col not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def has(df: pd.DataFrame, col: str) -> bool:
    """Whether `col` exists and holds at least one number."""
    return col in df and bool(num(df, col).notna().any())


def judge(asserted_lo: float, asserted_hi: float, n_seeds: int, min_effect: float) -> str:
    """The verdict from a 95% interval of the asserted effect (positive = the claim's direction).

    reproduced if lo > 0; opposite if hi < 0; not reproduced if the interval contains 0 and hi is below
    `min_effect` (an effect of the claim's size is ruled out); otherwise, or with fewer than MIN_SEEDS
    seeds or no interval, inconclusive.
    """
    if n_seeds < MIN_SEEDS or not (np.isfinite(asserted_lo) and np.isfinite(asserted_hi)):
        return "inconclusive"
    if asserted_lo > 0:
        return "reproduced"
    if asserted_hi < 0:
        return "opposite"
    return "not reproduced" if asserted_hi < min_effect else "inconclusive"


def metric_range(metric: str) -> tuple[float, float] | None:
    """The range a metric lies in, where bench knows one: fractions, membership AUCs and TPRs, and
    accuracies in [0, 1]; None for the rest (distances, DSSIM, slopes and differences)."""
    if metric.startswith(("memorised/", "membership/")) or metric.endswith(("/frac", "accuracy")):
        return (0.0, 1.0)
    return None


def _at_bound(y: str, values: np.ndarray, sign: int) -> str:
    """'' or why a bounded metric (`metric_range`: a fraction, an AUC or an accuracy, in [0, 1]) cannot
    move the asserted way: every per-seed value already at 1 for an asserted rise, or at 0 for an asserted
    fall."""
    if metric_range(y) is None:
        return ""
    v = values[np.isfinite(values)]
    if len(v) and sign > 0 and v.min() >= 1.0 - 1e-12:
        return "at its ceiling 1 everywhere: a rise cannot show"
    if len(v) and sign < 0 and v.max() <= 1e-12:
        return "at its floor 0 everywhere: a fall cannot show"
    return ""


def _oriented(lo: float, hi: float, sign: int) -> tuple[float, float]:
    a, b = sign * lo, sign * hi
    return (min(a, b), max(a, b))


def trend(
    rows: pd.DataFrame, x: str, y: str, sign: int, min_effect: float, label: str = ""
) -> dict[str, Any]:
    """Trend of metric `y` against column `x` (seeds as units, `bench.analysis.trends.seed_trend`).

    `sign`: +1 if the claim says y rises with x, -1 if it falls; `min_effect`: the smallest change (largest
    x minus smallest x) of the claim's size, as a fraction of the level at the smallest x. Returns the
    trend's statistics plus `verdict`, `level`, `rel` (diff / |level|), `bench` (the number in words,
    naming x as `label`), `xs` and `means` (the x values and the mean over seeds at each).
    """
    from bench.analysis.trends import per_seed, seed_trend

    t = seed_trend(rows, x, y)
    grid = per_seed(rows, x, y)
    level = float(np.nanmean(grid.iloc[:, 0])) if grid.shape[1] else float("nan")
    rel = t["diff"] / abs(level) if level else float("nan")
    lo, hi = _oriented(t["diff_lo"], t["diff_hi"], sign)
    n_seeds = int(t["n_seeds"]) if np.isfinite(t["n_seeds"]) else 0
    word = "inconclusive" if t["n_points"] < 2 else judge(lo, hi, n_seeds, min_effect * abs(level))
    ceiling = _at_bound(y, grid.to_numpy(dtype=float), sign)
    if ceiling:
        word = "inconclusive"  # a fraction or AUC pinned at the bound the claim moves it past
    xs = grid.columns.to_numpy(dtype=float) if grid.shape[1] else np.array([np.nan])
    words = (
        f"{y}: {_g(level)} at {label or x}={_g(xs[0])} → Δ {_g(t['diff'], '+')} [{_g(t['diff_lo'], '+')}, "
        f"{_g(t['diff_hi'], '+')}] ({_pct(rel)}) at {_g(xs[-1])}; ρ {_g(t['spearman_rho'], '+')}; "
        f"{n_seeds} seeds × {int(t['n_points'])} x" + (f" ({ceiling})" if ceiling else "")
    )
    means = np.nanmean(grid.to_numpy(dtype=float), axis=0) if grid.shape[1] else np.array([])
    found = {"verdict": word, "level": level, "rel": rel, "bench": words, "n_seeds": n_seeds}
    return t | found | {"xs": xs.tolist(), "means": means.tolist()}


def seed_means(rows: pd.DataFrame, values: pd.Series) -> pd.Series:
    """Per-seed means of a per-row series aligned with `rows` (NaN rows dropped), indexed by seed: the
    units every interval over seeds is drawn on (rows of one seed averaged first)."""
    t = pd.DataFrame({"seed": rows["seed"].to_numpy(), "v": values.to_numpy(dtype=float)}).dropna()
    return t.groupby("seed")["v"].mean()


def seed_values(rows: pd.DataFrame, values: pd.Series) -> np.ndarray:
    """Per-seed means (k,) of a per-row series aligned with `rows` (NaN rows dropped; `seed_means`)."""
    return seed_means(rows, values).to_numpy(dtype=float)


def mean_effect(values: np.ndarray, sign: int, min_effect: float, what: str) -> dict[str, Any]:
    """Verdict on per-seed values (k,) of an effect whose claimed sign is `sign` (0 = no effect)."""
    from bench.analysis.trends import mean_ci

    mean, lo, hi = mean_ci(values)
    a_lo, a_hi = _oriented(lo, hi, sign)
    n = int(np.isfinite(values).sum())
    word = judge(a_lo, a_hi, n, min_effect)
    text = f"{what}: {_g(mean, '+')} [{_g(lo, '+')}, {_g(hi, '+')}], {n} seeds"
    return {"verdict": word, "value": mean, "lo": lo, "hi": hi, "n_seeds": n, "bench": text}


def two_groups(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """mean(a) - mean(b) of two sets of independent units and its 95% Welch t interval (scipy's
    `ttest_ind(equal_var=False)`; NaN interval when a set has fewer than 2 units)."""
    from scipy import stats

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return (float("nan"),) * 3
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return diff, float("nan"), float("nan")
    if a.var() + b.var() == 0:  # scipy's interval is NaN here; no spread, no uncertainty
        return diff, diff, diff
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    return diff, float(ci.low), float(ci.high)


def combine(words: list[str]) -> str:
    """One verdict from several that must all hold: any opposite -> opposite, then not reproduced,
    then inconclusive; reproduced only if all are."""
    if not words:
        return "inconclusive"
    for w in ("opposite", "not reproduced", "inconclusive"):
        if w in words:
            return w
    return "reproduced"


def disagreement(rows: list[dict[str, Any]], headline: str) -> str:
    """A note naming the detail rows whose definite verdict differs from the headline's."""
    definite = ("reproduced", "not reproduced", "opposite")
    odd = [r for r in rows if r["verdict"] in definite and r["verdict"] != headline]
    if not odd:
        return ""
    parts = [
        f"{r['metric']}{' ' + r['group'] if r.get('group') else ''} ({r['task']}): {r['verdict']}"
        for r in odd
    ]
    return "metrics disagree: " + "; ".join(parts)


def _g(v: float, sign: str = "") -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:{sign}.3g}"


def _pct(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:+.0%}"
