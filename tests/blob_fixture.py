"""Two classes of blob images for the attack's tests (tests/test_attack.py, tests/test_stop.py): n control
images (scattered pixels) then n blob images, drawn from one generator in that order.

bench's tasks draw their blob data through `bench.tasks.blobs.BlobData.load`; this helper only keeps the
fixed data the attack tests were written against (it was `bench.data.blobs.make_blob_classes`).
"""

from __future__ import annotations

import numpy as np

from bench.data.blobs import blob_image, control_image


def make_blob_classes(
    rng: np.random.Generator,
    n_per_class: int,
    blob_size: int,
    shape: str,
    n_pixels: int = 100,
    side: int = 28,
) -> tuple[np.ndarray, np.ndarray]:
    """x (2n, side*side) in {0, 1}: n control images then n blob images; labels (2n,): 0 then 1."""
    control = [control_image(rng, n_pixels, side) for _ in range(n_per_class)]
    blobs = [blob_image(rng, blob_size, shape, n_pixels, side) for _ in range(n_per_class)]
    return np.stack(control + blobs).reshape(2 * n_per_class, -1), np.repeat([0, 1], n_per_class)
