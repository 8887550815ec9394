#!/usr/bin/env bash
# The attack's fast path over a long run: one paper-profile point (blobs-rect, n = 50 per class,
# 784-1000-1000-1, m = 200, blob size 25, seed 0) attacked for STEPS (20,000) steps in float32 and in
# bfloat16 + torch.compile, from the same trained model (same threads), then both monitored curves side
# by side (benchmarks/compare_curves.py): the training-data error (ncc_dist), the float64 fit check and
# the objective. The fast path is sound if its fit stays >= 0, it is never flagged (attack/fit_check_failed),
# and its ncc_dist follows float32's.
#   bash benchmarks/attack_soundness.sh            # both runs at once, 1 thread each (~20 min here)
#   STORE=DIR bash benchmarks/attack_soundness.sh  # keep the stores in DIR (reused if they are there)
#   EXTRA="--set attack.beta2=0.999" bash ...     # more arguments for every run (word-split)
#   CONTROL=1 STORE=DIR bash ...  # then float32 + compile as well (one more run, after the two): the same
#                                 # function in float32 with its rounding reordered, a yardstick for how far
#                                 # two runs of one objective drift apart with no change of precision
#   REF="--set attack.residual=explicit" FAST="" FAST_NAME=auto CONTROL=1 bash ...
#                                 # another pair: REF: more arguments of the float32 reference and its control
#                                 # only; FAST: the arguments of the run checked against it (default
#                                 # "--set attack.dtype=bfloat16 --set attack.compile=true"; "" = the defaults),
#                                 # stored under FAST_NAME (default bf16). This one: the default float32 step
#                                 # (attack.residual auto: the Gram route at this shape) against the explicit one
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.venv/bin/bench}
PY=${PY:-.venv/bin/python}
STORE=${STORE:-$(mktemp -d)}
STEPS=${STEPS:-20000}
SIZE=${SIZE:-25}
common=(--profile paper --seeds 1 --set "data.blob_size=$SIZE" --set "attack.steps=$STEPS"
  --set attack.eval_every=500 --set threads=1)
read -r -a extra <<< "${EXTRA:-}"
common+=("${extra[@]}")
read -r -a ref <<< "${REF:-}"
read -r -a fast <<< "${FAST-"--set attack.dtype=bfloat16 --set attack.compile=true"}"
FAST_NAME=${FAST_NAME:-bf16}
run() {  # name, extra args...
  local name=$1; shift
  mkdir -p "$STORE/$name"
  [ -f "$STORE/$name/done" ] && return 0
  (cd "$STORE/$name" && /usr/bin/time -f "$name: %e s wall" "$OLDPWD/$BENCH" run blobs-rect "${common[@]}" \
    "$@" --tracking-uri "sqlite:///$STORE/$name/mlflow.db" > run.log 2>&1) && touch "$STORE/$name/done"
}
echo "stores in $STORE ($(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
run float32 "${ref[@]}" &
run "$FAST_NAME" "${fast[@]}" &
wait
if [ -n "${CONTROL:-}" ]; then run float32-compile --set attack.compile=true "${ref[@]}"; fi
tail -n1 "$STORE"/*/run.log
"$PY" benchmarks/compare_curves.py "$STORE/float32" "$STORE/$FAST_NAME" ${CONTROL:+--control "$STORE/float32-compile"}
if [ -n "${CONTROL:-}" ]; then
  echo; echo "== the control: float32 eager against float32 + compile"
  "$PY" benchmarks/compare_curves.py "$STORE/float32" "$STORE/float32-compile"
fi
