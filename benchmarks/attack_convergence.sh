#!/usr/bin/env bash
# Time to a quality (issue 17): one row per attack variant, the steps and seconds it needs to reach what the
# previous attack reaches in REF_STEPS (20,000) steps, over 3 blob sizes x 3 seeds of blobs-rect's paper
# profile. The 9 points are split over two single-thread processes (this machine has 2 cores); every
# attack is cached in CACHE, so an interrupted run resumes, and the last call prints the table.
#   bash benchmarks/attack_convergence.sh                 # float32 references (61 min with 1 variant, 2026-12-04, load ~2)
#   REF_FAST=1 bash benchmarks/attack_convergence.sh      # bf16 + compile references (73 min, 2 variants, load 1-2)
#   VARIANTS="NAME;NAME" ...                              # names from VARIANTS in attack_convergence.py
#   TARGETS=recorded ...      # no reference runs: the float32 targets recorded on 2026-12-04 (same classifiers;
#                             # 31 min for 4 variants, load ~2)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CACHE=${CACHE:-.bench_cache/convergence}
args=(--budget "${BUDGET:-5000}" --ref-steps "${REF_STEPS:-20000}" --threads 1 --cache "$CACHE")
[ -n "${REF_FAST:-}" ] && args+=(--ref-fast)
[ -n "${VARIANTS:-}" ] && args+=(--variants "$VARIANTS")
[ -n "${TARGETS:-}" ] && args+=(--targets "$TARGETS")
mkdir -p "$CACHE"
"$PY" benchmarks/attack_convergence.py "${args[@]}" --points 1:0,1:1,1:2,25:0,25:1 > "$CACHE/a.log" 2>&1 &
"$PY" benchmarks/attack_convergence.py "${args[@]}" --points 25:2,100:0,100:1,100:2 > "$CACHE/b.log" 2>&1 &
wait
"$PY" benchmarks/attack_convergence.py "${args[@]}" --table-only
