"""The MLP and CNN series of a store side by side: per task, architecture and series point, mean and 95%
t interval over seeds of the figures docs/cnn.md reports, and how many attacks converged.

Usage: python benchmarks/arch_table.py STORE_DIR [EXPERIMENT ...]   (default: every experiment)

STORE_DIR holds mlflow.db. Every finished child run counts (converged or not: the `conv` column says how
many attacks converged by the plateau rule; `bench report` leaves the others out of a verdict). The
attack's fit is `attack/fit_relu` (its returned state's fit with the exact ReLU, the truth's norm), the
truth's `truth/kkt_fit` (the training set's own best fit).
"""

from __future__ import annotations

import sys

import pandas as pd
from mlflow.tracking import MlflowClient

from bench.analysis.trends import mean_ci
from bench.analysis.verdicts import metric_range, num
from bench.tracking import load_runs

FIGURES = {
    "test_accuracy": "test acc",
    "ncc_dist_mean": "ncc_dist",
    "memorised/frac": "memorised",
    "membership/auc": "member AUC",
    "truth/kkt_fit": "truth fit",
    "attack/fit_relu": "attack fit",
    "gain/mean/ncc_dist": "gain vs mean",
}


def table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (task, architecture, series value): the seeds, converged attacks and FIGURES."""
    runs = runs.assign(
        arch=runs["model.arch"].fillna("mlp") if "model.arch" in runs else "mlp",
        _x=pd.to_numeric(runs["series_value"], errors="coerce"),
    )
    rows = []
    for (task, arch, x), g in runs.groupby(["task", "arch", "_x"], sort=True):
        per_seed = g.groupby("seed").mean(numeric_only=True)
        conv = num(g, "attack/converged") if "attack/converged" in g else pd.Series(dtype=float)
        row = {"task": task, "arch": arch, "x": f"{x:g}", "seeds": len(per_seed)}
        row["conv"] = f"{int((conv > 0.5).sum())}/{len(g)}"
        if "model/p_over_dn" in per_seed:
            row["p/(dn)"] = f"{per_seed['model/p_over_dn'].mean():.2f}"
        for col, name in FIGURES.items():
            if col in per_seed:
                m, lo, hi = mean_ci(per_seed[col].to_numpy(), metric_range(col))
                row[name] = f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if lo == lo else f"{m:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(store: str, names: list[str]) -> None:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    runs = load_runs(client, names or None)
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table(runs).to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
