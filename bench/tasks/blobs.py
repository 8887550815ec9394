"""Blob series: reconstruction error against spatial correlation (the paper's figs 4-6)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from bench.config import require
from bench.data.base import Dataset, to_pm1
from bench.defences import defence_series
from bench.registry import Profile, Task, budget_overrides


@dataclass
class BlobData:
    """Two classes of binary side x side images with `n_pixels` on-pixels; see bench.data.blobs.

    `design`: "paper" = control (scattered pixels, y = -1) vs blobs of `blob_size` (y = +1), as in the
    paper (separability grows with blob size); "shuffled" = both classes drawn from the blob generator
    at the same size, labels a balanced random split (the decoupled control: nothing separates the
    classes, so a trend with blob size is spatial structure, not an easier task).
    `n_per_class` training images per class; `n_test_per_class` held-out images per class (test
    accuracy, the held-out baseline and the membership test's fresh samples); 0 = 3 * n_per_class,
    enough for a held-out set as large as the candidate set (m = 2n) plus n fresh samples.
    Every image of a draw is distinct (training and held-out alike, see bench.data.split).
    """

    shape: Literal["rect", "walk"] = "rect"
    design: Literal["paper", "shuffled"] = "paper"
    blob_size: int = 1
    n_pixels: int = 100
    side: int = 28
    n_per_class: int = 10
    n_test_per_class: int = 0

    @property
    def n_test(self) -> int:
        return self.n_test_per_class or 3 * self.n_per_class

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
            self.n_test_per_class >= 0,
            "data.n_test_per_class",
            self.n_test_per_class,
            "a positive integer (0 = 3 * data.n_per_class)",
        )
        placements = self.distinct_blob_images()
        needed = (self.n_per_class + self.n_test) * (2 if self.design == "shuffled" else 1)
        if placements is not None and needed > placements:
            from bench.data.split import InfeasibleData

            per = placements // (2 if self.design == "shuffled" else 1)
            raise InfeasibleData(
                f"data.blob_size={self.blob_size}: a {self.shape} blob image has only {placements} distinct "
                f"placements on a {self.side}x{self.side} grid, and data.n_per_class={self.n_per_class} + "
                f"data.n_test_per_class={self.n_test} per class ({self.design} design) needs {needed}; "
                f"fix: keep n_per_class + n_test_per_class <= {per}, e.g. --set data.n_per_class="
                f"{per // 4} (held-out 3x that)"
            )

    def distinct_blob_images(self) -> int | None:
        """Exact number of distinct blob images when it is small (one rectangle), else None."""
        if self.shape != "rect" or self.n_pixels != self.blob_size:
            return None
        h = max(f for f in range(1, int(np.sqrt(self.blob_size)) + 1) if self.blob_size % f == 0)
        w = self.blob_size // h
        count = (self.side - h + 1) * (self.side - w + 1)
        return count if h == w else count + (self.side - w + 1) * (self.side - h + 1)

    def load(self, seed: int) -> Dataset:
        from bench.analysis.spatial import morans_i
        from bench.data.blobs import blob_image, control_image
        from bench.data.split import draw_distinct

        rng = np.random.default_rng([seed, 1])
        n, nt = self.n_per_class, self.n_test

        def blob() -> np.ndarray:
            return blob_image(rng, self.blob_size, self.shape, self.n_pixels, self.side)

        def control() -> np.ndarray:
            return control_image(rng, self.n_pixels, self.side)

        def fix(found: int) -> str:
            per = found // (2 if self.design == "shuffled" else 1)
            return f"keep data.n_per_class + data.n_test_per_class <= {per} (n_test_per_class 0 means 3n)"

        what = f"{self.shape} blobs of {self.blob_size} px"
        if self.design == "paper":
            cls0 = draw_distinct(control, n + nt, "control images", fix)
            cls1 = draw_distinct(blob, n + nt, what, fix)
        else:
            both = draw_distinct(blob, 2 * (n + nt), what, fix)
            cls0, cls1 = both[: n + nt], both[n + nt :]  # draws are i.i.d.: a random balanced split
        x_tr = np.concatenate([cls0[:n], cls1[:n]])
        x_te = np.concatenate([cls0[n:], cls1[n:]])
        lab_tr, lab_te = np.repeat([0, 1], n), np.repeat([0, 1], nt)
        shape = (self.side, self.side)
        moran = np.array([morans_i(img.reshape(shape)) for img in x_tr])
        stats = {
            "moran_i/class0": float(moran[lab_tr == 0].mean()),
            "moran_i/class1": float(moran[lab_tr == 1].mean()),
            "moran_i/mean": float(moran.mean()),
        }
        kind = "control vs blobs" if self.design == "paper" else "blobs vs blobs, shuffled labels"
        source = f"synthetic {self.shape} blobs of {self.blob_size} px ({self.n_pixels} on-pixels; {kind})"
        return Dataset(x_tr, to_pm1(lab_tr), x_te, to_pm1(lab_te), shape, 0.0, 1.0, stats, source)


_SMOKE = {
    "data.n_per_class": 6,
    "model.depth": 2,
    "model.width": 200,
    "train.max_epochs": 3000,
    "attack.steps": 300,
    "attack.eval_every": 100,
}
_QUICK = {
    "data.n_per_class": 10,
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 1000,
}
_PAPER = {
    "data.n_per_class": 50,
    "attack.steps": 5000,
    "attack.eval_every": 250,
}
# The regime axis: n per class x square blob sizes (a square never turns into a line), attacks run to
# a plateau (attack.stop) with a cap. Infeasible points (too few distinct placements) are skipped.
_STUDY = {
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 5000,
    "attack.eval_every": 100,
    "attack.stop": "plateau",
    "attack.stop_window": 500,  # replayed n=10 curves: stops at ~2,000 steps, same final error as 1,000
}
_STUDY_SERIES = tuple(
    {"data.n_per_class": n, "data.blob_size": b} for n in (10, 25, 50) for b in (1, 4, 9, 16, 25, 49, 100)
)
# The factors of reconstructability (issue 13; benchmarks/factors.sh sweeps them with --sweep): the quick
# scale at one blob size, 5 seeds for seed-level intervals.
_FACTORS = _QUICK


_budget = budget_overrides  # a profile's budget check (bench.registry.budget_overrides)


# The parameter-count law (Iurada et al. 2026: the training set is recoverable once p >> d n) on a CNN,
# the axis over its channels: one 3x3 convolution of 8..128 channels and a linear head (no pooling), at
# the quick scale and blob size 4 (the factors' point); every run logs model/p_over_dn (0.4 .. 6.5 here).
_CHANNELS = _QUICK | {"data.blob_size": 4, "model.arch": "cnn", "model.pool": "none"}
_CHANNEL_SERIES = tuple({"model.channels": (c,)} for c in (8, 16, 32, 64, 128))

# issue 20's defence grid (bench.defences) at one blob size: a small MLP. The attack was 250 steps until
# 2026-12-05: there the undefended model's ncc_dist was 0.62, at 2,000 steps 0.024 (docs/defences.md)
_DEFENCES = {
    "data.n_per_class": 10,
    # 100, not 4 (before 2026-12-05): at blob size 4 plain training is at chance on held-out images (0.53),
    # so DP had no accuracy to cost; at 100 it reaches 0.82 (docs/defences.md, "Measured")
    "data.blob_size": 100,
    "model.depth": 2,
    "model.width": 200,
    "attack.steps": 2000,
    "attack.eval_every": 100,
}

_DESIGN_SUMMARY = {
    "paper": "control pixels vs {shape} blobs of growing size; error vs spatial correlation (figs 4-6)",
    "shuffled": "{shape} blobs vs {shape} blobs with shuffled labels (decoupled control for figs 4-6)",
}


TASKS = tuple(
    Task(
        name=f"blobs-{_shape}" + ("" if _design == "paper" else "-shuffled"),
        family="blobs",
        summary=_DESIGN_SUMMARY[_design].format(shape=_shape),
        data=BlobData(shape=_shape, design=_design),
        defaults={"eval.primary": "ncc_dist_mean"},
        series_key="data.blob_size",
        series_label="blob size (pixels)",
        trend_key="data.blob_size",  # trends against blob size (per n on the study grid)
        profiles={
            "smoke": Profile(_SMOKE, series=(1, 25)),
            "quick": Profile(_QUICK, series=(1, 4, 25, 100), seeds=5),
            "quick-budget": Profile(_budget(_QUICK), series=(1, 100), seeds=3),
            "paper": Profile(_PAPER, series=(1, 2, 4, 5, 10, 20, 25, 50, 100), seeds=3),
            "paper-budget": Profile(_budget(_PAPER), series=(1, 25, 100), seeds=3),
            "study": Profile(_STUDY, series=_STUDY_SERIES, seeds=5),
            "study-budget": Profile(
                _budget(_STUDY),
                series=tuple(
                    p
                    for p in _STUDY_SERIES
                    if p["data.n_per_class"] == 25 and p["data.blob_size"] in (1, 25, 100)
                ),
                seeds=3,
            ),
            "factors": Profile(_FACTORS, series=(4,), seeds=5),
            "channels": Profile(_CHANNELS, series=_CHANNEL_SERIES, seeds=3),
            "defences": Profile(_DEFENCES, series=defence_series(), seeds=3),
        },
    )
    for _design in ("paper", "shuffled")
    for _shape in ("rect", "walk")
)
