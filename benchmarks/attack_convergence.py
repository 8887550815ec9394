"""Time to a quality: how many steps and seconds each attack variant needs to reach what the previous
attack reaches with a long budget, on paper-profile points of blobs-rect (n = 50 per class,
784-1000-1000-1, m = 200 candidates).

Usage: python benchmarks/attack_convergence.py [--sizes 1,25,100] [--seeds 0,1,2] [--points 1:0,25:1]
           [--budget 5000] [--ref-steps 20000] [--ref-fast] [--variants "NAME;NAME"] [--threads 1]
           [--cache DIR] [--table-only] [--targets recorded]

For each (blob size, seed) the classifier is trained once (cached in --cache). The reference is the attack
as it was when issue 17 was filed (REFERENCE: the Gram route, Haim et al.'s ||theta||^2 normalisation, Adam
at a constant 0.01) run for --ref-steps in float32; its final monitored ncc_dist_mean is the point's target.
--ref-fast runs the reference in bfloat16 + torch.compile on the explicit residual instead (the Gram route
is unsound in bfloat16; the float64 check re-scores every monitor point), ~2x cheaper. Every variant then
runs --budget steps from the same classifier and seed. A row per variant gives: the points that reach the
target within the budget, the median steps to it (monitor points every 250 steps), the median seconds to
it (steps to it x the run's seconds per step, compilation and monitoring included), its milliseconds per
step, the mean final error, and how many attacks the float64 check flagged, converged and degraded. The
first row is the reference's own curve. Below the table, every variant is compared with the reference and
every further variant with the first variant, point by point: the mean difference of the final error (and,
between variants, of DSSIM and memorised/frac, the second metrics) and its 95% t interval over
the points. The training-data error is the benchmark's measuring stick only: no variant reads it.

--targets recorded skips the reference runs (~47 min of the float32 ones at 2 processes) and takes each
point's target from RECORDED_TARGETS, the float32 references measured on 2026-12-04 (to 3 decimals, as
docs/attack.md gives them); the table then has no reference row, and the comparison with the reference is
against those targets. Use it only where the classifiers are the same: the script prints the defaults'
final error, to compare with the recorded one.

Every attack is cached in --cache under its point, budget and whole attack config (see `key`), so the
points can be split across processes (--points) and a last call with all points (--table-only: nothing new
is run) prints the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import pickle
import time
from pathlib import Path

import numpy as np

# the attack when issue 17 was filed (bench's defaults then), on top of today's config
REFERENCE = {
    "attack.residual": "gram",
    "attack.fit_norm": "theta",
    "attack.lr": 0.01,
    "attack.beta2": 0.999,
    "attack.schedule": "constant",
    "attack.warmup": 0,
    "attack.stop_window": 1000,  # then a fixed 1,000 steps; now a fifth of the steps by default
}
_FAST = {"attack.dtype": "bfloat16", "attack.compile": True}
# the step settings of bench's defaults before the beta2 round (2026-12-04): Adam's beta2 0.999, lr 0.02
_PREV = {"attack.beta2": 0.999, "attack.lr": 0.02}
# (blob size, seed) -> the reference's final ncc_dist_mean after 20,000 float32 steps (Gram route), measured
# by `bash benchmarks/attack_convergence.sh` on 2026-12-04 (docs/attack.md)
RECORDED_TARGETS = {
    (1, 0): 0.251, (1, 1): 0.308, (1, 2): 0.260,
    (25, 0): 0.312, (25, 1): 0.222, (25, 2): 0.200,
    (100, 0): 0.469, (100, 1): 0.580, (100, 2): 0.411,
}  # fmt: skip
# name -> attack overrides (on top of the paper profile and today's defaults; the cache key is the whole
# resolved attack config, so a variant measured under earlier defaults pins what it relied on)
VARIANTS: dict[str, dict[str, object]] = {
    "bench's defaults, float32": {},
    "bench's defaults, bf16+compile": _FAST,
    "previous defaults, bf16+compile (explicit residual)": _FAST
    | REFERENCE
    | {"attack.residual": "explicit"},
    "beta2 0.999, lr 0.02 (the defaults before), float32": _PREV,
    "beta2 0.999, lr 0.02 (the defaults before), bf16+compile": _FAST | _PREV,
    "beta2 0.999, lr 0.02 constant, bf16+compile": _FAST
    | _PREV
    | {"attack.schedule": "constant", "attack.warmup": 0},
    "beta2 0.999, lr 0.02, alpha 30->300, bf16+compile": _FAST
    | _PREV
    | {"attack.alpha": 30.0, "attack.alpha_final": 300.0},
    "SGD momentum 0.9 (the reference code's optimiser), lr 1, bf16+compile": _FAST
    | {"attack.optimizer": "sgd", "attack.lr": 1.0, "attack.lr_lambda": 0.01},
    "beta2 0.999, lr 0.03, bf16+compile": _FAST | {"attack.beta2": 0.999, "attack.lr": 0.03},
    "beta2 0.999, lr 0.02, step schedule (x0.1 after 2/3), bf16+compile": _FAST
    | _PREV
    | {"attack.schedule": "step"},
    "beta2 0.999, lr 0.02, lr_lambda 0.03, bf16+compile": _FAST | _PREV | {"attack.lr_lambda": 0.03},
    "beta2 0.99, lr 0.02, bf16+compile": _FAST | {"attack.beta2": 0.99, "attack.lr": 0.02},
    "beta2 0.99, lr 0.02, step schedule, bf16+compile": _FAST
    | {"attack.beta2": 0.99, "attack.lr": 0.02, "attack.schedule": "step"},
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
        "dssim": sr.metrics["dssim_mean"],  # second metrics, for the paired comparisons between variants
        "memorised": sr.metrics["memorised/frac"],
        "converged": sr.metrics["attack/converged"],
        "flagged": sr.metrics["attack/fit_check_failed"],
        "degraded": sr.metrics.get("attack/degraded", float("nan")),
    }


def cached_attack(prep, steps: int, overrides: dict[str, object], path: Path, run: bool) -> dict | None:
    """`attack`, read from / written to `path`; None when it is not cached and `run` is False."""
    if path.exists():
        return pickle.loads(path.read_bytes())
    if not run:
        return None
    out = attack(prep, steps, overrides)
    path.write_bytes(pickle.dumps(out))
    return out


def load() -> str:
    """The 1-, 5- and 15-minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# attack fields added after results were cached -> the value that behaves as before the field existed
