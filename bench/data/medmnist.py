"""MedMNIST v2 loader driven by the metadata of the `medmnist` package, without torch or torchvision.

Files follow the official layout: ``{flag}.npz`` for 28 px and ``{flag}_{size}.npz`` for 64/128/224 px, each
holding ``{train,val,test}_images`` (uint8, (N, H, W) for grayscale flags, (N, H, W, 3) for RGB flags) and
``{train,val,test}_labels`` ((N, 1) integers).

Why ``medmnist/info.py`` is loaded by file path: ``medmnist`` 3.0.2 does not import torchvision when imported
(only ``MedMNIST.download`` does), but its package ``__init__`` imports ``medmnist.dataset`` (torch, PIL) and
``medmnist.evaluator`` (pandas, scikit-learn) -- about 2.5 s -- and swallows any ImportError there with a bare
``except`` that prints to stdout. ``info.py`` is plain data (``INFO``, ``HOMEPAGE``), so it is executed on its
own through ``importlib.util.spec_from_file_location`` and the package ``__init__`` never runs. Its one side
effect is that of ``medmnist`` itself: it creates ``~/.medmnist`` if it can. The package is installed with
``pip install medmnist --no-deps``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import urllib.error
import urllib.request
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.errors import BenchInputError

SIZES = (28, 64, 128, 224)
SPLITS = ("train", "val", "test")
ROOT_ENV = "MEDMNIST_ROOT"
# ITU-R BT.601 luma weights (as PIL's "L" mode): gray = 0.299 R + 0.587 G + 0.114 B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

_CHUNK_BYTES = 1 << 20
# (resolved path, size in bytes, mtime in ns) -> MD5 hex digest of that file's content.
_MD5_CACHE: dict[tuple[str, int, int], str] = {}


@lru_cache(maxsize=1)
def _info() -> dict[str, dict[str, Any]]:
    """Return ``medmnist.INFO`` (flag -> metadata) without running the ``medmnist`` package ``__init__``."""
    try:
        spec = importlib.util.find_spec("medmnist")
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    info_path = next((Path(loc) / "info.py" for loc in locations if (Path(loc) / "info.py").is_file()), None)
    if info_path is None:
        raise BenchInputError(
            "MedMNIST metadata not found: the `medmnist` package is not installed; "
            "run `pip install medmnist --no-deps` (its metadata is all bench needs)"
        )
    info_spec = importlib.util.spec_from_file_location("_bench_medmnist_info", info_path)
    assert info_spec is not None and info_spec.loader is not None
    module = importlib.util.module_from_spec(info_spec)
    info_spec.loader.exec_module(module)
    return module.INFO


def _is_3d(flag: str) -> bool:
    return flag.endswith("3d")


def medmnist_flags_2d() -> list[str]:
    """All 2D MedMNIST flags known to the installed ``medmnist`` metadata, e.g. ``"breastmnist"``.

    ``chestmnist`` is listed but is multi-label, so `load_medmnist` rejects it with a clear error.
    """
    return [flag for flag in _info() if not _is_3d(flag)]


def _flag_info(flag: str) -> dict[str, Any]:
    info = _info()
    if flag not in info:
        raise BenchInputError(f"unknown MedMNIST flag {flag!r}; use one of: {', '.join(medmnist_flags_2d())}")
    if _is_3d(flag):
        raise BenchInputError(
            f"MedMNIST flag {flag!r} is a 3D volume dataset, which bench does not support; "
            f"use a 2D flag: {', '.join(medmnist_flags_2d())}"
        )
    return info[flag]


def medmnist_info(flag: str) -> dict[str, Any]:
    """A copy of the ``medmnist`` metadata of a 2D flag.

    Keys include ``task``, ``label`` (index str -> name), ``n_channels``, ``n_samples`` (split -> count),
    ``url``/``MD5`` (28 px) and ``url_{size}``/``MD5_{size}`` (64, 128, 224 px).
    """
    return copy.deepcopy(_flag_info(flag))


def _check_size(flag: str, size: int) -> None:
    valid = isinstance(size, (int, np.integer)) and not isinstance(size, bool) and int(size) in SIZES
    if not valid or f"url{_suffix(int(size))}" not in _info()[flag]:
        raise BenchInputError(f"unsupported MedMNIST size {size!r} for {flag!r}; use one of {list(SIZES)}")


def _suffix(size: int) -> str:
    return "" if size == 28 else f"_{int(size)}"


def _url_md5(flag: str, size: int) -> tuple[str, str]:
    """Download URL and MD5 of ``flag`` at ``size`` px, from the ``medmnist`` metadata."""
    meta = _flag_info(flag)
    _check_size(flag, size)
    return meta[f"url{_suffix(size)}"], meta[f"MD5{_suffix(size)}"]


def _resolve_root(root: str | Path | None) -> Path:
    """``root`` if given, else ``$MEDMNIST_ROOT`` if set and non-empty, else ``~/.medmnist``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(ROOT_ENV, "").strip()
    if env:
        return Path(env).expanduser()
    return Path("~/.medmnist").expanduser()


