"""Print a finished series from an MLflow store: per series point, mean and 95% CI over seeds of the
measurement metrics (docs/metrics.md), then the parent's seed-level trends.

Usage: python benchmarks/series_table.py STORE_DIR [EXPERIMENT ...]   (default: every experiment)
"""

from __future__ import annotations

import sys

import pandas as pd
from mlflow.tracking import MlflowClient

from bench.analysis.trends import mean_ci, usable
from bench.errors import BenchInputError
from bench.summary import trend_column

COLS = {
    "test_accuracy": "test acc",
    "class1/ncc_dist_mean": "c1 ncc_dist att",
    "baseline/heldout/class1/ncc_dist_mean": "c1 ncc_dist held",
    "class1/dssim_mean": "c1 dssim att",
    "baseline/heldout/class1/dssim_mean": "c1 dssim held",
    "class1/l2_255_mean": "c1 l2_255 att",
    "baseline/heldout/class1/l2_255_mean": "c1 l2_255 held",
    "memorised/frac": "memorised",
    "memorised/class1/frac": "memorised c1",
    "baseline/random/memorised/frac": "memorised rnd",
    "membership/auc": "member AUC",
    "margin/frac_near": "near margin",
}
TRENDS = (
    "error",
    "class1_ncc_dist_mean",
    "memorised_frac",
    "gain_heldout_ncc_dist",
    "dssim_mean",
    "l2_255_mean",
)


def _trend_axis(task_name: str) -> str | None:
    """The task's declared trend axis (`Task.trend_axis`), None for a task this bench does not know."""
    from bench.tasks import get_task

    try:
        return get_task(task_name).trend_axis
    except BenchInputError:
        return None


def main(store: str, names: list[str]) -> None:
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    exps = [e for e in client.search_experiments() if not names or e.name in names]
    for exp in exps:
        for parent in client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'parent'"):
            table = pd.read_csv(client.download_artifacts(parent.info.run_id, "series.csv", store))
            used = usable(table)
            print(f"\n== {exp.name} (parent {parent.info.run_id}): {len(used)} of {len(table)} runs used")
            x = (
                trend_column(table, _trend_axis(parent.data.tags.get("bench.task", exp.name)))
                or "series_value"
            )
            key = [c for c in table if c.startswith(("grid.", "sweep.")) and c != x]
            rows = []
            for point, g in used.groupby([*key, x]):
                per_seed = g.groupby("seed").mean(numeric_only=True)
                row = {"point": point, "seeds": len(per_seed)}
                for col, name in COLS.items():
                    if col in per_seed:
                        m, lo, hi = mean_ci(per_seed[col].to_numpy())
                        row[name] = f"{m:.3f} [{lo:.3f}, {hi:.3f}]" if lo == lo else f"{m:.3f}"
                rows.append(row)
            print(pd.DataFrame(rows).to_string(index=False))
            metrics = parent.data.metrics
            for t in TRENDS:
                for k in sorted(metrics):
                    if k.startswith(f"trend/{t}/") and k.endswith("/slope") or k == f"trend/{t}/slope":
                        base = k[: -len("/slope")]
                        rho = metrics.get(f"{base}/spearman_rho", float("nan"))
                        d, dlo, dhi = (
                            metrics.get(f"{base}/{s}", float("nan")) for s in ("diff", "diff_lo", "diff_hi")
                        )
                        print(
                            f"{base}: rho of means {rho:+.2f}; largest - smallest {d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
                        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
