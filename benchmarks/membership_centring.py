"""The membership test's floor for a degenerate candidate set: why an AUC below 0.5 is not a signal.

bench scores memorisation and membership on samples centred by the training mean (bench.experiment,
bench.analysis.memorisation). The training samples define that mean, so the centred members sum to 0,
while fresh samples carry the mean's own sampling error: on average a fresh centred sample is
anti-correlated with the mean, a member is not. A candidate set that collapsed to one constant image (in
the centred space: minus the training mean, up to a shift) is then closer to fresh samples than to
members, and the membership AUC falls below 0.5 with no information about the members at all.

This script measures that floor on the blob data (the paper design, 10 per class, 20 members against 20
fresh samples, as the defence grid scores them): candidates at one constant image, and, as the control,
Gaussian noise around the training mean. Cheap (seconds, one core):

    python benchmarks/membership_centring.py [--seeds 10] [--sizes 4,100]

Measured 2026-12-05 (10 seeds): blob size 4, the constant image AUC 0.000 (every fresh sample closer than
every member), noise 0.502 ± 0.088; blob size 100, constant 0.139 ± 0.056, noise 0.520 ± 0.072. A candidate set that
carries nothing about the members can therefore score well below 0.5: the separation comes from the
training mean the scorer centres by, not from the candidates. The DP grids' below-chance AUCs (blobs-rect at size 100, ε = 8: 0.381 [0.330, 0.432] over 10 seeds) come from
collapsed candidate sets (one ε = 8 run: mean pairwise correlation of its 40 candidates 0.97) and are
consistent with this floor, not evidence of a signal in the candidates (docs/defences.md).
"""

from __future__ import annotations

import argparse

import numpy as np

from bench.analysis.baselines import heldout_sets
from bench.analysis.memorisation import memorisation
from bench.data.split import drop_overlap
from bench.tasks.blobs import BlobData


def floor_aucs(blob_size: int, seed: int, n_per_class: int = 10) -> dict[str, float]:
    """Membership AUC of two uninformative candidate sets (m = 2n, the attack's default) on one draw."""
    data = BlobData(shape="rect", design="paper", blob_size=blob_size, n_per_class=n_per_class)
    d = data.load(seed)
    n, dim = d.x_train.shape
    rng = np.random.default_rng(seed)
    # the held-out and fresh samples as bench.experiment draws them (none equal to a training sample)
    x_test, y_test, _ = drop_overlap(d.x_train, d.x_test, d.y_test, "minmax")
    held = heldout_sets(x_test, y_test, 2 * n, n, rng)
    mean = d.x_train.mean(axis=0)
    members, held_c, fresh = d.x_train - mean, held.x - mean, held.fresh_x - mean
    jitter = 1e-3 * rng.standard_normal((2 * n, dim))  # NCC needs candidates that are not exactly flat
    sets = {
        # NCC subtracts each vector's own mean: every constant image is the same candidate
        "one constant image": np.full((2 * n, dim), 0.5) + jitter,
        "noise around the mean": mean + rng.standard_normal((2 * n, dim)),
    }
    # scored by the experiment's own function, on the same centred samples
    return {
        name: memorisation(members, d.y_train, c - mean, held_c, fresh)["membership/auc"]
        for name, c in sets.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="4,100", help="blob sizes, comma-separated")
    args = parser.parse_args()
    print("blob size | candidates | membership AUC, mean ± sd over seeds")
    for size in (int(s) for s in args.sizes.split(",")):
        rows = [floor_aucs(size, seed) for seed in range(args.seeds)]
        for name in rows[0]:
            v = np.array([r[name] for r in rows])
            print(f"{size:>9} | {name:<21} | {v.mean():.3f} ± {v.std(ddof=1):.3f}")


if __name__ == "__main__":
    main()
