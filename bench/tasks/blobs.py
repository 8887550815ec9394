"""Blob series: reconstruction error against spatial correlation (the paper's figs 4-6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.config import require
from bench.data.base import Dataset, to_pm1
from bench.registry import Profile, Task


@dataclass
class BlobData:
    """Control (scattered pixels, y = -1) vs blobs (y = +1); see bench.data.blobs.

    `n_per_class` training images per class; `n_test_per_class` held-out images per class (test
    accuracy and the held-out baseline).
    """

    shape: Literal["rect", "walk"] = "rect"
    blob_size: int = 1
    n_pixels: int = 100
    side: int = 28
    n_per_class: int = 10
    n_test_per_class: int = 50

    def check(self) -> None:
        require(self.side >= 3, "data.side", self.side, "an integer >= 3")
        require(
            0 < self.n_pixels <= self.side**2 // 3,
            "data.n_pixels",
            self.n_pixels,
            f"in [1, {self.side**2 // 3}] (a third of the {self.side}x{self.side} grid)",
        )
        require(
            1 <= self.blob_size <= self.n_pixels, "data.blob_size", self.blob_size, "in [1, data.n_pixels]"
        )
        require(self.n_per_class >= 1, "data.n_per_class", self.n_per_class, "a positive integer")
        require(
            self.n_test_per_class >= 1, "data.n_test_per_class", self.n_test_per_class, "a positive integer"
        )

    def load(self, seed: int) -> Dataset:
        from bench.data.blobs import make_blob_classes, morans_i

        rng = np.random.default_rng([seed, 1])
        args = (self.blob_size, self.shape, self.n_pixels, self.side)
        x_tr, lab_tr = make_blob_classes(rng, self.n_per_class, *args)
        x_te, lab_te = make_blob_classes(rng, self.n_test_per_class, *args)
        shape = (self.side, self.side)
        moran = np.array([morans_i(img.reshape(shape)) for img in x_tr])
        stats = {
            "moran_i/class0": float(moran[lab_tr == 0].mean()),
            "moran_i/class1": float(moran[lab_tr == 1].mean()),
            "moran_i/mean": float(moran.mean()),
        }
        source = f"synthetic {self.shape} blobs of {self.blob_size} px ({self.n_pixels} on-pixels)"
        return Dataset(x_tr, to_pm1(lab_tr), x_te, to_pm1(lab_te), shape, 0.0, 1.0, stats, source)


_SMOKE = {
    "data.n_per_class": 6,
    "data.n_test_per_class": 12,
    "model.depth": 2,
    "model.width": 200,
    "train.max_epochs": 3000,
    "attack.steps": 300,
    "attack.eval_every": 100,
}
_QUICK = {
    "data.n_per_class": 10,
    "data.n_test_per_class": 30,
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 1000,
}
_PAPER = {
    "data.n_per_class": 50,
    "data.n_test_per_class": 100,
    "attack.steps": 5000,
    "attack.eval_every": 250,
}

TASKS = tuple(
    Task(
        name=_name,
        family="blobs",
        summary=f"control pixels vs {_shape} blobs of growing size; error vs spatial correlation (figs 4-6)",
        data=BlobData(shape=_shape),
        series_key="data.blob_size",
        series_label="blob size (pixels)",
        profiles={
            "smoke": Profile(_SMOKE, series=(1, 25)),
            "quick": Profile(_QUICK, series=(1, 4, 25, 100)),
            "paper": Profile(_PAPER, series=(1, 2, 4, 5, 10, 20, 25, 50, 100), seeds=3),
        },
    )
    for _shape, _name in (("rect", "blobs-rect"), ("walk", "blobs-walk"))
)
