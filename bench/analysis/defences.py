"""Defences against reconstruction (`--profile defences`, bench.defences): tables, figure and verdicts.

Pure functions of a runs table: a series table (`series.csv`, where the defence keys are `grid.train.*`
columns) or `bench report`'s runs table (keys as params `train.*`). Seeds are the unit: per seed, rows of a
cell are averaged, then mean and 95% t interval over seeds (bench.analysis.trends.mean_ci).

A run's **level** is its privacy: `0.5` ... `8` (DP gradient descent at that target epsilon), `∞` (DP
gradient descent without noise: clipping only) or `no DP` (plain training). Its **cell** is the other
defences: the weight decay and the stopping epochs (`train.max_epochs` of plain runs / `train.dp_epochs` of
DP runs). No run is left out for an unconverged classifier: under DP, not converging is the defence at work.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.verdicts import Verdict, metric_range, num, seed_means, seed_values

NO_DP = "no DP"
PROFILE = "defences"
# (column, label, direction that means "more leakage" or "better model")
METRICS = (
    ("test_accuracy", "test accuracy", 1),
    ("memorised/frac", "memorised/frac", 1),
    ("membership/auc", "membership AUC", 1),
    ("gain/heldout/ncc_dist", "gain over held-out (ncc_dist)", 1),
)
LARGE_COST = 0.05  # an accuracy loss of 5 points (absolute) counts as "a large loss of accuracy"


def _param(df: pd.DataFrame, key: str) -> pd.Series:
    """Config key `key` from its param column, or the series table's `grid.<key>` column (NaN if neither)."""
    for col in (key, f"grid.{key}"):
        if col in df:
            return df[col]
    return pd.Series(np.nan, index=df.index)


def is_defence_table(df: pd.DataFrame) -> bool:
    """Whether the table holds defence-grid runs (the DP key varies per run)."""
    return "grid.train.dp" in df or ("profile" in df and bool((df["profile"] == PROFILE).any()))


