"""Compare two bench stores run by run: the figures of the runs that both hold, matched on (series value, seed).

Usage: python benchmarks/compare_runs.py REFERENCE_STORE OTHER_STORE
Each store is a directory holding mlflow.db (as benchmarks/scaling.sh writes them). Prints one row per
matched run (the reference's figure / the other's) and, per figure, the largest and the mean difference
(other - reference), with a bootstrap 95% interval of the mean over the matched runs. Used to check the
attack's shortcuts (bf16, torch.compile, the plateau stop) against the plain run, and one attack's
settings against another's: the trained model is the same when both ran with the same thread count.
"""

from __future__ import annotations

import sys

import numpy as np
from mlflow.tracking import MlflowClient

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


def child_runs(store: str) -> dict[tuple[str, str], dict[str, float]]:
    """(series value, seed) -> metrics of every finished child run in the store (bench report's table)."""
    runs = load_runs(MlflowClient(f"sqlite:///{store}/mlflow.db"))
    return {
        (str(r["series_value"]), str(r["seed"])): {k: v for k, v in r.items() if isinstance(v, float)}
        for r in runs.to_dict("records")
    }


def main(reference: str, other: str) -> None:
    ref, oth = child_runs(reference), child_runs(other)
    keys = sorted(set(ref) & set(oth), key=lambda k: series_order(*k))
    if not keys:
        sys.exit(f"no run is in both stores ({len(ref)} and {len(oth)} runs)")
    figures = [f for f in FIGURES if any(f in ref[k] for k in keys)]
    print(f"{len(keys)} runs in both stores; each cell: reference / other")
    print(f"{'series':>8} {'seed':>4} " + " ".join(f"{FIGURES[f]:>19}" for f in figures))
    for k in keys:
        cells = [f"{ref[k].get(f, np.nan):>9.4g} / {oth[k].get(f, np.nan):<7.4g}" for f in figures]
        print(f"{k[0]:>8} {k[1]:>4} " + " ".join(cells))
    for f in figures:
        diff = np.array([oth[k].get(f, np.nan) - ref[k].get(f, np.nan) for k in keys])
        _, lo, hi = mean_ci(diff)  # paired over the matched runs: a bootstrap 95% interval of the mean
        print(
            f"{FIGURES[f]:>12} ({f}): other - reference: mean {np.nanmean(diff):+.4g} "
            f"[{lo:+.4g}, {hi:+.4g}], largest |diff| {np.nanmax(np.abs(diff)):.4g}"
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
