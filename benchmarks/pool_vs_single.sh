#!/usr/bin/env bash
# The reference's pooled protocol against one setting at about equal attack time: blobs-rect quick
# profile (n = 10 per class, 784-1000-1, m = 20), SEEDS seeds at blob sizes SIZES:
#   pooled: attack.pool=P settings from the `bench` sweep distribution, STEPS steps, candidates of every
#           setting pooled, chosen by KKT fit (pool_select=kkt; the oracle's choice is logged beside it);
#   single: bench's default setting for P x STEPS steps (a batched population of P costs at most P single
#           runs, so the single setting gets at least the pool's time).
# Prints the per-run figures side by side (benchmarks/compare_runs.py: single, then pooled) and each
# run's attack seconds. Usage: bash benchmarks/pool_vs_single.sh [STORE]
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.venv/bin/bench}
PY=${PY:-.venv/bin/python}
STORE=${1:-$(mktemp -d)}
P=${P:-8}
STEPS=${STEPS:-1000}
SEEDS=${SEEDS:-3}
SIZES=${SIZES:-1,25,100}
echo "stores in $STORE ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
common=(--profile quick --seeds "$SEEDS" --sweep "data.blob_size=$SIZES" --set threads=1)
mkdir -p "$STORE/single" "$STORE/pooled"
[ -f "$STORE/single/done" ] || { (cd "$STORE/single" && "$OLDPWD/$BENCH" run blobs-rect "${common[@]}" \
  --set "attack.steps=$((P * STEPS))" --tracking-uri "sqlite:///$STORE/single/mlflow.db" > run.log 2>&1) \
  && touch "$STORE/single/done"; }
[ -f "$STORE/pooled/done" ] || { (cd "$STORE/pooled" && "$OLDPWD/$BENCH" run blobs-rect "${common[@]}" \
  --set "attack.steps=$STEPS" --set "attack.pool=$P" --tracking-uri "sqlite:///$STORE/pooled/mlflow.db" \
  > run.log 2>&1) && touch "$STORE/pooled/done"; }
"$PY" benchmarks/compare_runs.py "$STORE/single" "$STORE/pooled"
"$PY" - "$STORE" <<'PYEOF'
import sys
from mlflow.tracking import MlflowClient
from bench.tracking import load_runs
for name in ("single", "pooled"):
    runs = load_runs(MlflowClient(f"sqlite:///{sys.argv[1]}/{name}/mlflow.db"))
    keys = [k for k in ("attack_s", "ncc_dist_mean", "memorised/frac", "membership/auc", "gain/heldout/ncc_dist",
                        "pool/oracle/ncc_dist_mean", "pool/kkt/ncc_dist_mean", "attack/pool_size") if k in runs]
    print(name, {k: round(float(runs[k].astype(float).mean()), 4) for k in keys})
PYEOF
