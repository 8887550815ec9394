#!/usr/bin/env bash
# The foundation's acceptance figure: a quick blob series (rectangles by default), 3 seeds, wall time and table.
# Usage: [TASK=blobs-walk] bash benchmarks/blobs_quick.sh [extra bench run args]   (writes to a temporary MLflow store)
set -euo pipefail
cd "$(dirname "$0")/.."
store=$(mktemp -d)
start=$(date +%s)
task=${TASK:-blobs-rect}
.venv/bin/bench run "$task" --profile quick --seeds 3 --tracking-uri "sqlite:///$store/mlflow.db" "$@"
echo "wall time: $(( $(date +%s) - start )) s (store: $store)"
.venv/bin/python - "$store" <<'PY'
import sys
import pandas as pd
from mlflow.tracking import MlflowClient
c = MlflowClient(f"sqlite:///{sys.argv[1]}/mlflow.db")
exp = c.search_experiments()[0]
parent = c.search_runs([exp.experiment_id], "tags.`bench.kind` = 'parent'")[0]
table = pd.read_csv(c.download_artifacts(parent.info.run_id, "series.csv", sys.argv[1]))
cols = ["dssim_mean", "class1/dssim_mean", "baseline/heldout/class1/dssim_mean", "corr_mean",
        "class1/corr_mean", "baseline/heldout/class1/corr_mean", "gain/heldout/dssim", "moran_i/class1"]
print(table.groupby("series_value")[cols].agg(["mean", "std"]).round(3).to_string())
PY
