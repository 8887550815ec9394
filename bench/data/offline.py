"""Real images that ship inside installed wheels, so benchmarks and tests run offline.

* `load_digits_pair`: scikit-learn's copy of the UCI optical digits (``sklearn/datasets/data/digits.csv.gz``,
  1797 images of 8x8 px, values 0..16).
* `load_faces`: scikit-image's LFW subset (``skimage/data/lfw_subset.npy``, 100 faces then 100 non-face
  background crops, 25x25 px). ``skimage.data.lfw_subset()`` reads that file from the wheel; it needs neither
  pooch nor the network (checked with scikit-image 0.26, where pooch is not installed).
"""

from __future__ import annotations

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
