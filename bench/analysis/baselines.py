"""Baselines that give the attack's scores meaning, built from the data alone.

- mean image: the training set's per-feature mean, one candidate (what a blur achieves).
- random candidates: the attack's own untrained starting point, mean + init_scale * N(0, 1) noise,
  as many as the attack's candidates.
- held-out: samples of the same classes the model never saw, as many as the attack's candidates
  (what "any sample of the distribution" achieves), and a further disjoint set of fresh samples for
  the membership test (`bench.analysis.memorisation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class HeldOut:
    """Held-out samples (k, d) / labels (k,) (+-1 or class indices) for the baseline, and the fresh ones (n', d)."""

    x: np.ndarray
    y: np.ndarray
    fresh_x: np.ndarray
    fresh_y: np.ndarray


def heldout_sets(x_test: np.ndarray, y_test: np.ndarray, m: int, n: int, rng: np.random.Generator) -> HeldOut:
    """Per class, m // C held-out samples then up to n // C further fresh ones, disjoint, drawn at random
    (C = 2 for labels +-1, else the number of classes in y_test).

    Classes with fewer samples give what they have (held-out first); the counts are logged by the caller.
    """
    parts: dict[str, list[np.ndarray]] = {"x": [], "y": [], "fx": [], "fy": []}
    present = np.unique(y_test)
    classes = (-1, 1) if set(present.tolist()) <= {-1.0, 1.0} else present
    k, f = m // len(classes), n // len(classes)
    for value in classes:
        idx = rng.permutation(np.flatnonzero(y_test == value))
        held, fresh = idx[:k], idx[k : k + f]
        parts["x"].append(x_test[held])
        parts["y"].append(y_test[held])
        parts["fx"].append(x_test[fresh])
        parts["fy"].append(y_test[fresh])
    cat = {k: np.concatenate(v) for k, v in parts.items()}
    return HeldOut(cat["x"], cat["y"], cat["fx"], cat["fy"])


def random_candidates(mean: np.ndarray, noise: np.ndarray, init_scale: float) -> np.ndarray:
    """The attack's untrained candidates (m, d) in the data scale: mean (d,) + init_scale * noise (m, d)."""
    return mean[None, :] + init_scale * noise


def mean_image(mean: np.ndarray) -> np.ndarray:
    """The training mean as a one-candidate set (1, d)."""
    return mean[None, :]
