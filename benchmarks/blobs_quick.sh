#!/usr/bin/env bash
# The blob series at quick scale with the measurement of docs/metrics.md: 5 seeds, wall time, the per-point
# table (mean [95% CI over seeds]) and the seed-level trends. Writes to a temporary MLflow store.
# Usage: [TASK=blobs-walk|blobs-rect-shuffled|...] [SEEDS=5] bash benchmarks/blobs_quick.sh [extra bench run args]
set -euo pipefail
cd "$(dirname "$0")/.."
store=$(mktemp -d)
start=$(date +%s)
task=${TASK:-blobs-rect}
.venv/bin/bench run "$task" --profile quick --seeds "${SEEDS:-5}" --tracking-uri "sqlite:///$store/mlflow.db" "$@"
echo "wall time: $(( $(date +%s) - start )) s (store: $store; load: $(cut -d' ' -f1-3 /proc/loadavg))"
.venv/bin/python benchmarks/series_table.py "$store"
