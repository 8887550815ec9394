"""The attack's optimiser: Adam or SGD-momentum over tensors with a leading population dimension, each
setting with its own step size (`bench.attack.reconstruct`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch


class Optimizer:
    """Adam or SGD-momentum over tensors with a leading population dimension and per-setting step sizes.

    `step` also copies the moving settings' new state into `keep` (the attack's last good state). With
    `compiled`, the whole update (for x: ~10 passes over m x d floats) runs as one torch.compile'd
    kernel per tensor, ~1 ms a step less at the paper's scale on one CPU thread; the same arithmetic in
    another order of rounding (tests/test_attack.py checks both against torch.optim.Adam).
    """

    def __init__(
        self,
        params: list[torch.Tensor],
        lrs: list[torch.Tensor],
        kind: str,
        momentum: float,
        compiled: bool,
        beta2: float,
    ):
        self.params, self.lrs, self.kind, self.momentum, self.beta2 = params, lrs, kind, momentum, beta2
        self.m1 = [torch.zeros_like(p) for p in params]
        self.m2 = [torch.zeros_like(p) for p in params]
        self.t = 0
        self.update = _compiled_update() if compiled else _update

    def reset(self) -> None:
        """Forget the moments (after the parameters were set back)."""
        for m in (*self.m1, *self.m2):
            m.zero_()
        self.t = 0

    @torch.no_grad()
    def step(self, alive: torch.Tensor, keep: list[torch.Tensor]) -> None:
        """One update of the settings where `alive` (P,) holds; then keep[i] <- params[i] there."""
        self.t += 1
        # bias corrections as tensors: a Python float would be a constant to torch.compile, and the fused
        # update would be recompiled at every step
        corr = [
            torch.tensor(1 - b**self.t, dtype=self.params[0].dtype, device=alive.device)
            for b in (_BETA1, self.beta2)
        ]
        for p, lr, m1, m2, good in zip(self.params, self.lrs, self.m1, self.m2, keep, strict=True):
            self.update(
                self.kind, self.momentum, self.beta2, p.detach(), p.grad, m1, m2, lr, alive, *corr, good
            )
            p.grad = None


_BETA1 = 0.9


def _update(
    kind: str,
    momentum: float,
    b2: float,
    p: torch.Tensor,
    grad: torch.Tensor,
    m1: torch.Tensor,
    m2: torch.Tensor,
    lr: torch.Tensor,
    alive: torch.Tensor,
    corr1: torch.Tensor,
    corr2: torch.Tensor,
    good: torch.Tensor,
) -> None:
    """In place: the moments m1, m2 and p (where `alive`, leading dimension) from `grad` (NaN/inf -> 0);
    Adam (second-moment decay `b2`) with bias corrections corr1 = 1 - beta1^t, corr2 = 1 - b2^t, or SGD
    with `momentum`; then good <- p where alive (no boolean indexing: no device sync)."""
    b1 = _BETA1
    grad = torch.nan_to_num(grad)
    shape = (-1, *([1] * (p.dim() - 1)))
    mask = alive.view(shape).to(p.dtype)
    if kind == "adam":
        m1.mul_(b1).add_(grad, alpha=1 - b1)
        m2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = (m2 / corr2).sqrt_().add_(1e-8)
        p.sub_(mask * lr * (m1 / corr1) / denom)
    else:
        m1.mul_(momentum).add_(grad)
        p.sub_(mask * lr * m1)
    good.copy_(torch.where(alive.view(shape), p, good))


@functools.cache
def _compiled_update() -> Callable[..., None]:
    """`_update` through torch.compile (one compiled function per process, specialised per shape)."""
    return torch.compile(_update, dynamic=False)
