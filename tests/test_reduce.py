"""Dimensionality reducers: DEG, PCA / kernel PCA, SDAE, factory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.base import clone

from bench.errors import BenchInputError
from bench.reduce import SDAE, DEGSelector, Identity, PCAReducer, make_reducer


def _de_data(n=40, g=300, n_de=15, seed=0):
    rng = np.random.default_rng(seed)
    y = np.array([0, 1] * (n // 2))
    x = rng.normal(5.0, 1.0, size=(n, g))
    de = rng.choice(g, n_de, replace=False)
    x[np.ix_(y == 1, de)] += 2.5
    return x, y, np.sort(de)


def test_deg_finds_differential_genes():
    x, y, de = _de_data()
    sel = DEGSelector(n_components=15).fit(x, y)
    np.testing.assert_array_equal(sel.selected_, de)
    z = sel.transform(x)
    assert z.shape == (40, 15)
    np.testing.assert_array_equal(z, x[:, de])
    assert np.all(sel.log2fc_[de] > 1.5)


def test_deg_fold_change_threshold_and_errors():
    x, y, de = _de_data()
    with pytest.raises(BenchInputError, match=r"only 15 of 300 genes.*reduce.dim=N with N <= 15"):
        DEGSelector(n_components=20, min_abs_log2fc=1.5).fit(x, y)
    with pytest.raises(BenchInputError, match=r"n_components=301 but only 300"):
        DEGSelector(n_components=301).fit(x, y)
    with pytest.raises(BenchInputError, match="cannot be inverted"):
        DEGSelector(n_components=5).fit(x, y).inverse_transform(np.zeros((1, 5)))
    with pytest.raises(BenchInputError, match="2 samples of each class"):
        DEGSelector(n_components=5).fit(x, np.ones(40, dtype=int))
    lin = DEGSelector(n_components=15, log_input=False).fit(2.0**x, y)  # linear scale input
    np.testing.assert_array_equal(lin.selected_, de)


def test_pca_shapes_and_inverse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 5)) @ rng.normal(size=(5, 50))  # rank 5
    p = PCAReducer(n_components=5).fit(x)
    z = p.transform(x)
    assert z.shape == (30, 5) and z.dtype == np.float64
    np.testing.assert_allclose(p.inverse_transform(z), x, atol=1e-8)
    assert clone(p).get_params()["n_components"] == 5


@pytest.mark.parametrize("kernel", [None, "rbf", "cosine"])
def test_pca_too_few_samples(kernel):
    x = np.random.default_rng(0).random((12, 40))
    msg = r"n_components=20 .*12 samples x 40 features.*at most 12.*reduce\.dim=N with N <= 12"
    with pytest.raises(BenchInputError, match=msg):
        PCAReducer(n_components=20, kernel=kernel).fit(x)
    p = PCAReducer(n_components=20, kernel=kernel, on_too_few="pad").fit(x)
    z = p.transform(x)
    assert z.shape == (12, 20) and p.n_fitted_ == 12
    assert np.all(z[:, 12:] == 0.0) and np.abs(z[:, :11]).max() > 0


def test_pca_more_features_than_samples_max_is_features():
    x = np.random.default_rng(0).random((50, 8))
    with pytest.raises(BenchInputError, match="at most 8"):
        PCAReducer(n_components=10).fit(x)
    assert PCAReducer(n_components=10, kernel="rbf").fit(x).transform(x).shape == (50, 10)


def test_kpca_inverse():
    x = np.random.default_rng(0).random((20, 10))
    with pytest.raises(BenchInputError, match="fit_inverse_transform"):
        PCAReducer(n_components=4, kernel="rbf").fit(x).inverse_transform(np.zeros((1, 4)))
    k = PCAReducer(n_components=4, kernel="rbf", fit_inverse_transform=True).fit(x)
    assert k.inverse_transform(k.transform(x)).shape == (20, 10)


def _sdae(**kw):
    params = dict(n_components=6, hidden=(24,), epochs=60, batch_size=16, lr=2e-2, seed=0)
    return SDAE(**{**params, **kw})


def test_sdae_learns_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = 1 / (1 + np.exp(-(rng.normal(size=(64, 4)) @ rng.normal(size=(4, 30)))))  # in (0, 1)
    a = _sdae().fit(x)
    assert a.output_ == "sigmoid"
    assert a.loss_history_[-1] < 0.5 * a.loss_history_[0]
    assert a.reconstruction_error(x) == pytest.approx(a.loss_history_[-1], rel=1e-4)
    z = a.transform(x)
    assert z.shape == (64, 6) and z.dtype == np.float64 and np.all((z > 0) & (z < 1))
    assert a.inverse_transform(z).shape == (64, 30)
    state = torch.random.get_rng_state()
    b = _sdae().fit(x)
    assert torch.equal(state, torch.random.get_rng_state())  # global RNG untouched
    np.testing.assert_array_equal(z, b.transform(x))
    assert not np.array_equal(z, _sdae(seed=1).fit(x).transform(x))


def test_sdae_pretraining_and_gaussian_noise():
    x = np.random.default_rng(1).normal(size=(32, 12))
    s = _sdae(epochs=5, pretrain_epochs=3, noise_type="gaussian", hidden=(10, 8)).fit(x)
    assert s.output_ == "linear" and s.transform(x).shape == (32, 6)
    with pytest.raises(BenchInputError, match="noise_type"):
        _sdae(noise_type="salt").fit(x)


def test_make_reducer():
    assert isinstance(make_reducer("deg", n_components=3), DEGSelector)
    assert make_reducer("pca").get_params()["n_components"] == 784
    assert make_reducer("kpca").kernel == "rbf"
    assert make_reducer("KPCA", kernel="poly").kernel == "poly"
    assert isinstance(make_reducer("sdae", hidden=(8,)), SDAE)
    ident = make_reducer("none", n_components=784).fit(np.ones((3, 2)))
    assert isinstance(ident, Identity) and ident.transform(np.ones((3, 2))).shape == (3, 2)
    with pytest.raises(BenchInputError, match=r"unknown; fix: use one of deg, pca, kpca, sdae, none"):
        make_reducer("umap")
    with pytest.raises(BenchInputError, match="unknown parameter"):
        make_reducer("pca", n_comp=3)
    with pytest.raises(BenchInputError, match="kpca"):
        make_reducer("pca", kernel="rbf")
