"""What a series says about the claims it tests, in words: the end of `bench run`.

`findings(task, runs)` judges every claim that names the task (`bench.analysis.claims`) with the claim's
own rule on the runs just made (`bench.tracking.load_runs` of the parent: the numbers `bench report` gives
for the same runs) and says each trend of the claim's headline group in one line, e.g.

    error (ncc_dist) rises with blob size: +0.149 [+0.037, +0.261] from 1 to 100 pixels, 5 seeds: the
    opposite of the paper's fig 5 (blob-error-falls-rect)

A claim the runs do not test (no run of its profile's design, or one value of its axis) gives no line.
Pure: a runs table in, lines out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.claims import CLAIMS, PAPER, Claim
from bench.analysis.verdicts import MIN_SEEDS, Verdict


def findings(task: str, runs: pd.DataFrame, primary: str = "", axis_label: str = "") -> list[str]:
    """One line per trend (or effect) that the claims naming `task` judge on `runs`, headline first.

    `primary`: the task's primary metric (named "error (<metric>)"); `axis_label`: the task's series
    label, e.g. "blob size (pixels)", for the trend axis the task declares (a claim on another axis, such
    as model.width, names its config key)."""
    from bench.analysis.judges import declared_axis

    lines: list[str] = []
    shown: set[tuple[str, str, str, str]] = set()  # (task, profile, group, metric) already said
    for claim in (c for c in CLAIMS if task in c.tasks):
        v = claim.evaluate(runs)
        rows = _headline_group(v, task)
        if v.verdict == "no runs" or not rows:
            continue
        axis = declared_axis(claim.tasks)
        # a control or a stand-in (blobs-rect-shuffled, digits-pair) is judged by the claim's rule too
        cid = claim.id if task == claim.tasks[0] else f"{claim.id}, on {task} in place of {claim.tasks[0]}"
        for r in rows:
            key = (r["task"], str(r.get("profile", "")), str(r.get("group", "")), r["metric"])
            if key in shown:  # another claim on the same trend (blob-trend-linear): its own test only
                if r is rows[0]:
                    extra = v.bench.rsplit("; ", 1)[-1] if "; " in v.bench else v.bench
                    said = f"the same trend, where the claim is that it {claim.direction} ({extra})"
                    lines.append(f"{said}: {_relation(claim, v.verdict, v)} ({cid})")
                continue
            shown.add(key)
            x = r.get("x") or axis or ""
            label = axis_label if x == axis and axis_label else x
            lines.append(f"{_sentence(r, primary, label)}: {_relation(claim, r['verdict'], v, r)} ({cid})")
    return lines


def _headline_group(v: Verdict, task: str) -> list[dict[str, Any]]:
    """The detail rows of `task` in the group of the verdict's headline (same profile and group for a
    trend), the headline's own metric first; for effect claims, the task's rows."""
    rows = [r for r in v.rows if r.get("task") == task]
    if v.head:
        at = (v.head.get("profile"), v.head.get("group"))
        rows = [r for r in rows if (r.get("profile"), r.get("group")) == at]
        rows.sort(key=lambda r: r["metric"] != v.head.get("metric"))
    return rows


def _sentence(r: dict[str, Any], primary: str, axis_label: str) -> str:
    """'error (ncc_dist) rises with blob size: +0.149 [+0.037, +0.261] from 1 to 100 pixels, 5 seeds' for a
    trend row; the row's own words ('what: mean [lo, hi], k seeds') for an effect."""
    if "diff" not in r:
        return str(r["bench"])
    metric = str(r["metric"])
    name = metric.removesuffix("_mean")
    name = f"error ({name})" if metric == primary else name
    what, _, unit = axis_label.partition(" (")
    unit = unit.rstrip(")")
    diff, lo, hi = (float(r[k]) for k in ("diff", "diff_lo", "diff_hi"))
    if np.isfinite(lo) and np.isfinite(hi):
        move = "rises" if lo > 0 else "falls" if hi < 0 else "shows no clear change"
        ci = f" [{lo:+.3g}, {hi:+.3g}]"
    else:  # one seed: no interval
        move, ci = ("rises" if diff > 0 else "falls" if diff < 0 else "does not change"), ""
    xs = [x for x in r.get("xs", []) if np.isfinite(x)]
    span = f" from {xs[0]:g} to {xs[-1]:g}{' ' + unit if unit else ''}" if len(xs) >= 2 else ""
    n = int(r.get("n_seeds") or 0)
    return f"{name} {move} with {what or 'the axis'}: {diff:+.3g}{ci}{span}, {n} seed{'s' if n != 1 else ''}"


def _source(claim: Claim) -> str:
    """'the paper's fig 5' for the paper's claims; the first author and year otherwise."""
    if claim.source.startswith(PAPER):
        return "the paper's " + claim.source.removeprefix(PAPER).lstrip(", ")
    return claim.source.split(" (")[0].split(",")[0]


def _relation(claim: Claim, word: str, v: Verdict, r: dict[str, Any] | None = None) -> str:
    """The verdict word as what it says about the claim's source."""
    src = _source(claim)
    if word == "reproduced":
        return f"as {src} says"
    if word == "opposite":
        return f"the opposite of {src}"
    if word == "not reproduced":
        return f"no effect of the size {src} asserts"
    n = int((r or {}).get("n_seeds") or v.n_seeds or 0)
    if n < MIN_SEEDS:
        return f"inconclusive: {n} seed{'s' if n != 1 else ''}, a verdict needs {MIN_SEEDS} (--seeds {MIN_SEEDS})"
    said = str((r or {}).get("bench", ""))
    if "at its ceiling" in said or "at its floor" in said:
        return "inconclusive: the metric is at its bound"
    return "inconclusive: the interval is too wide to tell"
