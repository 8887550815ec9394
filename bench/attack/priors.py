"""Priors an attacker has about the data, as terms added to the attack's objective (`attack.tv`,
`attack.floor`, `attack.repel`); all zero by default.

The KKT fit alone may prefer candidates that are not the data (`bench.attack.truth`: an attack whose fit is
below the truth's has found shapes that explain the weights better than the training set does). These terms
restrict it towards data-like candidates with what an attacker knows without the training set: the data's
range (the box, `attack.box_penalty`), that images are piecewise smooth (total variation), that most pixels of
an MNIST digit sit at the range's floor (an L1 pull towards it), and that training samples are distinct
(candidates of one label that coincide are pushed apart).

Every term is a mean over candidates (and pixels), so a weight means the same at any m and d. Shapes: x
(..., m, d) centred candidates; lo (d,) the centred data's lower bound (the floor: lo - mean in the data
scale); y (m,) the candidates' labels; returns (...,).
"""

from __future__ import annotations

import torch

from bench.config import AttackConfig


def total_variation(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Mean over candidates and pixels of the smoothed anisotropic TV, sqrt(dx^2 + eps) + sqrt(dy^2 + eps)
    (eps = 1e-8, so the term is differentiable at flat regions); x (..., m, H*W) -> (...,)."""
    img = x.reshape(*x.shape[:-1], *shape)
    dx = img[..., :, 1:] - img[..., :, :-1]
    dy = img[..., 1:, :] - img[..., :-1, :]
    eps = 1e-8
    tv = torch.sqrt(dx * dx + eps).sum((-1, -2)) + torch.sqrt(dy * dy + eps).sum((-1, -2))
    return tv.mean(-1) / x.shape[-1]


def floor_pull(x: torch.Tensor, lo: torch.Tensor) -> torch.Tensor:
    """Mean over candidates and features of the height above the data's floor, relu(x - lo): an L1 pull of
    every pixel towards the floor (most pixels of a digit are exactly at it); (...,)."""
    return torch.relu(x - lo).mean((-1, -2))


def coincidence(x: torch.Tensor, y: torch.Tensor, threshold: float = 0.9) -> torch.Tensor:
    """Mean over pairs of distinct candidates with the same label of relu(cos(x_i, x_j) - threshold)^2: zero
    unless two candidates nearly coincide (cosine of the centred candidates above `threshold`); (...,)."""
    unit = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    cos = unit @ unit.transpose(-1, -2)
    same = (y[:, None] == y[None, :]) & ~torch.eye(len(y), dtype=torch.bool, device=y.device)
    pairs = same.sum().clamp(min=1)
    return (torch.relu(cos - threshold) ** 2 * same).sum((-1, -2)) / pairs


def has_priors(cfg: AttackConfig) -> bool:
    return cfg.tv > 0 or cfg.floor > 0 or cfg.repel > 0


def prior_terms(
    x: torch.Tensor,
    y: torch.Tensor,
    lo: torch.Tensor,
    cfg: AttackConfig,
    shape: tuple[int, int] | None,
) -> torch.Tensor | float:
    """cfg.tv * TV + cfg.floor * floor pull + cfg.repel * coincidence (...,); 0.0 when all weights are 0.
    TV needs the image `shape` (it is skipped for tabular data, where `shape` is None)."""
    total: torch.Tensor | float = 0.0
    if cfg.tv > 0 and shape is not None:
        total = total + cfg.tv * total_variation(x, shape)
    if cfg.floor > 0:
        total = total + cfg.floor * floor_pull(x, lo)
    if cfg.repel > 0:
        total = total + cfg.repel * coincidence(x, y)
    return total
