#!/usr/bin/env bash
# Wall time of a blob series run in one process and in worker processes (issue 11, docs/scaling.md).
#
# Usage: bash benchmarks/scaling.sh [quick|paper|all] [extra bench run args]
#   quick (default): the quick series (TASK, default blobs-rect; SEEDS seeds, default 3) at --jobs 1 (torch
#                    threads from the machine) and --jobs JOBS (default 2; threads = cores / JOBS), then
#                    the speed-up and the largest difference in the primary error between the two tables
#                    (0 when the thread counts agree; float rounding otherwise).
#   paper:           the paper profile (9 blob sizes x 3 seeds; about 2 hours on 2 cores as it stands) once
#                    at --jobs BEST (default 2) with the shortcuts SHORTCUTS (default: bf16 products,
#                    torch.compile, the plateau stop; the extra args are added), then the check of the
#                    shortcuts: the plain profile (float32, eager, all 5,000 steps) at CHECK_SIZES (default
#                    1,25,100) x CHECK_SEEDS seeds (default 1), also at --jobs BEST so that training is
#                    identical, and a table of both runs' figures at those points (error, memorisation,
#                    membership AUC, steps run) with the largest difference. CHECK_STORE=DIR reuses the
#                    plain runs of an earlier check (the store directory it printed).
#   all:             both.
# Each run writes to its own temporary MLflow store. The machine's load (uptime) is printed before each
# run: on a shared machine the figures mean little unless the load is well below the core count.
set -euo pipefail
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false
cd "$(dirname "$0")/.."
mode=${1:-quick}
[ $# -gt 0 ] && shift
task=${TASK:-blobs-rect}
seeds=${SEEDS:-3}
profile=${PROFILE:-quick} # PROFILE=smoke tries the script out in a minute
jobs=${JOBS:-2}
best=${BEST:-2}
B=.venv/bin/bench
cores=$(.venv/bin/python -c "from bench.parallel import cores; print(cores())")
echo "machine: $cores cores, $(nproc --all) online; $(.venv/bin/python -c 'import torch; print("torch", torch.__version__)')"

# timed RUN_NAME ARGS...: run bench, print its wall time, leave the store's path in $store
timed() {
    local name=$1
    shift
    store=$(mktemp -d)
    echo "load before $name: $(uptime | sed "s/.*load average: //")"
    local start end
    start=$(date +%s.%N)
    "$B" run "$task" --tracking-uri "sqlite:///$store/mlflow.db" "$@" >"$store/out.txt" 2>&1 || {
        tail -20 "$store/out.txt"
        exit 1
    }
    end=$(date +%s.%N)
    secs=$(echo "$end - $start" | bc)
    printf '%-40s %8.1f s   (store %s)\n' "$name" "$secs" "$store"
}

# the primary error column of the parent's series table in store $1
errors() {
    .venv/bin/python - "$1" <<'PY'
import sys
import pandas as pd
from mlflow.tracking import MlflowClient
c = MlflowClient(f"sqlite:///{sys.argv[1]}/mlflow.db")
exp = c.search_experiments(filter_string="name != 'Default'")[0]
parent = c.search_runs([exp.experiment_id], "tags.`bench.kind` = 'parent'")[0]
table = pd.read_csv(c.download_artifacts(parent.info.run_id, "series.csv", sys.argv[1]))
print(" ".join(repr(v) for v in table["error"]))
PY
}

if [ "$mode" = quick ] || [ "$mode" = all ]; then
    timed "$profile $task, $seeds seeds, --jobs 1" --profile "$profile" --seeds "$seeds" --jobs 1 "$@"
    t1=$secs s1=$store
    timed "$profile $task, $seeds seeds, --jobs $jobs" --profile "$profile" --seeds "$seeds" --jobs "$jobs" "$@"
    t2=$secs s2=$store
    echo "speed-up with --jobs $jobs: $(echo "scale=2; $t1 / $t2" | bc)x"
    .venv/bin/python - "$(errors "$s1")" "$(errors "$s2")" <<'PY'
import sys
a = [float(v) for v in sys.argv[1].split()]
b = [float(v) for v in sys.argv[2].split()]
print(f"largest |error(--jobs 1) - error(--jobs N)| over {len(a)} runs: {max(abs(x - y) for x, y in zip(a, b)):.3g}")
PY
fi
if [ "$mode" = paper ] || [ "$mode" = all ]; then
    shortcuts=${SHORTCUTS:---set attack.dtype=bfloat16 --set attack.compile=true --set attack.stop=plateau --set attack.stop_window=500}
    # shellcheck disable=SC2086 # SHORTCUTS is a list of arguments
    timed "paper $task, --jobs $best, shortcuts" --profile paper --jobs "$best" $shortcuts "$@"
    fast=$store
    check_sizes=${CHECK_SIZES:-1,25,100}
    check_seeds=${CHECK_SEEDS:-1}
    if [ -n "${CHECK_STORE:-}" ]; then # the plain runs do not depend on the shortcuts: reuse them
        store=$CHECK_STORE
        echo "check: the plain runs of $store"
    else
        timed "check: plain paper at sizes $check_sizes, $check_seeds seed(s)" --profile paper --jobs "$best" \
            --seeds "$check_seeds" --sweep "data.blob_size=$check_sizes" "$@"
    fi
    echo "shortcuts: $shortcuts"
    .venv/bin/python benchmarks/compare_runs.py "$store" "$fast"
fi