# (the key leaves such a field out at that value: a cached result keeps its key, a new default is a new key)
_ADDED = {"stop_floor": 0.0}


def key(overrides: dict[str, object], steps: int) -> str:
    """The cache key of an attack of `steps` steps (the file name carries them): its whole attack config,
    defaults included (a change of bench's defaults is a new key, never a stale cached result), with the
    plateau window resolved against `steps` (`stop_window` 0 is a fifth of them)."""
    from bench.config import AttackConfig

    assert all(k.startswith("attack.") for k in overrides), overrides
    cfg = dataclasses.replace(AttackConfig(), **{k.removeprefix("attack."): v for k, v in overrides.items()})
    fields = dataclasses.asdict(cfg) | {"stop_window": dataclasses.replace(cfg, steps=steps).plateau_window()}
    for name, before in _ADDED.items():  # a field added since results were cached, at its old behaviour
        if fields[name] == before:
            del fields[name]
    return hashlib.sha1(repr(sorted(fields.items())).encode()).hexdigest()[:10]


def steps_to(curve: tuple[np.ndarray, np.ndarray], target: float) -> float:
    steps, values = curve
    hit = np.flatnonzero(values <= target)
    return float(steps[hit[0]]) if len(hit) else float("nan")


def row(name: str, rows: list[dict], budget: int) -> str:
    st = np.array([r["steps_to"] for r in rows])
    sec = st * np.array([r["s_per_step"] for r in rows])
    reached = np.isfinite(st)
    if reached.all():
        med_st = f"{np.median(st):.0f}"
    elif reached.any():
        med_st = f"{np.median(st[reached]):.0f} (of those reaching)"
    else:
        med_st = f"> {budget}"
    med_s = f"{np.median(sec[reached]):.0f}" if reached.any() else "–"
    ms = np.median([r["s_per_step"] for r in rows]) * 1e3
    final = np.mean([r["final"] for r in rows])
    bad = sum(int(r["flagged"]) for r in rows)
    conv = sum(int(r["converged"] == 1) for r in rows)
    degraded = sum(int(r["degraded"] == 1) for r in rows)
    return (
        f"| {name} | {reached.sum()} of {len(rows)} | {med_st} | {med_s} | {ms:.1f} | {final:.4f} | {bad} "
        f"| {conv} / {degraded} |"
    )