def medmnist_file(flag: str, size: int = 28, root: str | Path | None = None) -> Path:
    """Where ``flag`` at ``size`` px is expected: ``ROOT/{flag}.npz`` (28 px) or ``ROOT/{flag}_{size}.npz``.

    ROOT is ``root`` if given, else the ``MEDMNIST_ROOT`` environment variable, else ``~/.medmnist``.
    """
    _flag_info(flag)
    _check_size(flag, size)
    return _resolve_root(root) / f"{flag}{_suffix(size)}.npz"


def _file_md5(path: Path) -> str:
    """MD5 hex digest of the file at ``path``, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _cached_md5(path: Path) -> str:
    """`_file_md5`, memoised per (resolved path, size, mtime) so repeated loads in one process hash once."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5_CACHE:
        _MD5_CACHE[key] = _file_md5(path)
    return _MD5_CACHE[key]


def _verify(path: Path, url: str, expected_md5: str) -> None:
    actual = _cached_md5(path)
    if actual != expected_md5:
        raise BenchInputError(
            f"MedMNIST file {path} is corrupt or not the official release: MD5 {actual}, expected "
            f"{expected_md5}; delete it and download {url} again, or rerun with --set data.download=true "
            "(only if you trust the file: --set data.verify_checksum=false)"
        )


def _download(url: str, dest: Path) -> None:
    """Download ``url`` to ``dest`` via urllib (written to ``dest.part`` first, then renamed)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        part.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise BenchInputError(
            f"could not download {url} to {dest} ({reason}); download it by hand and save it as {dest}"
        ) from exc
    part.replace(dest)


def _to_gray(images: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W) or (N, H, W, 3) -> float64 (N, H, W) in [0, 1]; RGB uses BT.601 luma weights."""
    x = images.astype(np.float64) / 255.0
    if x.ndim == 4:
        x = x @ np.asarray(LUMA_WEIGHTS)
    return np.clip(x, 0.0, 1.0)


def _read_split(path: Path, split: str, size: int, n_channels: int) -> tuple[np.ndarray, np.ndarray]:
    image_key, label_key = f"{split}_images", f"{split}_labels"
    fix = "delete it and download it again"
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in (image_key, label_key) if key not in npz.files]
            if missing:
                raise BenchInputError(
                    f"MedMNIST file {path} lacks key(s) {missing} (has {sorted(npz.files)}); {fix}"
                )
            images, labels = npz[image_key], npz[label_key]
    except BenchInputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise BenchInputError(f"MedMNIST file {path} is not a valid .npz file ({exc}); {fix}") from exc

    expected = (size, size) if n_channels == 1 else (size, size, 3)
    if images.ndim != 1 + len(expected) or images.shape[1:] != expected:
        raise BenchInputError(
            f"MedMNIST file {path}: {image_key} has shape {images.shape}, "
            f"expected (N, {', '.join(map(str, expected))}); {fix}"
        )
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise BenchInputError(
            f"MedMNIST file {path}: {label_key} has shape {labels.shape}, "
            f"expected ({images.shape[0]}, 1); {fix}"
        )
    if labels.dtype.kind not in "iub" and not np.array_equal(labels, np.round(labels)):
        raise BenchInputError(f"MedMNIST file {path}: {label_key} holds non-integer labels; {fix}")
    return _to_gray(images), labels.astype(np.int64)


def load_medmnist(
    flag: str,
    *,
    size: int = 28,
    split: str = "train",
    root: str | Path | None = None,
    verify_checksum: bool = True,
    download: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a 2D single-label MedMNIST dataset.

    Args:
        flag: MedMNIST flag, e.g. ``"breastmnist"`` (see `medmnist_flags_2d`).
        size: image side in pixels: 28, 64, 128 or 224.
        split: ``"train"``, ``"val"`` or ``"test"``.
        root: folder holding the ``.npz`` files; default ``$MEDMNIST_ROOT`` or ``~/.medmnist``.
        verify_checksum: check the file's MD5 against the ``medmnist`` metadata (hashed once per process).
        download: fetch the file from Zenodo with urllib when it is missing.

    Returns:
        ``(images, labels)``: images float64 (N, size, size) in [0, 1] (pixel / 255; RGB flags -- pathmnist,
        dermamnist, retinamnist, bloodmnist -- are converted to grayscale with BT.601 luma weights
        0.299 R + 0.587 G + 0.114 B), labels int64 (N,) class indices as in the metadata's ``label`` dict.
    """
    meta = _flag_info(flag)
    url, md5 = _url_md5(flag, size)
    if split not in SPLITS:
        raise BenchInputError(f"unknown MedMNIST split {split!r}; use one of {list(SPLITS)}")
    if meta["task"].startswith("multi-label"):
        raise BenchInputError(
            f"MedMNIST flag {flag!r} is {meta['task']} ({len(meta['label'])} labels per image) and "
            "bench needs one label per image; use a single-label flag such as breastmnist or pneumoniamnist"
        )
    path = medmnist_file(flag, size, root)
    if not path.is_file():
        if not download:
            raise BenchInputError(
                f"MedMNIST file not found: {path}; download {url} (MD5 {md5}) and save as {path}, "
                "or rerun with --set data.download=true"
            )
        _download(url, path)
    if verify_checksum:
        _verify(path, url, md5)
    return _read_split(path, split, size, int(meta["n_channels"]))
