"""MedMNIST pairs: a classifier separating two MedMNIST datasets, attacked (the paper's section 4.1).

* `medmnist-pair`: BreastMNIST (class 0, y = -1) vs OrganCMNIST (class 1, y = +1) by default; figs 2-3:
  the reconstruction grid, the DSSIM and L2 curves over attack steps, their steadiness, per-class scores
  and each class's collapse to its mean (see bench.image_pairs for the definitions).
* `medmnist-pairs`: a sweep over several pairs of 2D flags; per pair the inter-class variance
  (`class_var/ratio`) and the reconstruction quality, and their Spearman correlation on the parent run
  (`variance_vs_quality.csv` / `.json`).

Files: see bench.data.medmnist (root `--set data.root=DIR`, else $MEDMNIST_ROOT, else ~/.medmnist; MD5
checked; `--set data.download=true` fetches a missing file). Training images come from the train split,
held-out images (test accuracy, held-out baseline) from the test split. See docs/medmnist.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import require
from bench.data.base import Dataset
from bench.image_pairs import (
    SMOKE_OVERRIDES,
    VARIANCE_COLUMN,
    pair_dataset,
    pair_post,
    split_class,
    variance_report,
)
from bench.registry import Profile, Task

SIZES_2D = (28, 64)


@dataclass
class MedMNISTPairData:
    """Two 2D MedMNIST flags (or two class subsets of one flag) as a binary task.

    `flag_a` is class 0 (y = -1), `flag_b` class 1 (y = +1). `classes_a` / `classes_b`: label ids of the
    flag to keep (empty = all labels). `n_per_class` training images per class from the train split;
    `n_test_per_class` held-out images per class from the test split (fewer if the split is smaller).
    `size`: 28 or 64 px (the SSIM window stays `eval.ssim_window`). `root`: folder of the .npz files
    (default $MEDMNIST_ROOT, else ~/.medmnist). RGB flags are converted to grayscale.
    """

    flag_a: str = "breastmnist"
    flag_b: str = "organcmnist"
    classes_a: tuple[int, ...] = ()
    classes_b: tuple[int, ...] = ()
    n_per_class: int = 50
    n_test_per_class: int = 50
    size: int = 28
    root: str | None = None
    verify_checksum: bool = True
    download: bool = False

    def check(self) -> None:
        from bench.data.medmnist import medmnist_flags_2d, medmnist_info

        flags = medmnist_flags_2d()
        for key in ("flag_a", "flag_b"):
            flag = getattr(self, key)
            require(flag in flags, f"data.{key}", flag, f"a 2D MedMNIST flag: {', '.join(flags)}")
            info = medmnist_info(flag)
            require(
                not info["task"].startswith("multi-label"),
                f"data.{key}",
                flag,
                "a single-label flag (chestmnist is multi-label)",
            )
            classes = getattr(self, "classes_" + key[-1])
            ids = sorted(int(k) for k in info["label"])
            bad = [c for c in classes if c not in ids]
            require(not bad, f"data.classes_{key[-1]}", classes, f"label ids of {flag}: {ids} (empty = all)")
        if self.flag_a == self.flag_b:
            disjoint = self.classes_a and self.classes_b and not set(self.classes_a) & set(self.classes_b)
            require(
                bool(disjoint),
                "data.classes_a/classes_b",
                (self.classes_a, self.classes_b),
                f"two non-empty, disjoint class subsets when flag_a = flag_b = {self.flag_a}",
            )
        require(self.size in SIZES_2D, "data.size", self.size, f"one of {list(SIZES_2D)} (px)")
        require(self.n_per_class >= 1, "data.n_per_class", self.n_per_class, "a positive integer")
        require(
            self.n_test_per_class >= 1, "data.n_test_per_class", self.n_test_per_class, "a positive integer"
        )

    def _side(self, flag: str, classes: tuple[int, ...], split: str) -> np.ndarray:
        from bench.data.medmnist import load_medmnist

        x, labels = load_medmnist(
            flag,
            size=self.size,
            split=split,
            root=self.root,
            verify_checksum=self.verify_checksum,
            download=self.download,
        )
        return x[np.isin(labels, classes)] if classes else x

    def load(self, seed: int) -> Dataset:
        from bench.data.medmnist import medmnist_file

        rng = np.random.default_rng([seed, 1])
        train, test = [], []
        for flag, classes in ((self.flag_a, self.classes_a), (self.flag_b, self.classes_b)):
            what = f"MedMNIST {flag} {_classes_text(classes)} (train split)"
            tr, _ = split_class(self._side(flag, classes, "train"), self.n_per_class, 0, rng, what)
            te = self._side(flag, classes, "test")
            te = te[rng.permutation(len(te))[: self.n_test_per_class]]
            if len(te) == 0:
                from bench.errors import BenchInputError

                raise BenchInputError(f"MedMNIST {flag} {_classes_text(classes)} has no test-split images")
            train.append(tr)
            test.append(te)
        root = medmnist_file(self.flag_a, self.size, self.root).parent
        source = (
            f"MedMNIST {self.flag_a} {_classes_text(self.classes_a)} vs {self.flag_b} "
            f"{_classes_text(self.classes_b)}, {self.size} px, train/test splits, from {root}"
        )
        return pair_dataset((train[0], train[1]), (test[0], test[1]), (self.size, self.size), source)


def _classes_text(classes: tuple[int, ...]) -> str:
    return f"classes {list(classes)}" if classes else "(all classes)"


# 2 hidden-layer width-1000 nets as in Haim et al. for `paper` (smoke: bench.image_pairs.SMOKE_OVERRIDES).
_QUICK = {
    "data.n_per_class": 10,
    "data.n_test_per_class": 50,
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 1000,
    "attack.eval_every": 50,
}
_PAPER = {
    "data.n_per_class": 250,
    "data.n_test_per_class": 150,
    "model.depth": 3,
    "model.width": 1000,
    "model.bias": "first",
    "attack.steps": 5000,
    "attack.eval_every": 100,
}

_PAIR = Task(
    name="medmnist-pair",
    family="medmnist",
    summary="BreastMNIST vs OrganCMNIST (any two 2D flags): grid, DSSIM/L2 curves, steadiness, collapse (figs 2-3)",
    data=MedMNISTPairData(),
    profiles={
        "smoke": Profile(SMOKE_OVERRIDES),
        "quick": Profile(_QUICK),
        "paper": Profile(_PAPER, seeds=3),
    },
    post=pair_post,
    trend_key=VARIANCE_COLUMN,
)


def _pair(a: str, b: str, classes_a: tuple[int, ...] = (), classes_b: tuple[int, ...] = ()) -> dict:
    point: dict = {"data.flag_a": a, "data.flag_b": b}
    if classes_a or classes_b:
        point |= {"data.classes_a": classes_a, "data.classes_b": classes_b}
    return point


# Pairs from very different modalities (high inter-class variance) to two classes of one dataset (low).
_PAIRS_QUICK = (
    _pair("breastmnist", "organcmnist"),
    _pair("pneumoniamnist", "organcmnist"),
    _pair("breastmnist", "pneumoniamnist"),
    _pair("organamnist", "organsmnist"),
    _pair("pneumoniamnist", "pneumoniamnist", (0,), (1,)),
)
_PAIRS_PAPER = _PAIRS_QUICK + (
    _pair("breastmnist", "dermamnist"),
    _pair("octmnist", "tissuemnist"),
    _pair("bloodmnist", "pathmnist"),
    _pair("organcmnist", "organsmnist"),
    _pair("organamnist", "organamnist", (7,), (8,)),  # lung-left vs lung-right
)

_PAIRS = Task(
    name="medmnist-pairs",
    family="medmnist",
    summary="sweep over MedMNIST flag pairs: inter-class variance vs reconstruction quality (Spearman)",
    data=MedMNISTPairData(),
    series_label="flag pair",
    profiles={
        "smoke": Profile(
            SMOKE_OVERRIDES,
            series=(_pair("breastmnist", "organcmnist"), _pair("pneumoniamnist", "organcmnist")),
        ),
        "quick": Profile(_QUICK, series=_PAIRS_QUICK),
        "paper": Profile(_PAPER, series=_PAIRS_PAPER, seeds=3),
    },
    post=pair_post,
    report=variance_report,
    trend_key=VARIANCE_COLUMN,  # trends against each pair's mean inter-class variance ratio
)

TASKS = (_PAIR, _PAIRS)
