#!/usr/bin/env bash
# The attack's levers on one task and profile (issue 34): each setting in its own store, the same classifiers
# (threads=1: bit-identical training), then one table (benchmarks/lever_table.py).
#   OUT=DIR TASK=mnist-parity PROFILE=quick SEEDS=3 bash benchmarks/attack_levers.sh [NAME="--set k=v ..."] ...
# Without arguments it runs the default grid below. Each store: DIR/<name>/mlflow.db; wall time and load
# per store in DIR/<name>/wall.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT=DIR}
TASK=${TASK:-mnist-parity}
PROFILE=${PROFILE:-quick}
SEEDS=${SEEDS:-3}
BENCH=${BENCH:-.venv/bin/bench}
declare -a GRID
if [ $# -gt 0 ]; then GRID=("$@"); else
  GRID=(
    "base="
    "steps4000=--set attack.steps=4000"
    "m1=--set attack.m_factor=1"
    "m05=--set attack.m_factor=0.5"
    "restarts3=--set attack.restarts=3"
    "tv0.01=--set attack.tv=0.01"
    "tv0.1=--set attack.tv=0.1"
    "floor0.03=--set attack.floor=0.03"
    "repel1=--set attack.repel=1"
  )
fi
for item in "${GRID[@]}"; do
  name=${item%%=*}; sets=${item#*=}
  dir="$OUT/$name"; mkdir -p "$dir"
  [ -f "$dir/wall.txt" ] && { echo "skip $name (done)"; continue; }
  load0=$(cut -d' ' -f1 /proc/loadavg); t0=$(date +%s)
  # shellcheck disable=SC2086
  $BENCH run "$TASK" --profile "$PROFILE" --seeds "$SEEDS" --set threads=1 $sets \
    --tracking-uri "sqlite:///$dir/mlflow.db" > "$dir/log.txt" 2>&1
  echo "wall_s=$(( $(date +%s) - t0 )) load_start=$load0 load_end=$(cut -d' ' -f1 /proc/loadavg) sets=$sets" > "$dir/wall.txt"
  echo "$name: $(cat "$dir/wall.txt")"
done
