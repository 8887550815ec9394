"""Blob generators: exact pixel counts, blob sizes, and spatial correlation growing with blob size."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bench.analysis.spatial import morans_i
from bench.data.blobs import blob_image, control_image


@pytest.mark.parametrize("shape", ["rect", "walk"])
@pytest.mark.parametrize("size", [1, 3, 4, 25, 30, 100])
def test_exact_pixel_count_and_blob_sizes(shape: str, size: int) -> None:
    rng = np.random.default_rng(size)
    for _ in range(5):
        img = blob_image(rng, size, shape)
        assert img.sum() == 100
        labels, n = ndimage.label(img)  # 4-connectivity: blobs never touch, so components are blobs
        sizes = sorted(np.bincount(labels.ravel())[1:])
        expected = sorted([size] * (100 // size) + ([100 % size] if 100 % size else []))
        assert sizes == expected


def test_rectangles_are_filled_rectangles() -> None:
    img = blob_image(np.random.default_rng(0), 25, "rect")
    labels, n = ndimage.label(img)
    for sl in ndimage.find_objects(labels):
        assert img[sl].all() and img[sl].size == 25


def test_control_class_and_morans_i() -> None:
    """Blobs raise the spatial correlation; Moran's I itself is checked on known answers in test_analysis_spatial."""
    rng = np.random.default_rng(0)
    ctrl = control_image(rng)
    assert ctrl.sum() == 100
    i_ctrl = np.mean([morans_i(control_image(rng)) for _ in range(20)])
    i_small = np.mean([morans_i(blob_image(rng, 4, "rect")) for _ in range(20)])
    i_big = np.mean([morans_i(blob_image(rng, 100, "rect")) for _ in range(20)])
    assert abs(i_ctrl) < 0.05
    assert i_ctrl < i_small < i_big
    assert i_big > 0.7


def test_impossible_blob_size_is_refused() -> None:
    with pytest.raises(ValueError, match="blob_size"):
        blob_image(np.random.default_rng(0), 101, "rect")
