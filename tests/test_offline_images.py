"""Offline real images: scikit-learn digits and scikit-image's LFW subset."""

from __future__ import annotations

import numpy as np
import pytest

from bench.data.offline import load_digits_pair, load_faces
from bench.errors import BenchInputError


def test_digits_pair_default():
    x, y = load_digits_pair()
    assert x.shape == (360, 8, 8) and x.dtype == np.float64
    assert y.dtype == np.int64 and np.bincount(y).tolist() == [178, 182]
    assert x.min() == 0.0 and x.max() == 1.0


def test_digits_pair_labels_follow_a_and_b():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = load_digits_pair(7, 3)
    keep = np.isin(digits.target, (3, 7))
    np.testing.assert_array_equal(y, (digits.target[keep] == 3).astype(int))
    np.testing.assert_allclose(x, digits.images[keep] / 16.0)


@pytest.mark.parametrize(("a", "b"), [(2, 2), (10, 1), (-1, 1), (True, 0), ("3", 1), (0, 1.0)])
def test_digits_pair_bad_digits(a, b):
    with pytest.raises(BenchInputError, match="digit"):
        load_digits_pair(a, b)


def test_faces():
    x, y = load_faces()
    assert x.shape == (200, 25, 25) and x.dtype == np.float64
    assert x.min() >= 0.0 and x.max() <= 1.0
    np.testing.assert_array_equal(y, np.r_[np.ones(100), np.zeros(100)])
    assert y.dtype == np.int64
    assert np.ptp(x) > 0.5  # real images, not a blank array
