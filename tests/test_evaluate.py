"""Evaluation: SSIM/DSSIM, matching, and baselines computed from data."""

from __future__ import annotations

import numpy as np
import pytest

from bench.config import EvalConfig
from bench.evaluate import correlation, evaluate, rescale, ssim


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.random((n, 28 * 28)) < 0.15).astype(float)


def test_ssim_of_an_image_with_itself_is_one() -> None:
    img = _images(1)[0].reshape(28, 28)
    assert ssim(img, img) == pytest.approx(1.0, abs=1e-5)  # kornia adds eps=1e-12 to the denominator
    assert ssim(img, 1.0 - img) < 0.0


def test_known_training_points_score_perfectly() -> None:
    x = _images()
    y = np.array([-1.0, -1, -1, 1, 1, 1])
    noise = np.random.default_rng(1).random((4, x.shape[1]))
    ev = evaluate(
        x, y, np.vstack([noise, x[::-1]]), {"mean": x.mean(0, keepdims=True)}, (28, 28), EvalConfig(), 0, 1
    )
    m = ev.metrics
    assert m["ssim_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["dssim_mean"] == pytest.approx(0.0, abs=1e-5)
    assert m["corr_mean"] == pytest.approx(1.0)
    assert m["ssim_gt_0.4/count"] == 6 and m["ssim_gt_0.4/frac"] == 1.0
    assert m["gain/mean/ssim_gt_0.4"] == 1.0 - m["baseline/mean/ssim_gt_0.4/frac"]
    assert (ev.match.index == np.arange(4, 10)[::-1]).all()
    assert m["baseline/mean/dssim_mean"] > 0.2
    assert m["gain/mean/dssim"] == pytest.approx(m["baseline/mean/dssim_mean"], abs=1e-5)


def test_correlation_is_scale_invariant_and_rescale_maps_to_unit_range() -> None:
    x = _images(3)
    c = correlation(x, 5 * x + 2)
    assert np.allclose(np.diag(c), 1.0)
    r = rescale(3 * x - 1, "minmax")
    assert r.min() == 0 and r.max() == 1
    assert np.array_equal(rescale(np.array([[2.0, -1.0, 0.5]]), "clip", 0.0, 1.0), [[1.0, 0.0, 0.5]])


def test_tabular_data_has_no_ssim_but_mae() -> None:
    x = np.random.default_rng(2).random((4, 10))
    y = np.array([-1.0, -1, 1, 1])
    ev = evaluate(x, y, x + 0.1, {}, None, EvalConfig(rescale="clip"), 0.0, 1.5)
    assert "dssim_mean" not in ev.metrics
    assert ev.metrics["mae_mean"] == pytest.approx(0.1)
