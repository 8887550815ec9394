"""Are a CNN's reconstructions mosaics of training images? Region-wise matching beside whole-image matching.

Usage: python benchmarks/cnn_mosaic.py [BLOB_SIZE] [SEED ...]   (default: blob size 1, seed 0)

Runs blobs-rect at the quick profile on the MLP and on the default CNN (one 3x3 convolution of 64
channels and a linear head) for each seed, and scores every candidate two ways: `whole`, 1 - NCC to its
nearest training image (as `ncc_dist`, but per candidate); `regional`, the mean over the 16 7x7 regions of
1 - NCC to the nearest training image's same region, and `sources`, how many distinct training images those
16 nearest regions come from. A candidate that copies one training image has regional ~ whole and few
sources; a mosaic of training patches has regional < whole and many sources. Why a CNN's KKT conditions
allow mosaics: the head's weight at (channel, position) is a weighted sum of the training images'
activations at that position, so the constraints tie each position to a sum over samples, not positions to
each other (docs/cnn.md). Also prints the truth's and the attack's fit (exact ReLU, layer norm).
"""

from __future__ import annotations

import sys

import numpy as np

from bench.experiment import resolve_config, run_experiment
from bench.tasks import get_task


def ncc(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of rows a (k, p) with rows b (n, p): (k, n)."""
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    norm = np.linalg.norm(a, axis=-1, keepdims=True) * np.linalg.norm(b, axis=-1)[None]
    return (a @ b.T) / np.maximum(norm, 1e-12)


def mosaic(recon: np.ndarray, train: np.ndarray, side: int = 28, region: int = 7) -> dict[str, float]:
    """whole, regional (mean over candidates) and sources (mean distinct source images) of candidates
    recon (k, side^2) against training images train (n, side^2)."""
    R, X = recon.reshape(-1, side, side), train.reshape(-1, side, side)
    whole = 1 - ncc(recon, train).max(1)
    regional, sources = [], []
    for cand in R:
        best = []
        for a in range(0, side, region):
            for b in range(0, side, region):
                c = ncc(
                    cand[a : a + region, b : b + region].reshape(1, -1),
                    X[:, a : a + region, b : b + region].reshape(len(X), -1),
                )[0]
                best.append((1 - c.max(), int(c.argmax())))
        regional.append(np.mean([d for d, _ in best]))
        sources.append(len({s for _, s in best}))
    return {
        "whole": float(whole.mean()),
        "regional": float(np.mean(regional)),
        "sources": float(np.mean(sources)),
    }


def main(blob: int, seeds: list[int]) -> None:
    for seed in seeds:
        for arch in ("mlp", "cnn"):
            cfg = resolve_config(
                get_task("blobs-rect"), "quick", {"model.arch": arch, "threads": 1}, blob, seed
            )
            res = run_experiment(cfg)
            m = res.settings[0].metrics
            out = mosaic(res.settings[0].recon, res.data.x_train)
            print(
                f"blob {blob} seed {seed} {arch}: whole {out['whole']:.3f}  regional {out['regional']:.3f}  "
                f"sources {out['sources']:.1f} of 16  truth fit {m['truth/kkt_fit']:.3f}  attack fit "
                f"{m['attack/fit_relu']:.3f}",
                flush=True,
            )


if __name__ == "__main__":
    args = [int(a) for a in sys.argv[1:]]
    main(args[0] if args else 1, args[1:] or [0])
