"""Spatial statistics of images: Moran's I.

Moran's I of one image z (h, w) with rook (4-neighbour) weights w_ij = 1 for each unordered pair of
horizontally or vertically adjacent pixels, counted once per direction (the usual symmetric weight
matrix counts each pair twice, which cancels between numerator and weight sum):

    I = N / W * sum_{i~j} (z_i - zbar)(z_j - zbar) / sum_i (z_i - zbar)^2

with N = h * w pixels and W = h(w - 1) + w(h - 1) adjacent pairs. Near 1 for large uniform patches,
about -1/(N - 1) for spatially random pixels, exactly -1 for a checkerboard; an image split into two
halves of equal area (w even, left vs right) gives (2hw - 3h - w) / (2hw - h - w), 2/3 at 4 x 4.
A constant image has no variance: I = 0 by convention.
"""

from __future__ import annotations

import numpy as np


def morans_i(img: np.ndarray) -> float:
    """Moran's I of one image (h, w) with rook weights (see the module docstring); unitless."""
    z = np.asarray(img, dtype=float) - np.mean(img)
    denom = (z * z).sum()
    if denom == 0:
        return 0.0
    cross = (z[1:] * z[:-1]).sum() + (z[:, 1:] * z[:, :-1]).sum()
    n_pairs = z[1:].size + z[:, 1:].size
    return float(z.size / n_pairs * cross / denom)
