"""The classifier the attack applies to: a homogeneous ReLU MLP with one scalar output (binary) or C outputs.

Phi(x) = W_L relu(W_{L-1} ... relu(W_1 x + b_1)),  x in R^d (a flattened, centred input); W_L is 1 x H
(binary: Phi(x) a scalar, labels +-1) or C x H (C classes: Phi(x) in R^C, labels 0..C-1).

Bias policy (`ModelConfig.bias`): "none" (exactly homogeneous, degree L in the weights) or "first"
(bias on the first layer only, as in Haim et al.'s code; Phi stays homogeneous jointly in all parameters).
Only the first layer is re-initialised N(0, init_scale^2) (Haim et al.); the others keep PyTorch's default.
"""

from __future__ import annotations

import torch
from torch import nn


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

    def weights(self) -> list[torch.Tensor]:
        """The weight matrices [W_1 (H1, d), ..., W_L (n_out, H_{L-1})], detached."""
        return [layer.weight.detach() for layer in self.layers]

    def first_bias(self) -> torch.Tensor | None:
        b = self.layers[0].bias
        return None if b is None else b.detach()


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
    """Build the MLP with the small first-layer init, deterministically for `seed` (n_out: see `MLP`).

    `init_hidden`: a factor on PyTorch's default init of every layer after the first (1: Haim et al.; the
    same draws, scaled, so a smaller factor changes nothing but the scale)."""
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = MLP(d, depth, width, bias, n_out)
    with torch.no_grad():
        for layer in model.layers[1:]:
            layer.weight.mul_(init_hidden)
        model.layers[0].weight.normal_(0.0, init_scale)
        if model.layers[0].bias is not None:
            model.layers[0].bias.zero_()
    torch.random.set_rng_state(gen_state)
    return model.to(dtype)
