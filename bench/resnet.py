"""A small ResNet18 for single-channel images, written here because torchvision cannot be installed.

Architecture (He et al. 2016, ResNet18 = BasicBlock x [2, 2, 2, 2]):

* stem: 3x3 conv (stride 1, no bias) -> BN -> ReLU. **Deviation:** ImageNet ResNet18 uses a 7x7 stride-2
  conv followed by a 3x3 stride-2 max-pool, which would shrink a 28x28 (or 8x8) input 4x before the first
  block; like the common CIFAR variant, this stem keeps full resolution and has no max-pool.
* stages of two BasicBlocks with widths ``(w, 2w, 4w, 8w)`` (``w = width``, 64 = standard); the first block of
  stages 2..4 has stride 2 and a 1x1-conv + BN shortcut, all other shortcuts are identities.
* global average pool -> linear head with ``num_classes`` outputs.

With ``width=64, in_channels=1, num_classes=2`` it has 11,168,706 parameters (ImageNet ResNet18: 11,689,512;
the difference is the 7x7x3 stem, 9,408 vs 576 weights, and the 1000-way head, 513,000 vs 1,026).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchInputError


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers plus a shortcut: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet18 with a small-image stem: (B, in_channels, H, W) -> logits (B, num_classes)."""

    def __init__(self, in_channels: int = 1, num_classes: int = 2, width: int = 64) -> None:
        super().__init__()
        if width < 1 or in_channels < 1 or num_classes < 1:
            raise BenchInputError(
                f"ResNet18: width={width}, in_channels={in_channels}, num_classes={num_classes} "
                "must all be >= 1"
            )
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages, c_in = [], width
        for i, c_out in enumerate((width, 2 * width, 4 * width, 8 * width)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(8 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (BN running statistics are buffers and not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a trailing one-sample batch joins the previous one (BN needs > 1 sample)."""
    perm = torch.randperm(n, generator=generator)
    batches = list(torch.split(perm, batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2] = torch.cat([batches[-2], batches.pop()])
    return batches


@torch.no_grad()
def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` in eval mode on (x, y)."""
    model.eval()
    logits = torch.cat([model(chunk) for chunk in torch.split(x, 256)])
    loss = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(1) == y).double().mean().item()
    return accuracy, loss


def _as_tensors(x: np.ndarray, y: np.ndarray, image_shape: tuple[int, int], name: str):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    h, w = image_shape
    if x.ndim != 2 or x.shape[1] != h * w:
        raise BenchInputError(
            f"train_resnet: {name} has shape {x.shape}, expected (n, {h * w}) for image_shape={image_shape}; "
            "flatten the images or fix image_shape"
        )
    if y.shape != (x.shape[0],) or not np.isin(y, (0, 1)).all():
        raise BenchInputError(
            f"train_resnet: labels for {name} must be a ({x.shape[0]},) array of 0/1 values"
        )
    xt = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, h, w)
    return xt, torch.as_tensor(y.astype(np.int64))


def train_resnet(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    image_shape: tuple[int, int] = (28, 28),
    epochs: int = 30,
    lr: float = 1e-3,
    batch_size: int = 32,
    weight_decay: float = 5e-4,
    width: int = 64,
    seed: int = 0,
    progress: Callable[[int, float], None] | None = None,
    device: str | torch.device | None = None,
) -> dict:
    """Train a binary `ResNet18` with Adam and cross-entropy; deterministic for a given ``seed`` and device.

    Args:
        x_train, x_test: (n, H*W) float arrays (flattened single-channel images), reshaped to (n, 1, H, W).
        y_train, y_test: (n,) labels in {0, 1}.
        image_shape: (H, W) of the flattened images.
        epochs, lr, batch_size, weight_decay: Adam settings (weight decay is Adam's L2 penalty).
        width: channels of the first stage (64 = standard ResNet18).
        seed: seeds the weight initialisation and the shuffling generator.
        progress: called after each epoch as ``progress(epoch, mean_train_loss)`` with epoch counted from 1.
        device: where to train (None: the run's device, see `bench.device.configure`); the weights and
            the batch order are drawn on the CPU, so every device starts alike.

    Returns:
        dict with ``train_accuracy``, ``test_accuracy``, ``train_loss``, ``test_loss`` (final model in eval
        mode, mean cross-entropy in nats), ``epochs``, ``curve`` (per-epoch mean training-batch loss, list of
        floats) and ``n_parameters``.
    """
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise BenchInputError(
            f"train_resnet: epochs={epochs}, batch_size={batch_size} must be >= 1 and lr={lr} > 0"
        )
    from bench.device import current_device, resolve_device

    dev = current_device() if device is None else resolve_device(device)
    xtr, ytr = (t.to(dev) for t in _as_tensors(x_train, y_train, image_shape, "x_train"))
    xte, yte = (t.to(dev) for t in _as_tensors(x_test, y_test, image_shape, "x_test"))
    if len(xtr) < 2:
        raise BenchInputError("train_resnet: x_train needs at least 2 samples (batch norm)")

    torch.manual_seed(seed)
    model = ResNet18(in_channels=1, num_classes=2, width=width).to(dev)
    acc_dtype = torch.float32 if dev.type == "mps" else torch.float64  # MPS has no float64
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    curve: list[float] = []
    for epoch in range(1, epochs + 1):
        model.train()
        total = torch.zeros((), dtype=acc_dtype, device=dev)  # summed on the device: one copy per epoch
        for idx in _batches(len(xtr), batch_size, generator):
            idx = idx.to(dev)
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            loss.backward()
            optimizer.step()
            total += loss.detach().to(acc_dtype) * len(idx)
        curve.append(float(total) / len(xtr))
        if progress is not None:
            progress(epoch, curve[-1])

    train_accuracy, train_loss = _evaluate(model, xtr, ytr)
    test_accuracy, test_loss = (float("nan"), float("nan")) if len(xte) == 0 else _evaluate(model, xte, yte)
    return {
        "train_accuracy": train_accuracy,
        "test_accuracy": test_accuracy,
        "train_loss": train_loss,
        "test_loss": test_loss,
        "epochs": epochs,
        "curve": curve,
        "n_parameters": count_parameters(model),
    }
