"""Small ResNet18: parameter count, shapes, determinism and fitting a tiny separable dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.errors import BenchInputError
from bench.resnet import ResNet18, count_parameters, train_resnet


def resnet18_parameters(in_channels: int, num_classes: int, width: int, stem_kernel: int = 3) -> int:
    """Closed-form parameter count: stem conv + BN, 4 stages of 2 BasicBlocks, linear head.

    A BasicBlock c_in -> c_out has 9 c_in c_out + 9 c_out^2 conv weights and 2 BNs (2 c_out each); a
    down-sampling block adds a 1x1 conv (c_in c_out) and a BN (2 c_out).
    """
    total = stem_kernel**2 * in_channels * width + 2 * width
    c_in = width
    for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
        for j in range(2):
            cin = c_in if j == 0 else c_out
            total += 9 * cin * c_out + 9 * c_out * c_out + 4 * c_out
            if j == 0 and i > 0:
                total += cin * c_out + 2 * c_out
        c_in = c_out
    return total + 8 * width * num_classes + num_classes


def test_formula_matches_imagenet_resnet18():
    # torchvision's resnet18() (7x7 stem on 3 channels, 1000 classes) has 11,689,512 parameters
    assert resnet18_parameters(3, 1000, 64, stem_kernel=7) == 11_689_512


@pytest.mark.parametrize(("in_channels", "num_classes", "width"), [(1, 2, 64), (1, 2, 8), (3, 10, 4)])
def test_parameter_count(in_channels, num_classes, width):
    model = ResNet18(in_channels=in_channels, num_classes=num_classes, width=width)
    assert count_parameters(model) == resnet18_parameters(in_channels, num_classes, width)


def test_default_parameter_count_is_11_17m():
    assert count_parameters(ResNet18()) == 11_168_706


@pytest.mark.parametrize("side", [8, 25, 28])
def test_output_shape(side):
    model = ResNet18(in_channels=1, num_classes=2, width=8).eval()
    assert model(torch.zeros(3, 1, side, side)).shape == (3, 2)


def _separable(n: int, side: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Class 1: bright left half, class 0: bright right half, plus noise; flattened to (n, side*side)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = rng.uniform(0, 0.3, size=(n, side, side))
    x[y == 1, :, : side // 2] += 0.7
    x[y == 0, :, side // 2 :] += 0.7
    return x.reshape(n, -1), y


def test_fits_tiny_separable_dataset():
    x, y = _separable(32, seed=0)
    xt, yt = _separable(16, seed=1)
    seen = []
    result = train_resnet(
        x,
        y,
        xt,
        yt,
        image_shape=(8, 8),
        epochs=12,
        batch_size=8,
        width=8,
        progress=lambda e, l: seen.append(e),
    )
    assert result["train_accuracy"] == 1.0 and result["test_accuracy"] == 1.0
    assert result["epochs"] == 12 and len(result["curve"]) == 12 and seen == list(range(1, 13))
    assert result["curve"][-1] < result["curve"][0]
    assert result["train_loss"] < 0.3 and np.isfinite(result["test_loss"])
    assert result["n_parameters"] == resnet18_parameters(1, 2, 8)


def test_deterministic_for_a_seed():
    x, y = _separable(17)  # 17 = 2 batches of 8 + 1: the lone sample is merged into the last batch

    def run(seed: int) -> dict:
        return train_resnet(x, y, x, y, image_shape=(8, 8), epochs=2, batch_size=8, width=4, seed=seed)

    first, second, other = run(0), run(0), run(1)
    assert first == second
    assert first["curve"] != other["curve"]


def test_bad_inputs():
    x, y = _separable(8)
    with pytest.raises(BenchInputError, match=r"x_train has shape \(8, 64\), expected \(n, 784\)"):
        train_resnet(x, y, x, y)
    with pytest.raises(BenchInputError, match="0/1"):
        train_resnet(x, y + 1, x, y, image_shape=(8, 8))
    with pytest.raises(BenchInputError, match="epochs"):
        train_resnet(x, y, x, y, image_shape=(8, 8), epochs=0)