def paired(
    name: str, rows: list[dict], base: str, base_rows: list[dict], figure: str = "final"
) -> str | None:
    """`figure` (final: ncc_dist; dssim; memorised) of `name` minus `base` on the points both have (attacks
    cached before a figure was recorded lack it): mean and 95% t interval over points."""
    from bench.analysis.trends import mean_ci

    other = {r["point"]: r[figure] for r in base_rows if figure in r}
    diffs = np.array([r[figure] - other[r["point"]] for r in rows if r["point"] in other and figure in r])
    if len(diffs) < 2:
        return None
    mean, lo, hi = mean_ci(diffs)
    label = {"final": "ncc_dist"}.get(figure, figure)
    return (
        f"{name} - {base}: final {label} {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] over {len(diffs)} points "
        f"(per point {', '.join(f'{d:+.4f}' for d in diffs)})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,25,100")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--points", default="", help="size:seed,... (instead of --sizes x --seeds)")
    ap.add_argument("--budget", type=int, default=5000)
    ap.add_argument("--ref-steps", type=int, default=20000)
    ap.add_argument("--ref-fast", action="store_true", help="reference in bf16 + compile (explicit residual)")
    ap.add_argument("--variants", default=";".join(VARIANTS), help="names from VARIANTS, separated by ;")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", default=".bench_cache/convergence")
    ap.add_argument("--table-only", action="store_true", help="run nothing: the table of what is cached")
    ap.add_argument("--targets", choices=["run", "recorded"], default="run", help="run the references or not")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    ref_over = REFERENCE | (_FAST | {"attack.residual": "explicit"} if args.ref_fast else {})
    names = [v.strip() for v in args.variants.split(";") if v.strip()]
    if args.points:
        points = [tuple(int(v) for v in p.split(":")) for p in args.points.split(",")]
    else:
        points = [(int(s), int(e)) for s in args.sizes.split(",") for e in args.seeds.split(",")]
    recorded = args.targets == "recorded"
    if recorded:
        ref_name = "reference: previous defaults, 20,000 float32 steps (recorded targets)"
    else:
        ref_name = f"reference: previous defaults{' (bf16+compile)' if args.ref_fast else ''}, its own curve"
    print(f"{len(points)} points, budget {args.budget}, {ref_name}")
    if not recorded:
        print(f"reference: {args.ref_steps} steps {ref_over}")
    print(f"threads {args.threads}, load at start {load()}", flush=True)
    results: dict[str, list[dict[str, object]]] = {n: [] for n in [ref_name, *names]}
    targets = []
    for size, seed in points:
        tag = f"{size}-{seed}-t{args.threads}"
        prep = None if args.table_only else prepared(size, seed, args.threads, cache)
        if recorded:  # a target without a curve: no row of its own in the table
            if (size, seed) not in RECORDED_TARGETS:
                print(f"size {size} seed {seed}: no recorded target, skipped")
                continue
            ref = {"final": RECORDED_TARGETS[size, seed]}
        else:
            ref = cached_attack(
                prep,
                args.ref_steps,
                ref_over,
                cache / f"ref-{tag}-{args.ref_steps}-{key(ref_over, args.ref_steps)}.pkl",
                prep is not None,
            )
            if ref is None:
                print(f"size {size} seed {seed}: no reference cached, skipped")
                continue
            ref["steps_to"] = steps_to(ref["curve"], ref["final"])
        ref["point"] = (size, seed)
        results[ref_name].append(ref)
        targets.append(ref["final"])
        speed = "recorded" if recorded else f"{ref['s_per_step'] * 1e3:.1f} ms/step"
        print(f"size {size} seed {seed}: target ncc_dist {ref['final']:.4f} ({speed})")
        for name in names:
            over = VARIANTS[name]
            out = cached_attack(
                prep,
                args.budget,
                over,
                cache / f"var-{tag}-{args.budget}-{key(over, args.budget)}.pkl",
                prep is not None,
            )
            if out is None:
                print(f"  {name}: not cached")
                continue
            out["steps_to"] = steps_to(out["curve"], ref["final"])
            out["point"] = (size, seed)
            results[name].append(out)
            print(
                f"  {name}: final {out['final']:.4f}, steps to target {out['steps_to']:.0f}, "
                f"{out['s_per_step'] * 1e3:.1f} ms/step, flagged {out['flagged']:.0f}",
                flush=True,
            )
    print(f"\nload at end {load()}")
    print(
        f"| variant | reach the target in {args.budget} steps | median steps to it | median s to it | ms/step "
        f"| mean final ncc_dist (targets' mean {np.mean(targets):.4f}) | flagged by the float64 check "
        "| converged / degraded |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        if rows and not (name == ref_name and recorded):
            print(row(name, rows, args.ref_steps if name == ref_name else args.budget))
    for name in names:  # every variant against the reference's final error, point by point
        line = paired(name, results[name], "reference", results[ref_name])
        if line:
            print(line)
    for name in names[1:]:  # every further variant against the first, point by point, under three metrics
        for figure in ("final", "dssim", "memorised"):
            line = paired(name, results[name], names[0], results[names[0]], figure)
            if line:
                print(line)


if __name__ == "__main__":
    main()
