#!/usr/bin/env bash
# What makes training data reconstructable (issue 13): sweeps of the literature's factors on each task's
# `factors` profile, each against the memorisation fraction, the membership AUC and ncc_dist_mean (mean and
# 95% t interval over seeds), with the seed-level trend of each metric against each factor, and wall time.
#   size:  data.n_per_class x model.width (p parameters from below to far above d*n; Iurada et al. 2026)
#   wd:    train.weight_decay (Buzaglo et al. 2023: raises reconstructability)
#   extra: train.extra_epochs past the loss target (Refael et al. 2025: longer training lowers it)
# Usage: bash benchmarks/factors.sh [extra bench run args, e.g. --jobs 4]
# Environment (defaults = the full measurement; hours on a small CPU):
#   TASKS="blobs-rect blobs-rect-shuffled digits-pair"  FACTORS="size wd extra"  PROFILE=factors
#   SEEDS= (the profile's, 5)  NS=5,10,20  WIDTHS=5,20,100,1000  WDS=0,1e-4,1e-3,1e-2
#   EXTRAS=0,10000,100000  STORE= (a new temporary folder; give one to re-print or extend a store)
#   TABLE_ONLY=1 prints the table of STORE without running.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-"blobs-rect blobs-rect-shuffled digits-pair"}
FACTORS=${FACTORS:-"size wd extra"}
PROFILE=${PROFILE:-factors}
NS=${NS:-5,10,20}
WIDTHS=${WIDTHS:-5,20,100,1000}
WDS=${WDS:-0,1e-4,1e-3,1e-2}
EXTRAS=${EXTRAS:-0,10000,100000}
store=${STORE:-$(mktemp -d)}
start=$(date +%s)
if [[ -z "${TABLE_ONLY:-}" ]]; then
  for task in $TASKS; do
    for factor in $FACTORS; do
      case $factor in
        size) sweep=(--sweep "data.n_per_class=$NS" --sweep "model.width=$WIDTHS") ;;
        wd) sweep=(--sweep "train.weight_decay=$WDS") ;;
        extra) sweep=(--sweep "train.extra_epochs=$EXTRAS") ;;
        *) echo "unknown factor '$factor': use size, wd or extra" >&2; exit 2 ;;
      esac
      t0=$(date +%s)
      .venv/bin/bench run "$task" --profile "$PROFILE" ${SEEDS:+--seeds "$SEEDS"} "${sweep[@]}" \
        --experiment "factors/$task/$factor" --tracking-uri "sqlite:///$store/mlflow.db" "$@" \
        > "$store/$task-$factor.log" 2>&1 || { echo "$task $factor failed: see $store/$task-$factor.log" >&2; exit 1; }
      echo "$task $factor: $(( $(date +%s) - t0 )) s"
    done
  done
  echo "wall time: $(( $(date +%s) - start )) s (store: $store)"
fi
.venv/bin/python - "$store" <<'PY'
"""One block per (task, factor): per value (per cell for n x width) mean [95% CI] over seeds; then the
seed-level trend (Spearman rho of the per-value means, largest-minus-smallest difference with its CI)."""
import os
import sys
import warnings

os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
warnings.simplefilter("ignore", category=Warning)
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from bench.analysis.trends import mean_ci, seed_trend

METRICS = ("memorised/frac", "membership/auc", "ncc_dist_mean")
store = sys.argv[1]
client = MlflowClient(f"sqlite:///{store}/mlflow.db")


def fmt(values: np.ndarray) -> str:
    m, lo, hi = mean_ci(values)
    return f"{m:.3f} [{lo:.3f},{hi:.3f}]" if np.isfinite(lo) else f"{m:.3f}"


def param_count(d: int, width: int, depth: int, bias: str) -> int:
    sizes = [d] + [width] * (depth - 1) + [1]
    return sum(a * b for a, b in zip(sizes, sizes[1:])) + (width if bias == "first" else 0)


for exp in sorted(client.search_experiments(), key=lambda e: e.creation_time):
    if not exp.name.startswith("factors/"):
        continue
    parents = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'parent'", order_by=["start_time DESC"])
    if not parents:
        continue
    parent = parents[0]
    table = pd.read_csv(client.download_artifacts(parent.info.run_id, "series.csv", store)).copy()
    metrics = [m for m in METRICS if m in table]
    keys = [c for c in table if c.startswith("sweep.")]
    child = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'child'", max_results=1)[0]
    d = np.load(client.download_artifacts(child.info.run_id, "arrays/train.npz", store))["x"].shape[1]
    depth, bias = int(child.data.params["model.depth"]), child.data.params["model.bias"]
    if "sweep.model.width" in keys:  # n = both classes' training samples
        n_per = table.get("sweep.data.n_per_class", int(child.data.params["data.n_per_class"]))
        n = 2 * np.broadcast_to(np.asarray(n_per), len(table))
        p = [param_count(d, int(w), depth, bias) for w in table["sweep.model.width"]]
        table["p/(d n)"] = np.round(np.asarray(p) / (d * n), 3)
    conv = table["train/converged"].mean() if "train/converged" in table else float("nan")
    print(f"\n== {exp.name}  ({len(table)} runs, {table['seed'].nunique()} seeds, d={d}, classifier converged "
          f"{conv:.0%}; mean [95% CI over seeds])")
    extra = [c for c in ("train_stationarity", "min_margin", "train_epochs", "test_accuracy") if c in table]
    cols = keys + (["p/(d n)"] if "sweep.model.width" in keys else [])
    per_seed = table.groupby(cols + ["seed"])[metrics + extra].mean().reset_index()
    rows = []
    for cell, g in per_seed.groupby(cols):
        cell = cell if isinstance(cell, tuple) else (cell,)
        row = {c.removeprefix("sweep."): f"{v:g}" for c, v in zip(cols, cell)}
        row.update({m: fmt(g[m].to_numpy()) for m in metrics})
        row.update({m: f"{g[m].mean():.3g}" for m in extra})
        rows.append(row)
    print(pd.DataFrame(rows).to_string(index=False))
    xs = keys + (["p/(d n)"] if "sweep.model.width" in keys else [])
    for x in xs:
        for m in metrics:
            t = seed_trend(table, x, m)
            print(f"  trend {m} vs {x.removeprefix('sweep.')}: rho={t['spearman_rho']:+.2f}  "
                  f"diff(max-min)={t['diff']:+.3f} [{t['diff_lo']:+.3f},{t['diff_hi']:+.3f}]  "
                  f"slope={t['slope']:+.3g} [{t['slope_lo']:+.3g},{t['slope_hi']:+.3g}]")
PY
