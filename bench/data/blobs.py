"""Synthetic images of controlled spatial correlation (the paper's section 4.3).

Both classes are `side` x `side` binary images with exactly `n_pixels` on-pixels (value 1 on 0).
- Control class (label 0, y = -1): the on-pixels scattered uniformly at random.
- Experimental class (label 1, y = +1): the same number of on-pixels arranged as blobs of `blob_size`
  pixels (the last blob takes the remainder when blob_size does not divide n_pixels). Blobs never overlap
  nor touch (4-neighbourhood), so a blob's size is what it says. Shapes: "rect", a filled rectangle of the
  most nearly square factorisation of blob_size (random orientation); "walk", the set of pixels visited
  by a lattice random walk that grows until it covers blob_size pixels.
Spatial correlation is measured by Moran's I (bench.analysis.spatial).
"""

from __future__ import annotations

import numpy as np

_MAX_TRIES = 2000


def control_image(rng: np.random.Generator, n_pixels: int = 100, side: int = 28) -> np.ndarray:
    """(side, side) image with n_pixels on-pixels at uniformly random distinct places."""
    img = np.zeros(side * side)
    img[rng.choice(side * side, size=n_pixels, replace=False)] = 1.0
    return img.reshape(side, side)


def blob_image(
    rng: np.random.Generator, blob_size: int, shape: str, n_pixels: int = 100, side: int = 28
) -> np.ndarray:
    """(side, side) image with n_pixels on-pixels in non-touching blobs of blob_size pixels."""
    if shape not in ("rect", "walk"):
        raise ValueError(f"unknown blob shape {shape!r}: expected 'rect' or 'walk'")
    if not 1 <= blob_size <= n_pixels:
        raise ValueError(f"blob_size {blob_size} must be in [1, n_pixels={n_pixels}]")
    sizes = [blob_size] * (n_pixels // blob_size) + ([n_pixels % blob_size] if n_pixels % blob_size else [])
    for _ in range(_MAX_TRIES):
        img = _place_blobs(rng, sizes, shape, side)
        if img is not None:
            return img
    raise RuntimeError(f"could not place {len(sizes)} blobs of {blob_size} pixels on a {side}x{side} grid")


def _place_blobs(rng: np.random.Generator, sizes: list[int], shape: str, side: int) -> np.ndarray | None:
    img = np.zeros((side, side), dtype=bool)
    forbidden = np.zeros((side, side), dtype=bool)  # on-pixels and their 4-neighbours
    for size in sizes:
        for _ in range(200):
            blob = _rect(rng, size, side) if shape == "rect" else _walk(rng, size, side, forbidden)
            if blob is not None and not (blob & forbidden).any():
                break
        else:
            return None
        img |= blob
        forbidden |= _dilate(blob)
    return img.astype(float)


def _rect(rng: np.random.Generator, size: int, side: int) -> np.ndarray:
    h = max(f for f in range(1, int(np.sqrt(size)) + 1) if size % f == 0)
    w = size // h
    if rng.random() < 0.5:
        h, w = w, h
    if h > side or w > side:
        raise ValueError(f"a {h}x{w} rectangle does not fit on a {side}x{side} grid")
    r, c = rng.integers(0, side - h + 1), rng.integers(0, side - w + 1)
    blob = np.zeros((side, side), dtype=bool)
    blob[r : r + h, c : c + w] = True
    return blob


_STEPS = np.array([(0, 1), (1, 0), (0, -1), (-1, 0)])


def _walk(rng: np.random.Generator, size: int, side: int, forbidden: np.ndarray) -> np.ndarray | None:
    free = np.argwhere(~forbidden)
    if len(free) == 0:
        return None
    pos = free[rng.integers(len(free))]
    blob = np.zeros((side, side), dtype=bool)
    blob[tuple(pos)] = True
    count = 1
    for _ in range(50 * size):
        if count == size:
            return blob
        nxt = pos + _STEPS[rng.integers(4)]
        if (nxt < 0).any() or (nxt >= side).any() or forbidden[tuple(nxt)]:
            continue
        pos = nxt
        if not blob[tuple(pos)]:
            blob[tuple(pos)] = True
            count += 1
    return blob if count == size else None


def _dilate(mask: np.ndarray) -> np.ndarray:
    out = mask.copy()
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out
