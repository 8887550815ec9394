"""Does precision change reconstruction quality? The quick blob series, same seeds: float32, float64 and
bfloat16 (mixed: bf16 matrix products, float32 state) attacks.

Usage: .venv/bin/python benchmarks/dtype_quality.py [task] [seeds]
"""

import sys
import time

import torch

from bench.experiment import resolve_config, run_experiment
from bench.tasks import get_task

torch.set_num_threads(1)
task = get_task(sys.argv[1] if len(sys.argv) > 1 else "blobs-rect")
seeds = int(sys.argv[2]) if len(sys.argv) > 2 else 1
keys = ["dssim_mean", "corr_mean", "l2_mean", "kkt_fit_final"]
print(f"{'size':>5} {'seed':>4} {'dtype':>8} {'attack s':>8} " + " ".join(f"{k:>14}" for k in keys))
for size in task.profiles["quick"].series:
    for seed in range(seeds):
        for dtype in ("float32", "float64", "bfloat16"):
            cfg = resolve_config(task, "quick", {"attack.dtype": dtype}, size, seed)
            t0 = time.perf_counter()
            res = run_experiment(cfg)
            m = res.settings[0].metrics
            row = " ".join(f"{m[k]:>14.5f}" for k in keys)
            print(f"{size:>5} {seed:>4} {dtype:>8} {res.timings['attack_s']:>8.1f} {row}", flush=True)
