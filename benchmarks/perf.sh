#!/usr/bin/env bash
# The attack engine's figures (issue 3): per-step speed vs the reference, GEMM peak, population throughput,
# and the time-to-quality race. Single thread, as the goals are stated.
set -euo pipefail
cd "$(dirname "$0")/.."
B=.venv/bin/bench
$B perf --depth 3 --width 1000 --n 100 --threads 1                      # 784-1000-1000-1, m=200
$B perf --depth 3 --width 1000 --n 100 --threads 1 --dtype float64
$B perf --depth 3 --width 1000 --n 100 --threads 1 --dtype bfloat16                 # bf16 products, float32 state
$B perf --depth 3 --width 1000 --n 100 --threads 1 --population 8 --no-reference
$B perf --depth 2 --width 1000 --n 10 --threads 1 --population 8 --no-reference   # the quick blob model
$B perf --threads 1 --time-to-quality "${REF_STEPS:-5000}"
