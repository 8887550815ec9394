"""Moran's I against answers computed by hand (bench.analysis.spatial)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.spatial import morans_i


def test_checkerboard_is_minus_one() -> None:
    board = np.indices((6, 5)).sum(axis=0) % 2  # every neighbour pair differs
    assert morans_i(board) == pytest.approx(-1.0)


def test_half_split_four_by_four_by_hand() -> None:
    # left half 0, right half 1: deviations +-1/2, sum of squares 16/4 = 4. Horizontal pairs: 4 rows x
    # (2 same-side pairs x 1/4 - 1 cross pair x 1/4) = 1; vertical pairs: 12 x 1/4 = 3. 24 pairs in all:
    # I = 16 / 24 * (1 + 3) / 4 = 2/3.
    img = np.zeros((4, 4))
    img[:, 2:] = 1.0
    assert morans_i(img) == pytest.approx(2.0 / 3.0)
    assert morans_i(img.T) == pytest.approx(2.0 / 3.0)  # the weights are symmetric in rows and columns


@pytest.mark.parametrize(("h", "w"), [(4, 4), (3, 8), (28, 28)])
def test_half_split_closed_form(h: int, w: int) -> None:
    img = np.zeros((h, w))
    img[:, w // 2 :] = 1.0
    expected = (2 * h * w - 3 * h - w) / (2 * h * w - h - w)
    assert morans_i(img) == pytest.approx(expected)
    assert morans_i(5.0 * img - 2.0) == pytest.approx(expected)  # invariant to affine changes of scale


def test_single_pixel_by_hand() -> None:
    # one on-pixel at a 3x3 image's centre: deviations 8/9 (centre) and -1/9 (8 others), sum of squares
    # 64/81 + 8/81 = 72/81. 12 rook pairs: 4 touch the centre (-8/81 each), 8 join two others (+1/81 each):
    # cross = -24/81; I = 9 / 12 * (-24/81) / (72/81) = -1/4.
    img = np.zeros((3, 3))
    img[1, 1] = 1.0
    assert morans_i(img) == pytest.approx(-0.25)


def test_constant_image_is_zero_and_random_pixels_near_the_null_mean() -> None:
    assert morans_i(np.full((5, 5), 3.0)) == 0.0
    rng = np.random.default_rng(0)
    values = [morans_i(rng.random((28, 28))) for _ in range(200)]
    # under spatial randomness E[I] = -1 / (N - 1) and sd ~ 1 / sqrt(2 * 1512 pairs) ~ 0.018 per image
    assert np.mean(values) == pytest.approx(-1 / 783, abs=0.005)
    assert 0.01 < np.std(values) < 0.03
