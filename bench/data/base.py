"""The arrays every task hands to the experiment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Dataset:
    """A task's arrays in the data's own scale.

    x_train (n, d), y_train (n,) in {-1, +1} (binary: a one-output model) or, when `n_classes` = C is set,
    class indices 0..C-1 as floats (a C-output model, Buzaglo et al.'s multiclass attack); x_test / y_test the held-out samples of the same
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
    n_classes: int | None = None

    @property
    def d(self) -> int:
        return int(self.x_train.shape[1])


def to_pm1(labels: np.ndarray) -> np.ndarray:
    """{0, 1} labels -> {-1, +1} floats."""
    return np.where(np.asarray(labels) > 0, 1.0, -1.0)


def class_groups(y: np.ndarray) -> list[tuple[int, float]]:
    """(class index, label value) of every label present, in order: binary labels -1 -> class 0 and
    +1 -> class 1; class indices c -> class c. Per-class metrics are named `class{index}/...`."""
    return [(0 if v == -1 else int(v), float(v)) for v in np.unique(np.asarray(y))]
