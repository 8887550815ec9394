"""The truth's own KKT fit against the training regime (issue 34, docs/identifiability.md): one JSON line per
(recipe, seed) with how well the training set explains the trained weights, and what training cost.

Usage: python benchmarks/truth_regimes.py TASK PROFILE [--seeds N] [--recipe "k=v k=v" ...]
Each recipe is a set of config overrides (train.*, model.*); the default recipe list is the table of
docs/identifiability.md. Only the classifier is trained (no attack): per recipe and seed it prints the exact
truth (`truth/kkt_fit`, per layer), the truth in its Clarke form (first-layer kinks relaxed) and its control (as many pairs
relaxed off the kinks, per unit), the share of
(sample, unit) pairs on a kink, the surrogate truth at the attack's alpha, the training's epochs, final loss,
stationarity (with weight decay), test accuracy, and the wall times of training and of each truth, with the
load average at start and end. Run it alone on the machine for the wall times (one thread per run).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from bench.attack.truth import clarke_truth, truth_fit
from bench.experiment import prepare, resolve_config
from bench.tasks import get_task

RECIPES = (
    "",
    "train.extra_epochs=10000",
    "train.init_hidden=0.01",
    "train.weight_decay=1e-3",
    "train.weight_decay=1e-2",
    "train.weight_decay=1e-2 train.max_epochs=5000",
    "train.lr=0.1",
    "model.width=4000",
)


def off_kink_control(weights, x, seed: int) -> torch.Tensor:
    """Per first-layer unit, as many (sample, unit) pairs as it has on its kink, drawn from those off it: a
    relaxation of the same size that the Clarke form does not justify (the control for `clarke_truth`)."""
    from bench.attack.truth import Kinks

    kinks = Kinks(weights, x, np.zeros(len(x)), "max", 1e-3)
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros_like(kinks.kink)
    for k in range(mask.shape[1]):
        off = torch.nonzero(~kinks.kink[:, k]).flatten()
        take = min(int(kinks.kink[:, k].sum()), len(off))
        mask[off[torch.randperm(len(off), generator=gen)[:take]], k] = True
    return mask


def row(task: str, profile: str, recipe: str, seed: int) -> dict:
    sets = dict(part.split("=", 1) for part in recipe.split())
    cfg = resolve_config(get_task(task), profile, sets | {"threads": "1"}, None, seed)
    load = os.getloadavg()[0]
    prep = prepare(cfg)
    x = prep.data.x_train - prep.mean
    y = prep.data.y_train
    a = cfg.attack
    t0 = time.perf_counter()
    exact = truth_fit(prep.weights, x, y, a.fit_norm, a.fit_layers, a.pairs)
    t1 = time.perf_counter()
    clarke, kinks = clarke_truth(prep.weights, x, y, a.fit_norm, a.fit_layers, a.pairs)
    t2 = time.perf_counter()
    surrogate = truth_fit(prep.weights, x, y, a.fit_norm, a.fit_layers, a.pairs, a.alpha)
    control = clarke_truth(
        prep.weights, x, y, a.fit_norm, a.fit_layers, a.pairs, mask=off_kink_control(prep.weights, x, seed)
    )[0]
    m = prep.train_metrics
    rnd = lambda v: round(float(v), 4)  # noqa: E731
    return {
        "task": task,
        "profile": profile,
        "recipe": recipe or "(defaults)",
        "seed": seed,
        "truth": rnd(exact.fit),
        "truth_layers": [rnd(v) for v in exact.layers],
        "clarke": rnd(clarke.fit),
        "clarke_layers": [rnd(v) for v in clarke.layers],
        "kinks_frac": rnd(kinks / (len(x) * prep.weights.mats[0].shape[0])),
        "control_layers": [rnd(v) for v in control.layers],
        "surrogate": rnd(surrogate.fit),
        "support": exact.support,
        "epochs": int(m["train_epochs"]),
        "train_loss": float(f"{m['train_loss']:.3g}"),
        "stationarity": rnd(m.get("train_stationarity", float("nan"))),
        "test_accuracy": rnd(m.get("test_accuracy", float("nan"))),
        "train_s": round(prep.timings["train_s"], 1),
        "truth_s": round(t1 - t0, 2),
        "clarke_s": round(t2 - t1, 1),
        "load": [round(load, 2), round(os.getloadavg()[0], 2)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task")
    parser.add_argument("profile")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--recipe", action="append", help='overrides, e.g. "train.weight_decay=1e-2"')
    args = parser.parse_args()
    torch.set_num_threads(1)
    for recipe in args.recipe or RECIPES:
        for seed in range(args.seeds):
            print(json.dumps(row(args.task, args.profile, recipe, seed)), flush=True)


if __name__ == "__main__":
    main()
