"""Compare two bench stores run by run: the figures of the runs that both hold, matched on their point.

Usage: python benchmarks/compare_runs.py REFERENCE_STORE OTHER_STORE
Each store is a directory holding mlflow.db (as benchmarks/scaling.sh writes them). A run's point is its
task, series value and seed, and its profile, setting and every classifier param (data.*, model.*, train.*)
that varies within a store: a store may hold several tasks (the regime study's rect and shuffled), a budget
check beside its profile and a second sweep axis (the study's data.n_per_class), and each run pairs only
with the same point; a single run pairs with a pooled one. A point held twice in one store is an error that names it (which run to pair would
be a guess). Prints one row per matched run (the reference's figure / the other's) and, per figure, the largest
and the mean difference (other - reference), with a 95% t interval of the mean over the matched
runs. Used to check the attack's shortcuts (bf16, torch.compile, the plateau stop) against the plain run,
and one attack's settings against another's: the trained model is the same when both ran with the same
thread count.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from bench.analysis.notes import CLASSIFIER_PARAMS
from bench.analysis.trends import mean_ci
from bench.tracking import load_runs, series_order

FIGURES = {
    "ncc_dist_mean": "ncc_dist",
    "class1/ncc_dist_mean": "c1 ncc_dist",
    "dssim_mean": "DSSIM",
    "memorised/frac": "memorised",
    "membership/auc": "AUC",
    "attack/steps_run": "steps",
    "test_accuracy": "test acc",
}


def _order(value: str) -> tuple:
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def swept(frames: list[pd.DataFrame]) -> list[str]:
    """The profile, the setting and the classifier's params (data.*, model.*, train.*) that take more than
    one value within a store: a budget check beside its profile, the settings of one point, a sweep's axes
    beyond the series value (the regime study's data.n_per_class). What is constant within each store is
    left out of a run's point, so a field logged by one store only, or a single run against a pooled one
    (setting 0 against "pooled"), does not block pairing."""
    cols = {
        c for f in frames for c in f.columns if c.startswith(CLASSIFIER_PARAMS) or c in ("profile", "setting")
    }
    varying = [c for c in cols if any(c in f and f[c].astype(str).nunique() > 1 for f in frames)]
    return sorted(varying, key=lambda c: (c not in ("profile", "setting"), c))


def point_fields(axes: list[str]) -> list[str]:
    """The columns that name a run's point: task, `axes` (from `swept`), series value, seed."""
    return ["task", *axes, "series_value", "seed"]


def child_runs(store: str, frame: pd.DataFrame, axes: list[str]) -> dict[tuple[str, ...], dict[str, float]]:
    """Point (values of `point_fields`) -> metrics of every finished child run in `frame` (bench report's
    table, from `store`). Exits naming the store and the point when one point was run twice there."""
    fields = point_fields(axes)
    runs: dict[tuple[str, ...], dict[str, float]] = {}
    for r in frame.to_dict("records"):
        p = tuple("" if r.get(k) is None else str(r.get(k)) for k in fields)
        if p in runs:
            where = ", ".join(f"{k} {v!r}" for k, v in zip(fields, p, strict=True))
            sys.exit(
                f"{store}: two finished runs of one point ({where}); fix: keep one (delete the other in "
                "the MLflow UI) or compare stores that ran each point once"
            )
        runs[p] = {k: v for k, v in r.items() if isinstance(v, float)}
    return runs


def main(reference: str, other: str) -> None:
    frames = [load_runs(MlflowClient(f"sqlite:///{s}/mlflow.db")) for s in (reference, other)]
    axes = swept(frames)
    ref, oth = (child_runs(s, f, axes) for s, f in zip((reference, other), frames, strict=True))
    fields = point_fields(axes)
    i_series = fields.index("series_value")

    def order(p: tuple[str, ...]) -> tuple:
        return (*map(_order, p[:i_series]), series_order(p[i_series], p[i_series + 1]))

    keys = sorted(set(ref) & set(oth), key=order)
    if not keys:
        sys.exit(f"no run is in both stores ({len(ref)} and {len(oth)} runs)")
    figures = [f for f in FIGURES if any(f in ref[k] for k in keys)]
    print(f"{len(keys)} runs in both stores; each cell: reference / other")
    # columns: the point's parts that vary among the matched runs; series value and seed always
    shown = [
        i for i, f in enumerate(fields) if f in ("series_value", "seed") or len({k[i] for k in keys}) > 1
    ]
    names = [fields[i].split(".")[-1].replace("series_value", "series") for i in shown]
    width = [max(len(n), *(len(k[i]) for k in keys)) for n, i in zip(names, shown, strict=True)]
    print(
        " ".join(f"{n:>{w}}" for n, w in zip(names, width, strict=True))
        + " "
        + " ".join(f"{FIGURES[f]:>19}" for f in figures)
    )
    for k in keys:
        cells = [f"{ref[k].get(f, np.nan):>9.4g} / {oth[k].get(f, np.nan):<7.4g}" for f in figures]
        print(" ".join(f"{k[i]:>{w}}" for i, w in zip(shown, width, strict=True)) + " " + " ".join(cells))
    for f in figures:
        diff = np.array([oth[k].get(f, np.nan) - ref[k].get(f, np.nan) for k in keys])
        _, lo, hi = mean_ci(diff)  # paired over the matched runs: a 95% t interval of the mean
        print(
            f"{FIGURES[f]:>12} ({f}): other - reference: mean {np.nanmean(diff):+.4g} "
            f"[{lo:+.4g}, {hi:+.4g}], largest |diff| {np.nanmax(np.abs(diff)):.4g}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
