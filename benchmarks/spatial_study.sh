#!/usr/bin/env bash
# The spatial-correlation study (issue 10): the `study` profile (n per class x square blob sizes, attacks
# run to a plateau with a cap, 5 seeds) for the paper's design and its shuffled control, rectangles and
# random walks, into one store; then `bench report` over that store. Prints each task's and the total
# wall time, and how many attacks hit the cap (`attack/converged` = 0).
# Usage: bash benchmarks/spatial_study.sh [extra bench run args, e.g. --seeds 3 --set attack.steps=3000]
# Environment:
#   TASKS="blobs-rect blobs-rect-shuffled blobs-walk blobs-walk-shuffled"  PROFILE=study
#   JOBS= (worker processes per run; default: the number of cores)
#   STORE= (a new temporary folder; give one to extend a store or re-report it)  OUT=$STORE/report
#   BUDGET=1 (default) also runs each task's "$PROFILE-budget" profile where it has one: a few points
#   re-run with twice the attack steps, the budget check bench report applies to every claim
#   REPORT_ONLY=1 writes the report of STORE without running.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-"blobs-rect blobs-rect-shuffled blobs-walk blobs-walk-shuffled"}
PROFILE=${PROFILE:-study}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 1)}
store=${STORE:-$(mktemp -d)}
out=${OUT:-$store/report}
uri="sqlite:///$store/mlflow.db"
start=$(date +%s)
echo "store: $store (bench report --tracking-uri $uri)"
if [[ -z "${REPORT_ONLY:-}" ]]; then
  for task in $TASKS; do
    t0=$(date +%s)
    .venv/bin/bench run "$task" --profile "$PROFILE" --jobs "$JOBS" --tracking-uri "$uri" "$@" \
      > "$store/$task.log" 2>&1 || { echo "$task failed: see $store/$task.log" >&2; exit 1; }
    echo "$task: $(( $(date +%s) - t0 )) s"
    if [[ "${BUDGET:-1}" == 1 ]] && .venv/bin/bench list -v "$task" | grep -q " $PROFILE-budget "; then
      t0=$(date +%s)
      .venv/bin/bench run "$task" --profile "$PROFILE-budget" --jobs "$JOBS" --tracking-uri "$uri" "$@" \
        > "$store/$task-budget.log" 2>&1 || { echo "$task budget check failed: see $store/$task-budget.log" >&2; exit 1; }
      echo "$task $PROFILE-budget: $(( $(date +%s) - t0 )) s"
    fi
  done
  echo "runs: $(( $(date +%s) - start )) s"
fi
t0=$(date +%s)
.venv/bin/bench report --out "$out" --tracking-uri "$uri"
echo "report: $(( $(date +%s) - t0 )) s -> $out/report.md, $out/report.html"
sed -n '/^## Runs/,/^## Claims/p' "$out/report.md" | sed '$d'
echo "wall time: $(( $(date +%s) - start )) s"