def cells(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with `_level` (str), `_order` (sort key of the level), `_wd` (float), `_stop` (str) and
    `_steps` (the attack's budget, `attack.steps`; -1 where not logged, as in a series table)."""
    dp = _param(df, "train.dp").astype(str).str.lower().isin(("true", "1", "1.0"))
    eps = pd.to_numeric(_param(df, "train.dp_epsilon"), errors="coerce").astype(float)
    level = [NO_DP if not d else ("∞" if math.isinf(e) else f"{e:g}") for d, e in zip(dp, eps, strict=True)]
    order = [math.inf if not d else (1e300 if math.isinf(e) else e) for d, e in zip(dp, eps, strict=True)]
    max_ep = pd.to_numeric(_param(df, "train.max_epochs"), errors="coerce")
    dp_ep = pd.to_numeric(_param(df, "train.dp_epochs"), errors="coerce")
    stop = [f"max/dp epochs {a:g}/{b:g}" for a, b in zip(max_ep, dp_ep, strict=True)]
    wd = pd.to_numeric(_param(df, "train.weight_decay"), errors="coerce").fillna(0.0)
    steps = pd.to_numeric(_param(df, "attack.steps"), errors="coerce").fillna(-1).astype(int)
    return df.assign(
        _level=level, _order=order, _wd=wd.to_numpy(float), _stop=stop, _dp=dp.to_numpy(), _steps=steps
    )


def _levels(c: pd.DataFrame) -> list[str]:
    return list(c.drop_duplicates("_level").sort_values("_order")["_level"])


def _cell_keys(c: pd.DataFrame) -> list[tuple[float, str]]:
    """(weight decay, stop) cells, the least defended first: smallest decay, then the longest training."""
    pairs = c.assign(_max=pd.to_numeric(_param(c, "train.max_epochs"), errors="coerce"))
    pairs = pairs.groupby(["_wd", "_stop"], sort=False)["_max"].max().reset_index()
    pairs = pairs.sort_values(["_wd", "_max"], ascending=[True, False])
    return list(zip(pairs["_wd"], pairs["_stop"], strict=True))


def seed_ci(rows: pd.DataFrame, metric: str) -> tuple[float, float, float, int]:
    """Mean over seeds of a metric (rows of one seed averaged first), its 95% CI, and the seed count."""
    from bench.analysis.trends import mean_ci

    per = seed_values(rows, num(rows, metric))
    mean, lo, hi = mean_ci(per, metric_range(metric))
    return mean, lo, hi, len(per)


def main_budget(c: pd.DataFrame) -> int:
    """The most common attack budget (`_steps` of `cells`; the smallest on a tie): the budget a claim is
    judged at, a longer one being its budget check."""
    return int(c["_steps"].mode().min()) if len(c) else -1


def defence_table(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, attack budget, weight decay, stop, level): n seeds, mean [lo, hi] of every metric
    of `METRICS`, the achieved epsilon (`dp/epsilon`, Opacus) and the share of converged classifiers. A
    budget check's longer attacks get rows of their own (`attack steps`; -1 where not logged): averaging
    them with the main budget's would describe neither attack."""
    c = cells(df)
    if "task" not in c:
        c = c.assign(task="")
    out = []
    for (task, steps), t in c.groupby(["task", "_steps"], sort=True):
        for wd, stop in _cell_keys(t):
            cell = t[(t["_wd"] == wd) & (t["_stop"] == stop)]
            for level in _levels(cell):
                rows = cell[cell["_level"] == level]
                row: dict[str, Any] = {"task": task, "attack steps": int(steps), "weight_decay": wd}
                row |= {"stop": stop, "epsilon": level}
                for metric, _, _ in METRICS:
                    m, lo, hi, k = seed_ci(rows, metric)
                    row |= {metric: m, f"{metric} lo": lo, f"{metric} hi": hi}
                    row["seeds"] = max(row.get("seeds", 0), k)
                eps = num(rows, "dp/epsilon")
                row["achieved epsilon"] = float(eps.mean()) if eps.notna().any() else float("nan")
                row["converged"] = float(num(rows, "train/converged").mean())
                out.append(row)
    return pd.DataFrame(out)


def figure(df: pd.DataFrame, title: str = "") -> Any:
    """Test accuracy and reconstruction (METRICS, one panel each) against the privacy level, one line per
    (weight decay, stop) cell, mean over seeds with 95% CI bars, at the main attack budget (`main_budget`;
    the title names it). A matplotlib Figure (None without rows)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = cells(df)
    budget = main_budget(c)
    keep = (c["_steps"] == budget).to_numpy()
    df, c = df[keep], c[keep]
    tab = defence_table(df)
    if tab.empty:
        return None
    levels = _levels(c)
    pos = {lv: i for i, lv in enumerate(levels)}
    fig, axes = plt.subplots(1, len(METRICS), figsize=(3.6 * len(METRICS), 3.0), squeeze=False)
    groups = list(tab.groupby(["weight_decay", "stop"], sort=False))
    for k, ((wd, stop), g) in enumerate(groups):
        xs = np.array([pos[lv] for lv in g["epsilon"]], dtype=float) + 0.06 * (k - (len(groups) - 1) / 2)
        for ax, (metric, _, _) in zip(axes[0], METRICS, strict=True):
            mean, lo, hi = (g[c].to_numpy(dtype=float) for c in (metric, f"{metric} lo", f"{metric} hi"))
            err = np.vstack([mean - lo, hi - mean])
            err = np.where(np.isfinite(err), err, 0.0)
            ax.errorbar(xs, mean, yerr=err, fmt="o-", ms=3, lw=1, capsize=2, label=f"wd={wd:g}, {stop}")
    for ax, (metric, label, _) in zip(axes[0], METRICS, strict=True):
        if metric == "membership/auc":
            ax.axhline(0.5, color="grey", lw=0.8, ls="--")
        if metric.startswith("gain/"):
            ax.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax.set_xticks(range(len(levels)), levels, fontsize=7)
        ax.set_xlabel("target ε (DP gradient descent)", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=6)
    seeds = int(tab["seeds"].max()) if len(tab) else 0
    attack = f"attack {budget} steps; " if budget > 0 else ""
    fig.suptitle(f"{title} ({attack}{seeds} seeds; mean, 95% CI over seeds)", fontsize=9)
    fig.tight_layout()
    return fig


# --- claims ------------------------------------------------------------------------------------------------


def stopping_level(c: pd.DataFrame) -> tuple[str | None, list[dict[str, Any]]]:
    """In one cell's rows: the weakest privacy that stops membership inference, and per-level detail.

    Levels are scanned from the smallest epsilon up (∞ last; plain training is not a DP level): the
    stopping level is the largest level at which, and at every smaller one, membership AUC's 95% CI
    reaches 0.5 (lo <= 0.5). None if even the smallest epsilon leaves the CI above 0.5."""
    detail, stop = [], None
    broken = False
    for level in [lv for lv in _levels(c) if lv != NO_DP]:
        rows = c[c["_level"] == level]
        m, lo, hi, k = seed_ci(rows, "membership/auc")
        a, alo, ahi, _ = seed_ci(rows, "test_accuracy")
        mem = seed_ci(rows, "memorised/frac")[0]
        stopped = np.isfinite(lo) and lo <= 0.5
        if not stopped:
            broken = True
        if stopped and not broken:
            stop = level
        detail.append(
            {
                "level": level,
                "auc": (m, lo, hi),
                "accuracy": (a, alo, ahi),
                "memorised": mem,
                "n_seeds": k,
                "stopped": stopped,
            }
        )
    return stop, detail


def _g(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3g}"


def judge_dp(claim: Any, runs: pd.DataFrame) -> Verdict:
    """`dp-stops-reconstruction-at-a-cost`, per task of the claim with defence runs; the headline is the
    first such task, in its least-defended cell (no weight decay, longest training).

    The stopping level (`stopping_level`) and the cost there: per seed, test accuracy without DP minus
    at the stopping level, 95% CI over seeds. reproduced: the cost's CI lies above LARGE_COST, or no level
    of the grid stops membership inference; not reproduced: CI below LARGE_COST (cheap); opposite: CI
    below 0 (DP improved accuracy); else inconclusive (also with < 3 seeds)."""
    from bench.analysis.trends import mean_ci
    from bench.analysis.verdicts import MIN_SEEDS

    rows_out: list[dict[str, Any]] = []
    heads: list[dict[str, Any]] = []
    for task in claim.tasks:
        t = runs[runs["task"] == task] if "task" in runs else runs.iloc[0:0]
        t = t[t["profile"] == PROFILE] if "profile" in t else t
        if t.empty:
            continue
        c = cells(t)
        if not c["_dp"].any():
            continue
        for i, (wd, stop_key) in enumerate(_cell_keys(c)):
            cell = c[(c["_wd"] == wd) & (c["_stop"] == stop_key)]
            stop, detail = stopping_level(cell)
            group = f"wd={wd:g} {stop_key}"
            levels = "; ".join(
                f"ε={d['level']}: AUC {_g(d['auc'][0])} [{_g(d['auc'][1])}, {_g(d['auc'][2])}], "
                f"memorised {_g(d['memorised'])}, acc {_g(d['accuracy'][0])}"
                for d in detail
            )
            base = cell[cell["_level"] == NO_DP]
            plain = seed_means(base, num(base, "test_accuracy"))
            if len(plain):
                levels += f"; no DP: acc {_g(float(plain.mean()))}"
            n_seeds = max((d["n_seeds"] for d in detail), default=0)
            if stop is None:
                word = "reproduced" if n_seeds >= MIN_SEEDS else "inconclusive"
                cost = (float("nan"),) * 3
                text = "no ε of the grid stops membership inference (AUC CI above 0.5 at every ε)"
            else:
                there = cell[cell["_level"] == stop]
                at = seed_means(there, num(there, "test_accuracy"))
                diff = (plain - at).dropna().to_numpy(dtype=float)
                cost = mean_ci(diff)
                n_seeds = len(diff)
                if n_seeds < MIN_SEEDS or not np.isfinite(cost[1]):
                    word = "inconclusive"
                elif cost[2] < 0:
                    word = "opposite"
                elif cost[1] > LARGE_COST:
                    word = "reproduced"
                elif cost[2] < LARGE_COST:
                    word = "not reproduced"
                else:  # the interval straddles a large cost
                    word = "inconclusive"
                text = (
                    f"membership stopped at ε={stop} (AUC CI reaches 0.5 there and below); accuracy cost "
                    f"(no DP − DP) {cost[0]:+.3f} [{cost[1]:+.3f}, {cost[2]:+.3f}], {n_seeds} seeds"
                )
                if len(plain) == 0:
                    word, text = "inconclusive", text + "; no run without DP in this cell"
            row = {
                "task": task,
                "group": group,
                "metric": "membership/auc, test_accuracy",
                "verdict": word,
                "bench": f"{text}. Levels: {levels}",
                "n_seeds": n_seeds,
                "value": cost[0],
                "lo": cost[1],
                "hi": cost[2],
                "stop": stop,
            }
            rows_out.append(row)
            if i == 0:
                heads.append(row)
    if not rows_out:
        return Verdict(claim.id, "no runs", claim.rule, claim.paper, note="no runs of the defences profile")
    head = heads[0]
    others = "; ".join(f"{h['task']}: {h['verdict']}" for h in heads[1:])
    v = Verdict(
        claim.id,
        head["verdict"],
        claim.rule,
        claim.paper,
        f"{head['task']} {head['group']}: {head['bench']}",
        head["value"],
        head["lo"],
        head["hi"],
        head["n_seeds"],
        note=f"other tasks (least-defended cell): {others}" if others else "",
        rows=rows_out,
    )
    v.profile, v.head = PROFILE, head
    return v


def judge_weight_decay(claim: Any, runs: pd.DataFrame, metrics: tuple, min_effect: float) -> Verdict:
    """`weight-decay-raises` on its own runs (bench.analysis.judges.judge_trend, other profiles) and
    re-judged on the defence runs: per task and defence cell (privacy level x stop), the trend of each
    metric against train.weight_decay. The headline stays that of the other profiles when they have one;
    otherwise it is the defence grid's plain-training cell (no DP, longest training)."""
    from bench.analysis import judges as j
    from bench.analysis.verdicts import trend

    is_def = runs["profile"] == PROFILE if "profile" in runs else pd.Series(False, index=runs.index)
    rest, dfn = runs[~is_def], runs[is_def]
    v = j.judge_trend(claim, rest, "train.weight_decay", metrics, min_effect) if not rest.empty else None
    rows: list[dict[str, Any]] = []
    head = None
    if not dfn.empty:
        c = cells(dfn)
        for task in claim.tasks:
            t = c[c["task"] == task] if "task" in c else c
            if t.empty:
                continue
            stops = [s for _, s in _cell_keys(t)]
            for stop in dict.fromkeys(stops):
                for level in _levels(t):
                    sub = t[(t["_stop"] == stop) & (t["_level"] == level)]
                    if sub["_wd"].nunique() < 2:
                        continue
                    for metric, sign in metrics:
                        if metric not in sub:
                            continue
                        tr = trend(sub, "_wd", metric, sign, min_effect, label="train.weight_decay")
                        group = f"ε={level} {stop}"
                        row = tr | {"task": task, "profile": PROFILE, "group": group, "metric": metric}
                        rows.append(row)
                        if head is None and level == NO_DP and stop == stops[0] and metric == claim.metric:
                            head = row
    if v is None or v.verdict == "no runs":
        if head is None:
            return v or Verdict(
                claim.id, "no runs", claim.rule, claim.paper, note="no runs vary weight decay"
            )
        v = Verdict(
            claim.id,
            head["verdict"],
            claim.rule,
            claim.paper,
            f"{head['task']} {head['group']} (defences profile): {head['bench']}",
            head["diff"],
            head["diff_lo"],
            head["diff_hi"],
            head["n_seeds"],
            rows=rows,
        )
        v.profile, v.head = PROFILE, head
    else:
        v.rows = list(v.rows) + rows
    if rows:
        mine = [r for r in rows if r["metric"] == claim.metric]
        summary = "; ".join(f"{r['task']} {r['group']}: {r['verdict']}" for r in mine)
        v.note = " ".join(
            p for p in (v.note, f"re-judged on the defence grid ({claim.metric}): {summary}.") if p
        )
    return v
