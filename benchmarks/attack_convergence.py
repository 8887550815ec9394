"""Time to a quality: how many steps and seconds each attack variant needs to reach what the reference
attack reaches with a long budget, on paper-profile points of blobs-rect (n = 50 per class, 784-1000-1000-1,
m = 200 candidates).

Usage: python benchmarks/attack_convergence.py [--sizes 1,25,100] [--seeds 0,1,2] [--budget 5000]
           [--ref-steps 20000] [--ref-overrides k=v,...] [--variants "NAME;NAME"] [--threads 2] [--cache DIR]

For each (blob size, seed) the classifier is trained once (cached in --cache). The reference is today's
attack (bench's defaults in float32, or --ref-overrides) run for --ref-steps; its final monitored
ncc_dist_mean is the point's target. Every variant then runs --budget steps from the same classifier and
the same seed; a row per variant gives: the points that reach the target within the budget, the median
steps to it (monitor points every 250 steps), the median seconds to it (steps x the run's own seconds per
step, compilation excluded: it is paid once per process), and the mean final error against the targets.
The training-data error is the benchmark's measuring stick only: no variant reads it.
"""

from __future__ import annotations

import argparse
import pickle
import time
from pathlib import Path

import numpy as np

# name -> attack overrides (on top of the paper profile); bench's defaults are the first row
_FAST = {"attack.dtype": "bfloat16", "attack.compile": True}
VARIANTS: dict[str, dict[str, object]] = {
    "float32 (bench's defaults)": {},
    "float32, Gram route (the attack before this round)": {"attack.residual": "gram"},
    "bf16+compile": _FAST,
    "bf16+compile, layer norm": _FAST | {"attack.fit_norm": "layer"},
    "bf16+compile, layer norm, lr 0.02": _FAST | {"attack.fit_norm": "layer", "attack.lr": 0.02},
    "bf16+compile, layer norm, cosine from 0.02": _FAST
    | {"attack.fit_norm": "layer", "attack.lr": 0.02, "attack.schedule": "cosine", "attack.warmup": 100},
    "bf16+compile, layer norm, alpha 30->300": _FAST
    | {"attack.fit_norm": "layer", "attack.alpha": 30.0, "attack.alpha_final": 300.0},
    "bf16+compile, SGD momentum 0.9 (the reference's optimiser)": _FAST
    | {"attack.optimizer": "sgd", "attack.lr": 1.0, "attack.lr_lambda": 0.01},
}


def prepared(size: int, seed: int, threads: int, cache: Path):
    """The trained classifier of one paper-profile point (cached)."""
    from bench.experiment import prepare, resolve_config
    from bench.tasks import get_task

    path = cache / f"blobs-rect-paper-{size}-{seed}-t{threads}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())
    cfg = resolve_config(get_task("blobs-rect"), "paper", {"threads": threads}, size, seed)
    prep = prepare(cfg)
    path.write_bytes(pickle.dumps(prep))
    return prep


def attack(prep, steps: int, overrides: dict[str, object]) -> dict[str, object]:
    """One attack: its monitored error curve, seconds per step and final figures."""
    from bench.config import apply_overrides
    from bench.experiment import attack_and_evaluate

    cfg = apply_overrides(prep.config, {"attack.steps": steps, "attack.eval_every": 250, **overrides})
    t0 = time.perf_counter()
    res = attack_and_evaluate(prep, cfg)
    wall = time.perf_counter() - t0
    sr = res.settings[0]
    steps_, values = sr.curves["attack/ncc_dist_mean"]
    return {
        "curve": (np.asarray(steps_), np.asarray(values)),
        "s_per_step": res.timings["attack_s"] / max(1, steps),
        "wall": wall,
        "final": sr.metrics["ncc_dist_mean"],
        "converged": sr.metrics["attack/converged"],
        "flagged": sr.metrics["attack/fit_check_failed"],
    }


def steps_to(curve: tuple[np.ndarray, np.ndarray], target: float) -> float:
    steps, values = curve
    hit = np.flatnonzero(values <= target)
    return float(steps[hit[0]]) if len(hit) else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,25,100")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--ref-steps", type=int, default=20000)
    ap.add_argument(
        "--ref-overrides",
        default="attack.residual=gram",
        help="k=v,... for the reference run (default: the attack before this round, float32 Gram route)",
    )
    ap.add_argument("--variants", default=";".join(VARIANTS), help="names from VARIANTS, separated by ;")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default=".bench_cache/convergence")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ref_over = dict(kv.split("=", 1) for kv in args.ref_overrides.split(",") if kv)
    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    points = [(int(s), int(e)) for s in args.sizes.split(",") for e in args.seeds.split(",")]
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{len(points)} points, budget {args.budget}, reference {args.ref_steps} steps {ref_over or ''}")
    print(f"threads {args.threads}, load at start {' '.join(load)}")
    results: dict[str, list[dict[str, object]]] = {n: [] for n in names}
    targets = []
    for size, seed in points:
        prep = prepared(size, seed, args.threads, cache)
        ref_path = cache / f"ref-{size}-{seed}-t{args.threads}-{args.ref_steps}-{args.ref_overrides}.pkl"
        if ref_path.exists():
            ref = pickle.loads(ref_path.read_bytes())
        else:
            ref = attack(prep, args.ref_steps, ref_over)
            ref_path.write_bytes(pickle.dumps(ref))
        targets.append(ref["final"])
        print(
            f"size {size} seed {seed}: target ncc_dist {ref['final']:.4f} ({ref['s_per_step'] * 1e3:.1f} ms/step)"
        )
        for name in names:
            out = attack(prep, args.budget, VARIANTS[name])
            out["steps_to"] = steps_to(out["curve"], ref["final"])
            results[name].append(out)
            print(
                f"  {name}: final {out['final']:.4f}, steps to target {out['steps_to']:.0f}, "
                f"{out['s_per_step'] * 1e3:.1f} ms/step, flagged {out['flagged']:.0f}",
                flush=True,
            )
    print(f"\nload at end {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(
        f"| variant | reach the target in {args.budget} steps | median steps to it | median s to it | ms/step | mean final ncc_dist (target {np.mean(targets):.4f}) |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        rows = results[name]
        st = np.array([r["steps_to"] for r in rows])
        sec = st * np.array([r["s_per_step"] for r in rows])
        reached = np.isfinite(st)
        med_st = (
            f"{np.median(st[reached]):.0f}"
            if reached.all()
            else (
                f"> {args.budget}"
                if not reached.any()
                else f"{np.median(st[reached]):.0f} (of those reaching)"
            )
        )
        med_s = f"{np.median(sec[reached]):.0f}" if reached.any() else "–"
        ms = np.median([r["s_per_step"] for r in rows]) * 1e3
        final = np.mean([r["final"] for r in rows])
        print(f"| {name} | {reached.sum()} of {len(rows)} | {med_st} | {med_s} | {ms:.1f} | {final:.4f} |")


if __name__ == "__main__":
    main()
