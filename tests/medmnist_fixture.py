"""Write small MedMNIST-format ``.npz`` files for tests (no download, no real data).

The layout is the official one: ``{split}_images`` uint8 (N, S, S) -- or (N, S, S, 3) for RGB flags -- and
``{split}_labels`` (N, 1) integers (N, n_labels 0/1 for multi-label flags such as chestmnist). Images are
noise plus a bright horizontal band whose position depends on the class, so classes are learnable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.medmnist import medmnist_file, medmnist_info


def write_medmnist_npz(
    root: str | Path,
    flag: str,
    size: int = 28,
    n: tuple[int, int, int] = (40, 10, 10),
    seed: int = 0,
    n_classes: int | None = None,
) -> Path:
    """Write ``root/{flag}.npz`` (28 px) or ``root/{flag}_{size}.npz`` and return its path.

    Args:
        root: folder to write into (created if missing).
        flag: a 2D MedMNIST flag; its metadata decides RGB vs grayscale and multi-label labels.
        size: image side in pixels (28, 64, 128 or 224).
        n: number of (train, val, test) images.
        seed: seed of the noise and the label order.
        n_classes: number of classes; default the number in the flag's metadata.
    """
    info = medmnist_info(flag)
    path = medmnist_file(flag, size, root)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_classes = len(info["label"]) if n_classes is None else n_classes
    multi_label = info["task"].startswith("multi-label")
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, count in zip(("train", "val", "test"), n, strict=True):
        if multi_label:
            labels = rng.integers(0, 2, size=(count, n_classes)).astype(np.uint8)
            classes = labels.argmax(1)
        else:
            classes = rng.permutation(np.arange(count) % n_classes)
            labels = classes.reshape(-1, 1).astype(np.uint8)
        images = rng.integers(0, 80, size=(count, size, size)).astype(np.int64)
        band = max(1, size // max(n_classes, 1))
        for i, c in enumerate(classes):
            images[i, (c * band) % size : (c * band) % size + band, :] += 150
        images = np.clip(images, 0, 255).astype(np.uint8)
        if info["n_channels"] == 3:
            tint = rng.integers(0, 40, size=(count, 1, 1, 3))
            images = np.clip(images[..., None].astype(np.int64) + tint, 0, 255).astype(np.uint8)
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    np.savez_compressed(path, **arrays)
    return path
