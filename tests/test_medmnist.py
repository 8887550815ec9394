"""MedMNIST loader: metadata, file layout, root resolution, checksums, errors, download hook."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from medmnist_fixture import write_medmnist_npz

import bench.data.medmnist as mm
from bench.data.medmnist import load_medmnist, medmnist_file, medmnist_flags_2d, medmnist_info
from bench.errors import BenchInputError

BREAST_MD5 = "750601b1f35ba3300ea97c75c52ff8f6"
ORGANC_MD5 = "b9ceb9546e10131b32923c5bbeaea2b1"


@pytest.fixture(autouse=True)
def _fresh_md5_cache(monkeypatch):
    monkeypatch.setattr(mm, "_MD5_CACHE", {})


# --- metadata -------------------------------------------------------------------------------------------


def test_real_metadata():
    assert medmnist_info("breastmnist")["MD5"] == BREAST_MD5
    assert medmnist_info("organcmnist")["MD5"] == ORGANC_MD5
    assert mm._url_md5("breastmnist", 28) == (medmnist_info("breastmnist")["url"], BREAST_MD5)
    url64, md5_64 = mm._url_md5("breastmnist", 64)
    assert "breastmnist_64.npz" in url64 and md5_64 == medmnist_info("breastmnist")["MD5_64"] != BREAST_MD5
    flags = medmnist_flags_2d()
    assert {"breastmnist", "pneumoniamnist", "organcmnist", "bloodmnist"} <= set(flags)
    assert not any("3d" in f for f in flags)
    assert medmnist_info("breastmnist")["n_samples"] == {"train": 546, "val": 78, "test": 156}


def test_metadata_does_not_import_medmnist_package_or_torchvision():
    code = (
        "import sys; from bench.data.medmnist import medmnist_flags_2d; medmnist_flags_2d(); "
        "print('medmnist' in sys.modules, 'medmnist.dataset' in sys.modules, 'torchvision' in sys.modules)"
    )
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(repo), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo, env=env
    )
    assert out.stdout.split() == ["False", "False", "False"]


def test_missing_package_says_how_to_install(monkeypatch):
    mm._info.cache_clear()
    monkeypatch.setattr(mm.importlib.util, "find_spec", lambda name: None)
    try:
        with pytest.raises(BenchInputError, match="pip install medmnist --no-deps"):
            medmnist_flags_2d()
    finally:
        monkeypatch.undo()
        mm._info.cache_clear()


# --- file layout and loading ----------------------------------------------------------------------------


def test_file_names(tmp_path):
    assert medmnist_file("breastmnist", 28, tmp_path) == tmp_path / "breastmnist.npz"
    assert medmnist_file("breastmnist", 224, tmp_path) == tmp_path / "breastmnist_224.npz"


def test_load_grayscale_all_splits(tmp_path):
    path = write_medmnist_npz(tmp_path, "breastmnist", n=(30, 8, 12))
    raw = np.load(path)
    for split, count in (("train", 30), ("val", 8), ("test", 12)):
        x, y = load_medmnist("breastmnist", split=split, root=tmp_path, verify_checksum=False)
        assert x.shape == (count, 28, 28) and x.dtype == np.float64
        assert y.shape == (count,) and y.dtype == np.int64
        assert x.min() >= 0.0 and x.max() <= 1.0
        np.testing.assert_allclose(x, raw[f"{split}_images"] / 255.0)
        np.testing.assert_array_equal(y, raw[f"{split}_labels"][:, 0])
    assert set(np.unique(y)) <= {0, 1}


def test_load_rgb_is_converted_to_luma(tmp_path):
    path = write_medmnist_npz(tmp_path, "bloodmnist", n=(12, 4, 4))
    rgb = np.load(path)["train_images"]
    assert rgb.shape == (12, 28, 28, 3)
    x, _ = load_medmnist("bloodmnist", root=str(tmp_path), verify_checksum=False)
    expected = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]) / 255.0
    assert x.shape == (12, 28, 28)
    np.testing.assert_allclose(x, expected, atol=1e-12)


def test_load_size_64(tmp_path):
    path = write_medmnist_npz(tmp_path, "pneumoniamnist", size=64, n=(6, 2, 2))
    assert path.name == "pneumoniamnist_64.npz"
    x, y = load_medmnist("pneumoniamnist", size=64, split="val", root=tmp_path, verify_checksum=False)
    assert x.shape == (2, 64, 64) and y.shape == (2,)


def test_root_from_env_then_home(tmp_path, monkeypatch):
    env_root = tmp_path / "env"
    write_medmnist_npz(env_root, "breastmnist", n=(5, 2, 2))
    monkeypatch.setenv("MEDMNIST_ROOT", str(env_root))
    assert medmnist_file("breastmnist") == env_root / "breastmnist.npz"
    x, _ = load_medmnist("breastmnist", verify_checksum=False)
    assert x.shape == (5, 28, 28)
    # an explicit root wins over the environment
    assert medmnist_file("breastmnist", 28, tmp_path / "arg") == tmp_path / "arg" / "breastmnist.npz"
    monkeypatch.delenv("MEDMNIST_ROOT")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert medmnist_file("breastmnist") == tmp_path / "home" / ".medmnist" / "breastmnist.npz"


# --- checksums ------------------------------------------------------------------------------------------


def test_checksum_mismatch_is_rejected(tmp_path):
    path = write_medmnist_npz(tmp_path, "breastmnist", n=(5, 2, 2))
    with pytest.raises(BenchInputError) as err:
        load_medmnist("breastmnist", root=tmp_path)
    msg = str(err.value)
    assert str(path) in msg and BREAST_MD5 in msg and mm._file_md5(path) in msg
    assert "\n" not in msg and "download" in msg


def test_checksum_match_loads(tmp_path, monkeypatch):
    path = write_medmnist_npz(tmp_path, "breastmnist", n=(5, 2, 2))
    info = {flag: dict(meta) for flag, meta in mm._info().items()}
    info["breastmnist"]["MD5"] = mm._file_md5(path)
    monkeypatch.setattr(mm, "_info", lambda: info)
    x, _ = load_medmnist("breastmnist", root=tmp_path)
    assert x.shape == (5, 28, 28)


def test_checksum_is_cached_per_path_size_mtime(tmp_path, monkeypatch):
    path = write_medmnist_npz(tmp_path, "breastmnist", n=(5, 2, 2))
    calls = []
    real = mm._file_md5
    monkeypatch.setattr(mm, "_file_md5", lambda p: calls.append(p) or real(p))
    for _ in range(3):
        with pytest.raises(BenchInputError, match="MD5"):
            load_medmnist("breastmnist", root=tmp_path)
    assert len(calls) == 1
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    with pytest.raises(BenchInputError, match="MD5"):
        load_medmnist("breastmnist", root=tmp_path)
    assert len(calls) == 2


# --- errors ---------------------------------------------------------------------------------------------


def test_missing_file_message(tmp_path):
    with pytest.raises(BenchInputError) as err:
        load_medmnist("breastmnist", root=tmp_path)
    msg = str(err.value)
    expected_path = tmp_path / "breastmnist.npz"
    assert str(expected_path) in msg
    assert medmnist_info("breastmnist")["url"] in msg and BREAST_MD5 in msg
    assert "--set data.download=true" in msg and "\n" not in msg


def test_unknown_flag_lists_valid_flags():
    with pytest.raises(BenchInputError, match="unknown MedMNIST flag 'nosuchmnist'.*breastmnist"):
        load_medmnist("nosuchmnist")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"flag": "organmnist3d"}, "3D"),
        ({"flag": "breastmnist", "size": 32}, "unsupported MedMNIST size 32"),
        ({"flag": "breastmnist", "split": "valid"}, "unknown MedMNIST split 'valid'"),
        ({"flag": "chestmnist"}, "multi-label"),
    ],
)
def test_bad_arguments(kwargs, pattern, tmp_path):
    with pytest.raises(BenchInputError, match=pattern):
        load_medmnist(root=tmp_path, verify_checksum=False, **kwargs)


def test_not_an_npz(tmp_path):
    (tmp_path / "breastmnist.npz").write_text("this is not a zip archive")
    with pytest.raises(BenchInputError, match="not a valid .npz"):
        load_medmnist("breastmnist", root=tmp_path, verify_checksum=False)


def test_truncated_npz(tmp_path):
    path = write_medmnist_npz(tmp_path, "breastmnist", n=(5, 2, 2))
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(BenchInputError, match="breastmnist.npz"):
        load_medmnist("breastmnist", root=tmp_path, verify_checksum=False)


def test_missing_key(tmp_path):
    images = np.zeros((3, 28, 28), np.uint8)
    np.savez(tmp_path / "breastmnist.npz", train_images=images, train_labels=np.zeros((3, 1), np.uint8))
    with pytest.raises(BenchInputError, match=r"lacks key\(s\) \['test_images', 'test_labels'\]"):
        load_medmnist("breastmnist", split="test", root=tmp_path, verify_checksum=False)


def test_wrong_image_shape(tmp_path):
    np.savez(
        tmp_path / "breastmnist.npz",
        train_images=np.zeros((3, 32, 32), np.uint8),
        train_labels=np.zeros((3, 1), np.uint8),
    )
    with pytest.raises(
        BenchInputError, match=r"train_images has shape \(3, 32, 32\), expected \(N, 28, 28\)"
    ):
        load_medmnist("breastmnist", root=tmp_path, verify_checksum=False)


# --- download -------------------------------------------------------------------------------------------


def test_download_is_called_when_missing(tmp_path, monkeypatch):
    calls: list[tuple[str, Path]] = []

    def fake_download(url: str, dest: Path) -> None:
        calls.append((url, dest))
        write_medmnist_npz(dest.parent, "breastmnist", n=(4, 2, 2))

    monkeypatch.setattr(mm, "_download", fake_download)
    x, _ = load_medmnist("breastmnist", root=tmp_path, download=True, verify_checksum=False)
    assert calls == [(medmnist_info("breastmnist")["url"], tmp_path / "breastmnist.npz")]
    assert x.shape == (4, 28, 28)
    load_medmnist("breastmnist", root=tmp_path, download=True, verify_checksum=False)
    assert len(calls) == 1  # present: not downloaded again


def test_download_network_failure_is_clear(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    root = tmp_path / "new"
    with pytest.raises(BenchInputError) as err:
        load_medmnist("breastmnist", root=root, download=True)
    msg = str(err.value)
    assert "could not download" in msg and "no network" in msg
    assert medmnist_info("breastmnist")["url"] in msg and str(root / "breastmnist.npz") in msg
    assert list(root.iterdir()) == []  # no partial file left behind
