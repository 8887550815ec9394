"""Figures of `bench report`, returned as PNG bytes (inlined in report.html, saved beside report.md).

Pure functions of the runs table (see `bench.analysis.verdicts`) and of curves already read from the store.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.analysis.verdicts import has, metric_range, num  # noqa: E402

# (steps (T,), values (T,), label) of one child run's monitor curve
Curve = tuple[np.ndarray, np.ndarray, str]


def png(fig: plt.Figure) -> bytes:
    """The figure as PNG bytes (and closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def per_x_ci(rows: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """xs (k,), and per x the mean over seeds of y with its 95% t interval (lo, hi) (k,) each."""
    from bench.analysis.trends import mean_ci, per_seed

    grid = per_seed(rows.assign(_x=num(rows, x)), "_x", y)
    xs = grid.columns.to_numpy(dtype=float)
    within = metric_range(y)
    stats = np.array([mean_ci(grid[c].to_numpy(dtype=float), within) for c in grid.columns]).reshape(-1, 3)
    return xs, stats[:, 0], stats[:, 1], stats[:, 2]


def blob_figure(runs: pd.DataFrame, tasks: Sequence[str], metrics: Sequence[tuple[str, int]]) -> bytes | None:
    """Each metric (rows) against blob size, per n per class (columns): the paper's design (tasks[0])
    beside its shuffled control (tasks[1]), mean over seeds with 95% CI. None without runs."""
    sub = runs[runs["task"].isin(tasks)] if "task" in runs else runs.iloc[0:0]
    metrics = [(m, s) for m, s in metrics if has(sub, m)]
    if sub.empty or not metrics or not has(sub, "data.blob_size"):
        return None
    n_col = num(sub, "data.n_per_class").fillna(-1)
    ns = sorted(n_col.unique())
    fig, axes = plt.subplots(
        len(metrics), len(ns), figsize=(3.3 * len(ns), 2.3 * len(metrics)), squeeze=False
    )
    for i, (metric, sign) in enumerate(metrics):
        for k, n in enumerate(ns):
            ax = axes[i, k]
            for task, color in zip(tasks, ("C0", "C1"), strict=False):
                rows = sub[(sub["task"] == task) & (n_col == n)]
                if rows.empty or not has(rows, metric):
                    continue
                xs, mean, lo, hi = per_x_ci(rows, "data.blob_size", metric)
                ax.plot(xs, mean, "o-", color=color, label=task, ms=3)
                ax.fill_between(xs, lo, hi, color=color, alpha=0.2)
            ax.set_xscale("log")
            better = "lower" if sign < 0 else "higher"
            ax.set_title(f"n={n:g}: {metric} ({better} = better)" if n >= 0 else metric, fontsize=8)
            ax.tick_params(labelsize=7)
            if i == len(metrics) - 1:
                ax.set_xlabel("blob size (pixels)", fontsize=8)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    return png(fig)


def steps_figure(curves: dict[str, list[Curve]], key: str) -> bytes | None:
    """Quality against attack steps, one panel per point (e.g. 'n=10, blob 25'), one line per seed;
    the curve of a setting that stopped early ends where it stopped. None without curves."""
    panels = {k: v for k, v in curves.items() if v}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 2.6), squeeze=False)
    for ax, (title, lines) in zip(axes[0], panels.items(), strict=True):
        for steps, values, label in lines:
            ax.plot(steps, values, lw=1, label=label)
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("attack step", fontsize=8)
        ax.set_ylabel(key, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    fig.tight_layout()
    return png(fig)


VERDICT_COLORS = {"reproduced": "#070", "opposite": "#b00", "not reproduced": "#b60", "inconclusive": "#666"}


def effects_figure(rows: Sequence[dict], title: str, max_rows: int = 10) -> bytes | None:
    """A claim's detail rows as intervals, one panel per metric: each row's effect (a trend's change from
    the smallest to the largest x, `diff`, or an effect's mean, `value`) with its 95% CI over seeds, a line
    at 0, coloured by the row's verdict. At most `max_rows` rows a panel. None without a finite effect."""
    panels: dict[str, list[tuple[str, float, float, float, str]]] = {}
    for r in rows:
        key = ("diff", "diff_lo", "diff_hi") if "diff" in r else ("value", "lo", "hi")
        est, lo, hi = (float(r.get(k, np.nan)) for k in key)
        if not np.isfinite(est):
            continue
        label = " ".join(str(p) for p in (r.get("task", ""), r.get("group", "")) if p)
        line = (label, est, lo, hi, str(r.get("verdict", "")))
        panels.setdefault(str(r.get("metric", "")), []).append(line)
    panels = {m: v[:max_rows] for m, v in list(panels.items())[:6]}
    if not panels:
        return None
    heights = [0.5 + 0.28 * len(v) for v in panels.values()]
    size = (5.2, sum(heights) + 0.4)
    fig, axes = plt.subplots(len(panels), 1, figsize=size, squeeze=False, height_ratios=heights)
    for ax, (metric, lines) in zip(axes[:, 0], panels.items(), strict=True):
        for i, (_, est, lo, hi, word) in enumerate(lines):
            color = VERDICT_COLORS.get(word, "#666")
            if np.isfinite(lo) and np.isfinite(hi):
                ax.plot([lo, hi], [i, i], color=color, lw=2)
            ax.plot([est], [i], "o", color=color, ms=4)
        ax.axvline(0, color="k", lw=0.6)
        ax.set_yticks(range(len(lines)), [ln[0] or metric for ln in lines], fontsize=7)
        ax.set_ylim(len(lines) - 0.5, -0.5)
        ax.set_title(metric, fontsize=8, loc="left")
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    return png(fig)
