"""Print the attack's monitored curves of two bench stores side by side, run by run.

Usage: python benchmarks/compare_curves.py REFERENCE_STORE OTHER_STORE [KEY ...] [--control STORE] [--tol T]
Each store is a directory holding mlflow.db. Child runs are matched on (series value, seed) as in
benchmarks/compare_runs.py; for each match and each key (default: attack/ncc_dist_mean, attack/fit_check,
attack/objective) one row per step of the first key (the monitor points): the reference's value, the other's, and their difference.
Ends with the largest |difference| per key, and the lowest and highest value of each curve (a squared
residual divided by ||theta||^2 lies in [0, inf): a negative fit is a fast path gone wrong), and the same
range of the fit as the steps computed it (attack/kkt_fit, logged at every step: the fast path's own view).
Then, for the first key, the monitor points where the other run is within `--tol` (0.01) of the
reference. With `--control STORE` (a third run of the same point with the reference's precision, its
rounding reordered: float32 + torch.compile), also the points where it is within max(tol, the control's
own distance from the reference): two runs of one objective in one precision drift apart as far as that,
so a fast path inside that envelope is as close to the reference as the reference's precision is to itself.
Used by benchmarks/attack_soundness.sh (bf16 + compile against float32 over a long attack).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from mlflow.tracking import MlflowClient

from bench.tracking import load_runs

KEYS = ("attack/ncc_dist_mean", "attack/fit_check", "attack/objective")
STEP_FIT = "attack/kkt_fit"


def curves(
    store: str, keys: tuple[str, ...], step_fit: bool = True
) -> dict[tuple[str, str], dict[str, dict[int, float]]]:
    """(series value, seed) -> key -> {step: value} of every finished child run in the store, with the
    every-step fit (`STEP_FIT`, one value a step) where `step_fit`."""
    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    out = {}
    for r in load_runs(client).to_dict("records"):
        hist = {
            k: {m.step: m.value for m in client.get_metric_history(r["run_id"], k)}
            for k in (*keys, STEP_FIT)[: len(keys) + step_fit]
        }
        out[(str(r["series_value"]), str(r["seed"]))] = hist
    return out


def agreement(
    ref: dict[int, float], oth: dict[int, float], tol: float, ctl: dict[int, float] | None = None
) -> str:
    """One line: at how many of the reference's monitor points after step 0 (step -> value; step 0 is the
    random start, the same in every run) `oth` is within `tol` of it, the largest miss, and with a control
    run (`ctl`) within max(tol, |control - reference|)."""
    steps = sorted(s for s in ref if s > 0)
    gap = np.array([abs(oth.get(s, np.nan) - ref[s]) for s in steps])
    ok = gap <= tol
    text = f"within {tol:g} of the reference at {int(ok.sum())} of {len(steps)} monitor points"
    if not ok.all():
        worst = int(np.nanargmax(np.where(ok, -np.inf, gap)))
        text += f" (largest miss {gap[worst]:.4f} at step {steps[worst]})"
    if ctl is not None:
        drift = np.array([abs(ctl.get(s, np.nan) - ref[s]) for s in steps])
        inside = gap <= np.fmax(tol, drift)
        text += f"; within max({tol:g}, the control's own distance) at {int(inside.sum())} of {len(steps)}"
    return text


def main(
    reference: str, other: str, keys: tuple[str, ...], control: str | None = None, tol: float = 0.01
) -> None:
    ref, oth = curves(reference, keys), curves(other, keys)
    ctl = curves(control, keys[:1], step_fit=False) if control else {}
    matched = sorted(set(ref) & set(oth))
    if not matched:
        sys.exit(f"no run is in both stores ({len(ref)} and {len(oth)} runs)")
    for point in matched:
        print(f"\n== series value {point[0]}, seed {point[1]}")
        print(f"{'step':>7}  " + "  ".join(f"{k.split('/')[-1]:>28}" for k in keys))
        steps = sorted(ref[point][keys[0]])  # the first key's steps (monitor points)
        for step in steps:
            cells = []
            for k in keys:
                a, b = ref[point][k].get(step, np.nan), oth[point][k].get(step, np.nan)
                cells.append(f"{a:8.4f} {b:8.4f} {b - a:+9.4f}")
            print(f"{step:7d}  " + "  ".join(f"{c:>28}" for c in cells))
        for k in keys:
            a = np.array([ref[point][k].get(s, np.nan) for s in steps])
            b = np.array([oth[point][k].get(s, np.nan) for s in steps])
            print(
                f"{k}: max |diff| {np.nanmax(np.abs(b - a)):.4f}; reference in [{np.nanmin(a):.4f}, "
                f"{np.nanmax(a):.4f}], other in [{np.nanmin(b):.4f}, {np.nanmax(b):.4f}]"
            )
        print(
            f"{keys[0]}: "
            + agreement(
                ref[point][keys[0]], oth[point][keys[0]], tol, ctl[point][keys[0]] if point in ctl else None
            )
        )
        for name, store in (("reference", ref), ("other", oth)):
            fit = store[point].get(STEP_FIT, {})
            if fit:
                s_, v = np.array(list(fit)), np.array(list(fit.values()))
                later = v[s_ > 0]
                print(
                    f"{STEP_FIT} ({name}, every step): {len(v)} steps in [{v.min():.4f}, {v.max():.4f}], "
                    f"after step 0 in [{later.min():.4f}, {later.max():.4f}], negative at {int((v < 0).sum())} steps"
                )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("reference")
    ap.add_argument("other")
    ap.add_argument("keys", nargs="*")
    ap.add_argument(
        "--control", default=None, help="a store of the same point, reference precision reordered"
    )
    ap.add_argument("--tol", type=float, default=0.01, help="the first key's tolerance (default 0.01)")
    args = ap.parse_args()
    main(args.reference, args.other, tuple(args.keys) or KEYS, args.control, args.tol)
