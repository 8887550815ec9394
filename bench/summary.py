"""The series summary of a parent run: the series table, trend statistics (seeds as the unit) against the
task's declared trend axis and against Moran's I, and their plots. Used by `bench.runner` (one run) and
`bench.parallel` (a group of shards).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.registry import Task

# Metrics plotted against the series axis and Moran's I on the parent.
PLOTTED = ("error", "memorised/frac")
# Metrics whose trend the parent reports (when the table has them), besides the primary `error`.
TREND_METRICS = (
    "ncc_dist_mean",
    "dssim_mean",
    "l2_255_mean",
    "memorised/frac",
    "membership/auc",
    "gain/heldout/ncc_dist",
)


def log_series_summary(parent: Any, table: pd.DataFrame, task: Task) -> dict[str, float]:
    """Series table, trend statistics (seeds as the unit, bench.analysis.trends) and plots on the parent.

    Runs whose classifier or attack did not converge are left out of the trends and counted
    (`runs/total`, `runs/used`, `runs/unconverged_train`, `runs/unconverged_attack`); attacks that ended
    worse than their best (`runs/degraded_attack`), whose fast path failed its float64 check
    (`runs/fit_check_failed`), or whose exact fit went below the truth's own (`runs/fit_below_truth`: the
    objective preferred candidates that are not the data) are counted too. Trends are computed
    against the series axis and against the per-point mean Moran's I of class 1, for the primary metric
    (and its per-class values) and `TREND_METRICS`; for a grid with a blob-size key, per value of the
    other grid keys (e.g. per n). Keys: `trend/<metric>[_vs_moran][/<group>]/<stat>`.
    """
    from bench import plots
    from bench.analysis.defences import defence_table, is_defence_table
    from bench.analysis.defences import figure as defence_figure
    from bench.analysis.trends import seed_trend, usable

    trend: dict[str, float] = {}
    parent.text(table.to_csv(index=False), "series.csv")
    if task.report is not None:
        for name, text in task.report(table).items():
            parent.text(text, name)
    counts = {"runs/total": float(len(table))}
    for col, name in (("train/converged", "train"), ("attack/converged", "attack")):
        if col in table:
            counts[f"runs/unconverged_{name}"] = float((table[col] < 0.5).sum())
    for col, name in (
        ("attack/degraded", "degraded_attack"),
        ("attack/fit_check_failed", "fit_check_failed"),
        ("attack/fit_below_truth", "fit_below_truth"),
    ):
        if col in table:  # returned at their best state; counted, as unconverged runs are
            counts[f"runs/{name}"] = float((table[col] > 0.5).sum())
    used = usable(table)
    counts["runs/used"] = float(len(used))
    parent.metrics(counts)
    trend.update(counts)
    if is_defence_table(table):  # every run counts: under DP, an unconverged classifier is the defence
        parent.text(defence_table(table).to_csv(index=False), "defences.csv")
        fig = defence_figure(table, f"{task.name}: defences")
        if fig is not None:
            parent.figure(fig, "defences.png")
            plots.close(fig)
    used, x_col, groups = _trend_axis(used, task)
    if x_col is None:
        return trend
    primary = str(used["primary"].iloc[0]) if "primary" in used and len(used) else "error"
    metrics = [
        ("error", primary),
        *((f"class{c}/{primary}", f"class {c} {primary}") for c in (0, 1)),
        *((m, m) for m in TREND_METRICS if m != primary),
    ]
    for gname, sub in groups(used):
        suffix = f"/{gname}" if gname else ""
        xs = {"": x_col}
        if "moran_i/class1" in sub:
            moran = sub.groupby(x_col)["moran_i/class1"].transform("mean")
            sub = sub.assign(_moran=moran)
            xs["_vs_moran"] = "_moran"
        for ycol, label in metrics:
            if ycol not in sub:
                continue
            for tag, xc in xs.items():
                st = seed_trend(sub, xc, ycol)
                name = f"{ycol.replace('/', '_')}{tag}"
                trend.update({f"trend/{name}{suffix}/{k}": v for k, v in st.items()})
                if ycol not in PLOTTED:
                    continue
                axis = task.trend_axis if x_col == "_axis" else x_col
                xlabel = "Moran's I of class 1 (per-point mean)" if tag else (task.series_label or axis)
                fig = plots.series_plot(
                    pd.to_numeric(sub[xc], errors="coerce").to_numpy(dtype=float),
                    pd.to_numeric(sub[ycol], errors="coerce").to_numpy(dtype=float),
                    xlabel,
                    label,
                    f"{task.name}{' ' + gname if gname else ''}: rho of means={st['spearman_rho']:.2f}",
                )
                fname = f"{ycol.replace('/', '_')}_vs_{'moran' if tag else 'series'}"
                parent.figure(fig, f"{fname}{'_' + gname.replace('=', '') if gname else ''}.png")
                plots.close(fig)
    parent.metrics({k: v for k, v in trend.items() if k.startswith("trend/")})
    return trend


def trend_column(table: pd.DataFrame, key: str | None) -> str | None:
    """The series-table column of a config key made an axis by a grid or a sweep (`grid.<key>`,
    `sweep.<key>`), or None."""
    if not key:
        return None
    return next((c for c in (f"grid.{key}", f"sweep.{key}") if c in table), None)


def _numeric(table: pd.DataFrame, col: str) -> bool:
    return col in table and not pd.to_numeric(table[col], errors="coerce").isna().all()


def _trend_axis(table: pd.DataFrame, task: Task) -> tuple[pd.DataFrame, str | None, Any]:
    """The x of the trends, from the task's declared axis (`Task.trend_axis`): (the table, with an added
    x column where the axis is a per-run column; the numeric x column or None; a function splitting the
    table into groups (name, rows)).

    In order: the axis as a grid or `--sweep` key (one trend per value of the other grid/sweep keys);
    the axis as the series key, or no axis declared, with numeric series values (the series value); the
    axis as a per-run column such as `class_var/ratio` (its per-point mean over seeds, with at least 2
    series points); else, with no usable declared axis, the one numeric `--sweep` key of the run. None
    when nothing numeric is left (a categorical axis such as patient selection: the table is the
    summary)."""
    axis = task.trend_axis
    grid_x = trend_column(table, axis)
    if grid_x is not None:  # a grid or sweep over the axis: one trend per value of the other keys
        others = [c for c in table.columns if c.startswith(("grid.", "sweep.")) and c != grid_x]

        def by_other(t: pd.DataFrame) -> Any:
            if not others:
                return [("", t)]
            return [
                (
                    "_".join(
                        f"{c.split('.')[-1]}={v}"
                        for c, v in zip(others, key if isinstance(key, tuple) else (key,), strict=True)
                    ),
                    g,
                )
                for key, g in t.groupby(others)
            ]

        return table, grid_x, by_other
    if axis in (None, task.series_key) and _numeric(table, "series_value"):  # the series value itself
        return table, "series_value", _whole
    if axis is not None and axis in table and "series_value" in table:
        points = table["series_value"].astype(str)
        if points.nunique() >= 2 and _numeric(table, axis):
            x = pd.to_numeric(table[axis], errors="coerce").groupby(points).transform("mean")
            return table.assign(_axis=x), "_axis", _whole
    swept = [c for c in table.columns if c.startswith("sweep.") and _numeric(table, c)]
    if len(swept) == 1:
        return table, swept[0], _whole
    return table, None, None


def _whole(table: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return [("", table)]
