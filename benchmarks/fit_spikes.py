"""Spikes of the attack's fit, run by run: how far the fit as the steps computed it (attack/kkt_fit,
logged at every step) rose above its own running minimum.

Usage: python benchmarks/fit_spikes.py STORE [STORE ...]
Each store is a directory holding mlflow.db. For every finished child run: the largest rise of the fit
above its lowest value so far (after the first --skip steps, 200 by default: the start of the run is a
descent from ~1, not a spike), the step where it happened, and the number of separate excursions of
more than --threshold (0.1) above the running minimum. Ends with a line per store: the median and the
largest of the per-run largest rises and how many runs had an excursion. An Adam step can grow to
several times its step size where a gradient grows after a calm stretch (bench.config.AttackConfig,
`beta2`); such a step throws the candidates off. It is the optimisation, not rounding: at the one spike
checked, a float64 check at that step read the same fit (docs/attack.md).
"""

from __future__ import annotations

import argparse

import numpy as np
from mlflow.tracking import MlflowClient

from bench.tracking import in_series_order, load_runs, metric_history


def spikes(fit: np.ndarray, steps: np.ndarray, skip: int, threshold: float) -> tuple[float, int, int]:
    """(largest rise above the running minimum after `skip`, its step, excursions above `threshold`)."""
    running_min = np.minimum.accumulate(fit)
    rise = np.where(steps > skip, fit - running_min, 0.0)
    above = rise > threshold
    excursions = int(np.sum(above[1:] & ~above[:-1]) + above[0])
    i = int(np.argmax(rise))
    return float(rise[i]), int(steps[i]), excursions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--skip", type=int, default=200)
    ap.add_argument("--threshold", type=float, default=0.1)
    args = ap.parse_args()
    for store in args.stores:
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        runs = load_runs(client)
        print(f"== {store}")
        largest, spiked = [], 0
        for r in in_series_order(runs):
            steps, fit = metric_history(client, r["run_id"], "attack/kkt_fit")
            if not len(fit):
                continue
            rise, at, n = spikes(fit, steps, args.skip, args.threshold)
            largest.append(rise)
            spiked += n > 0
            print(
                f"series value {r['series_value']}, seed {r['seed']}: largest rise {rise:.3f} at step {at}, "
                f"{n} excursion(s) > {args.threshold}"
            )
        if largest:
            print(
                f"{len(largest)} runs: largest rise median {np.median(largest):.3f}, max {max(largest):.3f}; "
                f"{spiked} with an excursion > {args.threshold}\n"
            )


if __name__ == "__main__":
    main()
