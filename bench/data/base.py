"""The arrays every task hands to the experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Dataset:
    """A binary task in the data's own scale.

    x_train (n, d), y_train (n,) in {-1, +1}; x_test / y_test the held-out samples of the same
    distribution (test accuracy and the held-out baseline). `lo`, `hi`: the data range (scalars or (d,)).
    `image_shape`: (h, w) when a row is an image, else None. `stats`: numbers describing the data
    (spatial correlation, class variances) that are logged with the run. `source`: where the data came
    from, in words (stand-ins say so). `extras`: task-private objects the task's `post` hook needs (fitted
    scalers or reducers, gene-space arrays); never logged.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, int] | None
    lo: float | np.ndarray = 0.0
    hi: float | np.ndarray = 1.0
    stats: dict[str, float] = field(default_factory=dict)
    source: str = ""
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def d(self) -> int:
        return int(self.x_train.shape[1])


def to_pm1(labels: np.ndarray) -> np.ndarray:
    """{0, 1} labels -> {-1, +1} floats."""
    return np.where(np.asarray(labels) > 0, 1.0, -1.0)


def balanced_split(
    x: np.ndarray, labels: np.ndarray, n_train: int, n_test: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Draw n_train + n_test samples per class {0, 1} without replacement.

    Returns x_train, y_train (+-1), x_test, y_test; training rows are ordered class 0 then class 1.
    Raises ValueError naming the class when it has too few samples.
    """
    tr, te = [], []
    for cls in (0, 1):
        idx = np.flatnonzero(labels == cls)
        if len(idx) < n_train + 1:
            raise ValueError(
                f"class {cls} has {len(idx)} samples; n_per_class={n_train} needs at least {n_train + 1}"
            )
        idx = rng.permutation(idx)
        tr.append(idx[:n_train])
        te.append(idx[n_train : n_train + n_test])
    tr_idx, te_idx = np.concatenate(tr), np.concatenate(te)
    return x[tr_idx], to_pm1(labels[tr_idx]), x[te_idx], to_pm1(labels[te_idx])
