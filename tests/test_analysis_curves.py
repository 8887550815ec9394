"""Steadiness, worsening and collapse to the class mean on hand-made inputs (bench.analysis.curves)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.curves import collapse_ratios, steadiness, worsening


def test_steadiness_and_worsening_of_hand_made_curves() -> None:
    # The first point (step 0, the random init) is left out when the curve has more than 2 points.
    assert steadiness([9.0, 5, 4, 3, 2, 1]) == 1.0  # monotone
    assert worsening([9.0, 5, 4, 3, 2, 1]) == 0.0
    zigzag = [9.0, 1, 3, 1, 3, 1]  # without the first point: range 2, total variation 8, 2 of 4 steps up
    assert steadiness(zigzag) == pytest.approx(0.25)
    assert worsening(zigzag) == pytest.approx(0.5)
    assert steadiness(zigzag, skip_first=False) == pytest.approx(8 / 16)  # range 8, variation 16
    assert worsening(zigzag, skip_first=False) == pytest.approx(2 / 5)
    assert steadiness([5.0, 2, 2, 2]) == 1.0  # flat counts as steady
    assert worsening([5.0, 2, 2, 2]) == 0.0  # and never worsens
    assert steadiness([1.0, 2, 4, 8]) == 1.0 and worsening([1.0, 2, 4, 8]) == 1.0  # monotone but upwards


def test_short_and_non_finite_curves() -> None:
    assert steadiness([3.0, 1.0]) == 1.0  # two points: nothing is skipped
    assert worsening([1.0, 3.0]) == 1.0
    assert np.isnan(steadiness([1.0])) and np.isnan(worsening([]))
    # NaN / inf points are dropped: [1, 3, 1] remains (range 2, variation 4, one of two steps up)
    curve = [9.0, 1.0, np.nan, 3.0, np.inf, 1.0]
    assert steadiness(curve) == pytest.approx(0.5)
    assert worsening(curve) == pytest.approx(0.5)


def _two_classes() -> tuple[np.ndarray, np.ndarray]:
    x = np.eye(4)  # class 0 (y = -1): e1, e2; class 1 (y = +1): e3, e4
    return x, np.array([-1.0, -1.0, 1.0, 1.0])


def test_collapse_by_hand_in_the_data_scale() -> None:
    x, y = _two_classes()
    m0 = np.array([0.5, 0.5, 0.0, 0.0])  # class 0 mean; each class-0 image lies sqrt(1/2) from it
    recon = x.copy()
    recon[0] = m0 + 0.5 * (x[0] - m0)  # halfway to the mean: sqrt(1/8) from it
    recon[1] = m0  # on the mean: 0 from it
    out = collapse_ratios(x, y, recon, mode="clip")
    # class 0: mean distance (sqrt(1/8) + 0) / 2 over sqrt(1/2) = 1/4; class 1 reconstructed exactly
    assert out["collapse/class0"] == pytest.approx(0.25)
    assert out["collapse/class1"] == pytest.approx(1.0)
    # recon[0] = (.75, .25, 0, 0) correlates 0.943 with e1 and 0.816 with the mean; recon[1] is the mean
    assert out["collapse/class0_frac_mean"] == 0.5
    assert out["collapse/class1_frac_mean"] == 0.0


def test_collapse_compares_in_the_rescaled_space() -> None:
    x, y = _two_classes()
    # per-image min-max undoes a gain and offset: 10 x + 3 is the training image itself (ratio 1) ...
    out = collapse_ratios(x, y, 10.0 * x + 3.0, mode="minmax")
    assert out["collapse/class0"] == pytest.approx(1.0) and out["collapse/class1"] == pytest.approx(1.0)
    # ... while clipping to [0, 1] turns it into the all-ones image: distance sqrt(2.5) to (.5, .5, 0, 0)
    clipped = collapse_ratios(x, y, 10.0 * x + 3.0, mode="clip")
    assert clipped["collapse/class0"] == pytest.approx(np.sqrt(2.5) / np.sqrt(0.5))


def test_collapse_missing_class_and_identical_images() -> None:
    x, y = _two_classes()
    only0 = collapse_ratios(x[:2], y[:2], x[:2])
    assert set(only0) == {"collapse/class0", "collapse/class0_frac_mean"}
    same = np.tile([0.0, 1.0, 0.0, 1.0], (4, 1))  # every image equals its class mean: no spread to compare
    assert np.isnan(collapse_ratios(same, y, same)["collapse/class1"])
