"""The cost of the truth's fit by the generic (autograd) route: time and memory of `module_gram_terms`
and `solve` on a random network of a task's shape, at the sizes of its profiles.

    python benchmarks/truth_cost.py                   # the CNN (64 channels, no pooling) at the quick and
                                                      # paper sizes of blobs-rect, mnist-parity, digits-multiclass
    python benchmarks/truth_cost.py --arch mlp        # the same through the MLP's closed form, for scale

The cost does not depend on the weights' values, so the networks are drawn at random (bench.perf) and
the rows are random inputs: r rows (n samples; n (C - 1) with pairs "all"), p parameters. Prints one line
per case: rows, parameters, the r x p float64 per-row gradients in MB (the route's memory), seconds for
the Gram terms and for the NNLS, and the process's peak resident memory so far. One thread.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from bench.attack.engine import from_module
from bench.attack.truth import mlp_gram_terms, module_gram_terms, solve
from bench.config import ModelConfig
from bench.models import make_model

# (label, image side, n samples, classes, pairs): the quick and paper sizes of the tasks that run on a CNN
CASES = (
    ("blobs-rect quick", 28, 20, 1, "max"),
    ("blobs-rect paper", 28, 100, 1, "max"),
    ("mnist-parity quick", 28, 50, 1, "max"),
    ("mnist-parity paper", 28, 500, 1, "max"),
    ("digits-multiclass quick (C=10)", 8, 100, 10, "all"),
    ("digits-multiclass paper (C=10)", 8, 500, 10, "all"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", choices=("cnn", "mlp"), default="cnn")
    parser.add_argument("--channels", default="64")
    parser.add_argument("--pool", default="none")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = ModelConfig(
        arch=args.arch,
        depth=2,
        width=1000,
        channels=tuple(int(c) for c in args.channels.split(",")),
        pool=args.pool,
    )
    print(f"network: {args.arch} {cfg.channels if args.arch == 'cnn' else '1 hidden layer of 1000'}")
    for label, side, n, classes, pairs in CASES:
        d = side * side
        model = make_model(cfg, d, 0.1, 0, torch.float64, classes, (side, side))
        net = from_module(model, d)
        rng = np.random.default_rng(0)
        x = torch.as_tensor(rng.standard_normal((n, d)))
        y = np.where(np.arange(n) % 2 == 0, -1.0, 1.0) if classes == 1 else np.arange(n) % classes
        p = sum(t.numel() for t in net.params())
        t0 = time.perf_counter()
        if args.arch == "cnn":
            terms = module_gram_terms(net, x, y, pairs)
        else:
            from bench.attack.engine import closed_form

            with torch.no_grad():
                terms = mlp_gram_terms(closed_form(net), x, y, pairs)
        t1 = time.perf_counter()
        fit = solve(terms, "layer")
        t2 = time.perf_counter()
        rows = terms.K.shape[1]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{label:32s} rows {rows:5d}  p {p:7d}  per-row gradients {rows * p * 8 / 1e6:7.1f} MB  "
            f"Gram terms {t1 - t0:6.2f} s  NNLS {t2 - t1:6.2f} s  peak RSS {rss:6.0f} MB  (fit {fit.fit:.3f})"
        )


if __name__ == "__main__":
    main()
