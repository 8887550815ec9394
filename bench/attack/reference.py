"""The reference formulation of the attack loss (as in Haim et al.'s code): autograd's double backward.

G = grad_theta sum_i lambda_i y_i Phi(theta; x_i) is taken with `create_graph=True` through a ReLU whose
backward is sigmoid(alpha h), and the loss is then differentiated again. Slow (it builds per-parameter
gradients and, as in the reference code, can back-propagate into the parameters too), but independent
of bench's closed form: the tests check `bench.attack.kkt` against it and `bench perf` times it.
"""

from __future__ import annotations

import torch

from bench.attack.kkt import Weights


class _ModifiedReLU(torch.autograd.Function):
    """relu forward; backward grad * sigmoid(alpha h), itself differentiable (for double backward)."""

    @staticmethod
    def forward(ctx, h: torch.Tensor, alpha: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(h)
        ctx.alpha = alpha
        return h.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (h,) = ctx.saved_tensors
        return grad * torch.sigmoid(ctx.alpha * h), None


def phi(params: list[torch.Tensor], x: torch.Tensor, alpha: float, has_bias: bool) -> torch.Tensor:
    """Network output (m,) from params [W_1, (b_1), W_2, ..., W_L] with the modified ReLU."""
    mats = [params[0]] + params[2 if has_bias else 1 :]
    h = x @ mats[0].T
    if has_bias:
        h = h + params[1]
    for mat in mats[1:]:
        h = _ModifiedReLU.apply(h, alpha) @ mat.T
    return h.squeeze(-1)


def reference_fit(w: Weights, x: torch.Tensor, c: torch.Tensor, alpha: float) -> torch.Tensor:
    """sum_l ||theta_l - G_l||^2 / ||theta||^2 by double backward; x (m, d), c (m,) = lambda * y.

    As in the reference code the parameters are leaves that require grad, so `.backward()` on the result
    also fills parameter gradients (wasted work that bench's closed form avoids).
    """
    params = _leaves(w)
    out = (c * phi(params, x, alpha, w.bias is not None)).sum()
    grads = torch.autograd.grad(out, params, create_graph=True)
    theta_sq = sum((p.detach() ** 2).sum() for p in params)
    return sum((p - g).pow(2).sum() for p, g in zip(params, grads, strict=True)) / theta_sq


def _leaves(w: Weights) -> list[torch.Tensor]:
    params = [w.mats[0]] + ([w.bias] if w.bias is not None else []) + list(w.mats[1:])
    return [p.detach().clone().requires_grad_() for p in params]


def per_sample_gradient_sums(
    w: Weights, x: torch.Tensor, c: torch.Tensor, alpha: float
) -> list[torch.Tensor]:
    """[G_1, (G_b), G_2, ..., G_L] by autograd (no create_graph): the ground truth for `gradient_sums`."""
    params = _leaves(w)
    out = (c * phi(params, x, alpha, w.bias is not None)).sum()
    return list(torch.autograd.grad(out, params))


def haim_loss(
    w: Weights, x: torch.Tensor, lam: torch.Tensor, y: torch.Tensor, alpha: float, lam_min: float
) -> torch.Tensor:
    """The reference code's loss, unnormalised: sum_params ||theta - (1/m) grad sum_i lam_i y_i Phi(x_i)||^2
    + sum relu(x - 1)^2 + sum relu(-1 - x)^2 + 5 sum relu(lam_min - lam)^2 (x (m, d), lam (m,))."""
    params = _leaves(w)
    out = (lam * y * phi(params, x, alpha, w.bias is not None)).sum() / x.shape[0]
    grads = torch.autograd.grad(out, params, create_graph=True)
    fit = sum((p - g).pow(2).sum() for p, g in zip(params, grads, strict=True))
    box = (torch.relu(x - 1) ** 2 + torch.relu(-1 - x) ** 2).sum()
    return fit + box + 5.0 * torch.relu(lam_min - lam).pow(2).sum()


def reference_multiclass_fit(
    w: Weights, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor, alpha: float, pairs: str = "max"
) -> torch.Tensor:
    """The multiclass residual by double backward (C-output network, C >= 2): x (m, d), y (m,) class
    indices, c (m,) multipliers of Phi_y - max_{j != y} Phi_j (`pairs="max"`, the other class chosen at the
    current outputs, as in Buzaglo et al.) or (m, C) multipliers of every Phi_y - Phi_j (`pairs="all"`)."""
    params = _leaves(w)
    out = phi(params, x, alpha, w.bias is not None)  # (m, C)
    rows = torch.arange(len(x))
    own = out[rows, y.long()]
    if pairs == "max":
        masked = out.detach().clone()
        masked[rows, y.long()] = float("-inf")
        total = (c * (own - out[rows, masked.argmax(-1)])).sum()
    else:
        keep = torch.ones_like(out, dtype=torch.bool)
        keep[rows, y.long()] = False
        total = (c * (own.unsqueeze(-1) - out) * keep).sum()
    grads = torch.autograd.grad(total, params, create_graph=True)
    theta_sq = sum((p.detach() ** 2).sum() for p in params)
    return sum((p - g).pow(2).sum() for p, g in zip(params, grads, strict=True)) / theta_sq
