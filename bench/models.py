"""The classifiers the attack applies to: homogeneous ReLU networks with one scalar output (binary) or C.

MLP: Phi(x) = W_L relu(W_{L-1} ... relu(W_1 x + b_1)),  x in R^d (a flattened, centred input); W_L is 1 x H
(binary: Phi(x) a scalar, labels +-1) or C x H (C classes: Phi(x) in R^C, labels 0..C-1).
CNN: the flattened single-channel image reshaped to (1, h, w), then per entry of `channels` a k x k
convolution ("same" zero padding) -> ReLU -> 2x2 average or max pooling (or none), then a bias-free
linear head. Both are positively homogeneous of degree L = their number of weight layers (average pooling
is linear, max pooling piecewise linear): what the KKT attack rests on.

Bias policy (`ModelConfig.bias`): "none" (exactly homogeneous, degree L in the weights) or "first"
(bias on the first layer only, as in Haim et al.'s code; Phi stays homogeneous jointly in all parameters).
Only the first layer is re-initialised N(0, init_scale^2) (Haim et al.); the others keep PyTorch's default.
Both expose `sequential()`, the layers in order, which the attack's engine walks (bench.attack.engine).
"""

from __future__ import annotations

import torch
from torch import nn

from bench.config import ModelConfig
from bench.errors import BenchInputError


class MLP(nn.Module):
    """ReLU MLP d -> width x (depth-1) -> n_out with no biases except optionally the first layer's.

    n_out = 1: a binary classifier with a scalar output; n_out = C >= 2: a C-class classifier."""

    def __init__(self, d: int, depth: int = 3, width: int = 1000, bias: str = "none", n_out: int = 1) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError("depth counts weight layers and must be >= 2")
        if n_out < 1:
            raise ValueError("n_out counts outputs and must be >= 1")
        sizes = [d] + [width] * (depth - 1) + [n_out]
        self.layers = nn.ModuleList(
            nn.Linear(sizes[i], sizes[i + 1], bias=(bias == "first" and i == 0)) for i in range(depth)
        )
        self.bias_policy = bias

    @property
    def depth(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, d) -> logits (n,) (one output) or (n, C)."""
        h = x
        for layer in self.layers[:-1]:
            h = torch.relu(layer(h))
        out = self.layers[-1](h)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def sequential(self) -> nn.Sequential:
        """The same layers (shared) as Linear, ReLU, ..., Linear."""
        parts: list[nn.Module] = []
        for layer in self.layers[:-1]:
            parts += [layer, nn.ReLU()]
        return nn.Sequential(*parts, self.layers[-1])

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices [W_1 (H1, d), ..., W_L (n_out, H_{L-1})], detached."""
        return [layer.weight.detach() for layer in self.layers]

    def first_bias(self) -> torch.Tensor | None:
        b = self.layers[0].bias
        return None if b is None else b.detach()


class CNN(nn.Module):
    """Homogeneous ReLU CNN on flattened single-channel images (n, h*w) -> logits (n,) or (n, C).

    Per entry c of `channels`: Conv2d(c_in, c, kernel, padding kernel // 2) -> ReLU -> 2x2 pooling
    (`pool` "avg" | "max" | "none"); then Flatten and a bias-free Linear head to n_out. A bias on the
    first convolution only (`bias` "first")."""

    def __init__(
        self,
        image_shape: tuple[int, int],
        channels: tuple[int, ...] = (32, 32),
        kernel: int = 3,
        pool: str = "avg",
        bias: str = "none",
        n_out: int = 1,
    ) -> None:
        super().__init__()
        h, w = image_shape
        layers: list[nn.Module] = [nn.Unflatten(1, (1, h, w))]
        c_in = 1
        for i, c in enumerate(channels):
            layers += [
                nn.Conv2d(c_in, c, kernel, padding=kernel // 2, bias=bias == "first" and i == 0),
                nn.ReLU(),
            ]
            if pool != "none":
                if min(h, w) < 2:
                    raise BenchInputError(
                        f"model.channels: {len(channels)} pooled convolutions shrink the {image_shape[0]}x"
                        f"{image_shape[1]} image below 1 pixel; fix: fewer model.channels or model.pool=none"
                    )
                layers.append(nn.AvgPool2d(2) if pool == "avg" else nn.MaxPool2d(2))
                h, w = h // 2, w // 2
            c_in = c
        layers += [nn.Flatten(), nn.Linear(c_in * h * w, n_out, bias=False)]
        self.body = nn.Sequential(*layers)

    @property
    def depth(self) -> int:
        return sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in self.body)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (n, h*w) -> logits (n,) (one output) or (n, C)."""
        out = self.body(x)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def sequential(self) -> nn.Sequential:
        return self.body


def make_mlp(
    d: int,
    depth: int,
    width: int,
    bias: str,
    init_scale: float,
    seed: int,
    dtype: torch.dtype,
    n_out: int = 1,
) -> MLP:
    """Build the MLP with the small first-layer init, deterministically for `seed` (n_out: see `MLP`)."""
    return make_model(ModelConfig(depth=depth, width=width, bias=bias), d, init_scale, seed, dtype, n_out)


def make_model(
    cfg: ModelConfig,
    d: int,
    init_scale: float,
    seed: int,
    dtype: torch.dtype,
    n_out: int = 1,
    image_shape: tuple[int, int] | None = None,
) -> MLP | CNN:
    """The network `cfg.arch` calls for, deterministically for `seed`, its first weight layer drawn
    N(0, init_scale^2) and its bias (if any) zero. d: input features; image_shape: (h, w) of the
    flattened images (needed by a CNN; BenchInputError for data without one)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    if cfg.arch == "mlp":
        model: MLP | CNN = MLP(d, cfg.depth, cfg.width, cfg.bias, n_out)
        first = model.layers[0]
    else:
        if image_shape is None or image_shape[0] * image_shape[1] != d:
            torch.random.set_rng_state(gen_state)
            raise BenchInputError(
                "model.arch=cnn needs image data: this task's samples are not images; fix: --set model.arch=mlp"
            )
        model = CNN(image_shape, cfg.channels, cfg.kernel, cfg.pool, cfg.bias, n_out)
        first = model.body[1]
    with torch.no_grad():
        first.weight.normal_(0.0, init_scale)
        if first.bias is not None:
            first.bias.zero_()
    torch.random.set_rng_state(gen_state)
    return model.to(dtype)
