"""Preprocessing and patient selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gdc_fixture import write_gdc_fixture
from scipy.spatial.distance import cdist

from bench.data.gdc import load_expression
from bench.data.selection import (
    MinMaxPerGene,
    class_variance,
    log_transform,
    pairwise_distances,
    select_patients,
    undersample,
)
from bench.errors import BenchInputError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    fx = write_gdc_fixture(tmp_path_factory.mktemp("gdc"), n_tumour=24, n_normal=10, n_genes=120, seed=3)
    d = load_expression(fx.root)
    return MinMaxPerGene().fit_transform(log_transform(d.x)), d.y


def test_log_transform():
    np.testing.assert_allclose(log_transform(np.array([[0.0, 1.0, 3.0]])), [[0.0, 1.0, 2.0]])
    with pytest.raises(BenchInputError, match="negative"):
        log_transform(np.array([[-2.0]]))


def test_minmax_per_gene():
    x = np.array([[1.0, 5.0, 2.0], [3.0, 5.0, 4.0], [2.0, 5.0, 6.0]])
    s = MinMaxPerGene().fit(x[:2])
    z = s.transform(x)
    np.testing.assert_allclose(z[:2], [[0.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    assert z[2, 2] == 2.0  # no clipping by default
    assert MinMaxPerGene(clip=True).fit(x[:2]).transform(x)[2, 2] == 1.0
    np.testing.assert_allclose(s.inverse_transform(z), x)
    with pytest.raises(BenchInputError, match="same genes"):
        s.transform(x[:, :2])


def test_undersample():
    y = np.array([0] * 3 + [1] * 10)
    idx = undersample(y, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [3, 3]
    assert len(set(idx.tolist())) == 6
    assert set(idx[y[idx] == 0].tolist()) == {0, 1, 2}  # the minority class is kept whole
    np.testing.assert_array_equal(idx, undersample(y, 0))  # int seeds work and are reproducible
    with pytest.raises(BenchInputError, match="both classes"):
        undersample(np.ones(4, dtype=int))


def _pair_distance(x, idx, n):
    return float(np.mean(np.linalg.norm(x[idx[:n]] - x[idx[n:]], axis=1)))


@pytest.mark.parametrize("strategy", ["random", "dissimilar", "similar"])
def test_select_balanced(cohort, strategy):
    x, y = cohort
    idx = select_patients(x, y, 6, strategy, np.random.default_rng(0))
    assert idx.dtype == np.int64 and len(idx) == 12 and len(set(idx.tolist())) == 12
    assert y[idx[:6]].tolist() == [0] * 6 and y[idx[6:]].tolist() == [1] * 6


def test_strategies_order_by_distance(cohort):
    x, y = cohort
    n = 6
    far = _pair_distance(x, select_patients(x, y, n, "dissimilar"), n)
    near = _pair_distance(x, select_patients(x, y, n, "similar"), n)
    rand = np.mean([_pair_distance(x, select_patients(x, y, n, "random", seed), n) for seed in range(20)])
    assert far > rand > near


def test_greedy_pairs_exact():
    # healthy at 0 and 1, cancer at 10 and 1.5 (1-D): most distant pair is (10, 0), then (1.5, 1)
    x = np.array([[0.0], [1.0], [10.0], [1.5]])
    y = np.array([0, 0, 1, 1])
    assert select_patients(x, y, 2, "dissimilar").tolist() == [0, 1, 2, 3]
    # most similar: (1.5, 1) then (10, 0)
    assert select_patients(x, y, 2, "similar").tolist() == [1, 0, 3, 2]
    np.testing.assert_allclose(pairwise_distances(x, x)[2], [10.0, 9.0, 0.0, 8.5])


def test_select_errors(cohort):
    x, y = cohort
    with pytest.raises(BenchInputError, match=r"10 healthy and 24 cancer.*n_per_class <= 10"):
        select_patients(x, y, 11, "random")
    with pytest.raises(BenchInputError, match="unknown strategy"):
        select_patients(x, y, 2, "closest")


def test_class_variance():
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 0.0], [10.0, 4.0]])
    y = np.array([0, 0, 1, 1])
    v = class_variance(x, y)
    assert v["inter_class"] == pytest.approx(np.hypot(9.0, 2.0))
    assert v["intra_class_0"] == pytest.approx(1.0)
    assert v["intra_class_1"] == pytest.approx(2.0)
    assert v["ratio"] == pytest.approx(np.hypot(9.0, 2.0) / 1.5)


def test_class_variance_on_fixture_against_loops(cohort):
    x, y = cohort
    v = class_variance(x, y)
    spread = {}
    for c in (0, 1):
        rows = [x[i] for i in range(len(y)) if y[i] == c]
        mean = [sum(r[g] for r in rows) / len(rows) for g in range(x.shape[1])]
        spread[c] = (mean, sum(math.dist(r, mean) for r in rows) / len(rows))
    assert v["intra_class_0"] == pytest.approx(spread[0][1]) and v["intra_class_1"] == pytest.approx(
        spread[1][1]
    )
    assert v["inter_class"] == pytest.approx(math.dist(spread[0][0], spread[1][0]))
    assert v["ratio"] == pytest.approx(v["inter_class"] / ((spread[0][1] + spread[1][1]) / 2))


def test_pairwise_distances_against_scipy(cohort):
    x, _ = cohort
    np.testing.assert_allclose(pairwise_distances(x[:7], x[7:]), cdist(x[:7], x[7:]), atol=1e-9)


@pytest.mark.parametrize("strategy", ["dissimilar", "similar"])
def test_greedy_pairs_against_a_sort_of_all_pairs(cohort, strategy):
    """Greedy pairing recomputed another way: walk all (healthy, cancer) pairs sorted by distance."""
    x, y = cohort
    n = 6
    healthy, cancer = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    pairs = sorted(
        ((math.dist(x[h], x[c]), h, c) for h in healthy for c in cancer), reverse=strategy == "dissimilar"
    )
    used, expect = set(), []
    for _, h, c in pairs:
        if h not in used and c not in used and len(expect) < n:
            used |= {h, c}
            expect.append((h, c))
    idx = select_patients(x, y, n, strategy)
    assert list(zip(idx[:n].tolist(), idx[n:].tolist(), strict=True)) == expect
