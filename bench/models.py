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
`model.arch=module`: the user's own network, built by a function in a Python file (`make_model`).
Every network exposes `sequential()`, its layers in order, which the attack's engine walks
(bench.attack.engine).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

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


class SequentialNet(nn.Module):
    """A network given as layers applied in order (`body`, an nn.Sequential or a module with its own
    `sequential()`): flattened inputs (n, d) -> logits (n,) (one output) or (n, C)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return out.squeeze(-1) if out.shape[-1] == 1 else out

    def sequential(self) -> nn.Module:
        return self.body


def cnn(
    image_shape: tuple[int, int],
    channels: tuple[int, ...] = (32, 32),
    kernel: int = 3,
    pool: str = "avg",
    bias: str = "none",
    n_out: int = 1,
) -> SequentialNet:
    """Homogeneous ReLU CNN on flattened single-channel images (n, h*w) -> logits (n,) or (n, C).

    Per entry c of `channels`: Conv2d(c_in, c, kernel, padding kernel // 2) -> ReLU -> 2x2 pooling
    (`pool` "avg" | "max" | "none"); then Flatten and a bias-free Linear head to n_out. A bias on the
    first convolution only (`bias` "first")."""
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
    return SequentialNet(nn.Sequential(*layers))


def load_builder(spec: str) -> Callable[..., nn.Module]:
    """The function named by `model.module` ("FILE.py:FUNCTION"), loaded from that file."""
    path, _, name = spec.rpartition(":")
    example = "fix: --set model.module=my_net.py:build (a file defining build(d, n_out, image_shape))"
    if not path or not name:
        raise BenchInputError(f"bad value {spec!r} for 'model.module': expected FILE.py:FUNCTION; {example}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise BenchInputError(f"model.module: no file '{path}'; {example}")
    loader = importlib.util.spec_from_file_location(f"bench_user_model_{file.stem}", file)
    if loader is None or loader.loader is None:
        raise BenchInputError(f"model.module: '{path}' is not a loadable Python file; {example}")
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except Exception as e:
        raise BenchInputError(f"model.module: {file} failed to load: {type(e).__name__}: {e}") from None
    build = getattr(module, name, None)
    if not callable(build):
        raise BenchInputError(f"model.module: {file} defines no function '{name}'; {example}")
    return build


def make_mlp(
    d: int,
    depth: int,
    width: int,
    bias: str,
    init_scale: float,
    seed: int,
    dtype: torch.dtype,
    n_out: int = 1,
    init_hidden: float = 1.0,
) -> MLP:
    """Build the MLP with the small first-layer init, deterministically for `seed` (n_out: see `MLP`;
    init_hidden: see `make_model`)."""
    cfg = ModelConfig(depth=depth, width=width, bias=bias)
    return make_model(cfg, d, init_scale, seed, dtype, n_out, init_hidden=init_hidden)


def make_model(
    cfg: ModelConfig,
    d: int,
    init_scale: float,
    seed: int,
    dtype: torch.dtype,
    n_out: int = 1,
    image_shape: tuple[int, int] | None = None,
    init_hidden: float = 1.0,
) -> nn.Module:
    """The network `cfg.arch` calls for, deterministically for `seed`, its first weight layer drawn
    N(0, init_scale^2) and its bias (if any) zero, every later weight layer PyTorch's default init times
    `init_hidden` (1: Haim et al.; the same draws, scaled, so a smaller factor changes nothing but the
    scale). d: input features; image_shape: (h, w) of the flattened images (needed by a CNN;
    BenchInputError for data without one).

    `cfg.arch` "module": the network `build(d, n_out, image_shape)` of `cfg.module` ("FILE.py:build")
    returns, a torch module from flat inputs (n, d) to (n, n_out), checked to be positively homogeneous
    before any training (bench.attack.engine.from_module: BenchInputError naming the offending layer)."""
    from bench.attack.engine import WEIGHT_LAYERS, from_module, leaves

    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        if cfg.arch == "mlp":
            model: nn.Module = MLP(d, cfg.depth, cfg.width, cfg.bias, n_out)
        elif cfg.arch == "cnn":
            if image_shape is None or image_shape[0] * image_shape[1] != d:
                raise BenchInputError(
                    "model.arch=cnn needs image data: this task's samples are not images; fix: --set model.arch=mlp"
                )
            model = cnn(image_shape, cfg.channels, cfg.kernel, cfg.pool, cfg.bias, n_out)
        else:
            built = load_builder(cfg.module)(d, n_out, image_shape)
            if not isinstance(built, nn.Module):
                raise BenchInputError(
                    f"model.module: {cfg.module} returned {type(built).__name__}, not a torch module"
                )
            from_module(built, d)  # positively homogeneous, or BenchInputError naming the layer
            model = SequentialNet(built)
        first, *later = [leaf for _, leaf in leaves(model) if isinstance(leaf, WEIGHT_LAYERS)]
        with torch.no_grad():
            for layer in later:
                layer.weight.mul_(init_hidden)
            first.weight.normal_(0.0, init_scale)
            if first.bias is not None:
                first.bias.zero_()
    finally:
        torch.random.set_rng_state(gen_state)
    return model.to(dtype)
