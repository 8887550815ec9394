"""Sample splitting (after Shen, Wang, Qian, Lei 2026, arXiv 2602.08723): a curvature-aware refinement step that
opens descent directions out of a poor stationary point of the reconstruction objective.

Replacing candidate i (multiplier c_i = lambda_i y_i) by two halves at x_i +- eps v leaves the gradient sum
unchanged to first order and changes it by (c_i eps^2 / 2) J''(x_i)[v, v] at second order, so the fit
sum_l w_l ||R_l||^2 (R_l = theta_l - G_l, w_l the fit's layer weights) changes by

    -eps^2 c_i v^T (d^2/dx^2 psi)(x_i) v,     psi(x) = sum_l w_l <R_l, grad_{theta_l} Phi(x)>,

with the attack's surrogate slope. Where the block A_i = c_i d^2 psi(x_i) has a positive eigenvalue the split
lowers the fit even where the gradient vanishes. Every `attack.split_every` steps the top eigenpair of every
candidate's block is found by power iteration on Hessian-vector products (the blocks of
Psi_c(X) = sum_i c_i psi(x_i) = sum_l w_l <R_l, G_l(X, c)>, all at once); the candidates with the largest
predicted drop (top eigenvalue x eps^2, eps = `split_eps` ||x_i||) are split into the slot of the same-label
candidate with the smallest multiplier (m stays fixed; that candidate's contribution is given up). A setting
keeps its split only where the float64 objective fell; the optimiser's moments are reset.

Binary networks only (one output): the multiclass rows' directions are not split here.
"""

from __future__ import annotations

import torch

from bench.attack.kkt import Weights, forward_signals, gradient_sums
from bench.attack.truth import layer_weights


def _psi(w: Weights, x: torch.Tensor, c: torch.Tensor, alpha: torch.Tensor, resid: list, wl: torch.Tensor):
    """Psi_c(X) = sum_l w_l <R_l, G_l(X, c)> summed over the population (..., m, d) -> scalar, as the fit's
    forward computes G: activations by the exact ReLU, signals through the surrogate slope sigmoid(alpha h).
    The activations keep torch.relu's own derivative (`forward_signals(exact_relu=True)`), not the
    surrogate's (Haim et al.'s modified ReLU, as in `gradient_sums`): their second derivatives would not
    be the fit's."""
    _, acts, _, signals = forward_signals(w, x, alpha, exact_relu=True)
    cc = c.unsqueeze(-1)
    total = wl[-1] * (resid[w.depth - 1].squeeze(0) * (cc * acts[-1]).sum(-2)).sum()
    for i, (sig, a) in enumerate(zip(signals, acts[:-1], strict=True)):
        total = total + wl[i] * (resid[i] * ((cc * sig).transpose(-1, -2) @ a)).sum()
    if w.bias is not None:
        total = total + wl[0] * (resid[-1] * (cc * signals[0]).sum(-2)).sum()
    return total


def top_eigenpairs(
    w: Weights,
    x: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor,
    resid: list,
    wl: torch.Tensor,
    iters: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The most positive eigenvalue (..., m) and its unit eigenvector (..., m, d) of every candidate's block
    c_i d^2 psi(x_i), by power iteration: first on the blocks (their largest |eigenvalue| mu), then on the
    blocks shifted by |mu| (whose dominant eigenvalue is then the most positive one)."""
    x = x.detach().requires_grad_()
    with torch.enable_grad():
        grad = torch.autograd.grad(_psi(w, x, c, alpha, resid, wl), x, create_graph=True)[0]

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(grad, x, v, retain_graph=True)[0]

    gen = torch.Generator(device="cpu").manual_seed(0)
    v = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    v = v / v.norm(dim=-1, keepdim=True)
    for _ in range(iters):
        hv = hvp(v)
        v = hv / hv.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    shift = (v * hvp(v)).sum(-1).abs()[..., None]
    for _ in range(iters):
        hv = hvp(v) + shift * v
        v = hv / hv.norm(dim=-1, keepdim=True).clamp(min=1e-300)
    top = (v * hvp(v)).sum(-1)
    return top.detach(), v.detach()


def split(
    w: Weights,
    x: torch.Tensor,
    l: torch.Tensor,
    y: torch.Tensor,
    scale: torch.Tensor | float,
    alpha: torch.Tensor,
    cfg,
    objective,
) -> torch.Tensor:
    """One splitting step in place on x (P, m, d) and l (P, m) (see the module docstring); `objective(x, l)`
    gives the float64 objective (P,) of a state. Returns the number of candidates split per setting (P,)
    (0 where the split was undone because the objective did not fall)."""
    P, m, _ = x.shape
    with torch.no_grad():
        c = l * scale * y
        grads, bias = gradient_sums(w, x, c, alpha)
        resid = [mat - g for mat, g in zip(w.mats, grads, strict=True)]
        if bias is not None:
            resid.append(w.bias - bias)
        wl = layer_weights(w.layer_sq_norms(), cfg.fit_norm, cfg.fit_layers).to(x.dtype)
    top, v = top_eigenpairs(w, x, c, alpha, resid, wl, cfg.split_iters)
    with torch.no_grad():
        eps = cfg.split_eps * x.norm(dim=-1)  # (P, m)
        gain = torch.where(top > 0, top * eps * eps, torch.zeros_like(top))
        k = max(1, int(round(cfg.split_frac * m)))
        before = objective(x, l)
        old_x, old_l = x.clone(), l.clone()
        done = torch.zeros(P, dtype=torch.long, device=x.device)
        for p in range(P):
            order = torch.argsort(gain[p], descending=True)
            taken: set[int] = set()
            for i in order[:k].tolist():
                if gain[p, i] <= 0 or i in taken:
                    continue
                same = (y == y[i]).clone()
                same[list(taken | {i})] = False
                if not same.any():
                    continue
                j = int(torch.where(same, l[p], torch.full_like(l[p], float("inf"))).argmin())
                step = eps[p, i] * v[p, i]
                x[p, j] = x[p, i] - step
                x[p, i] = x[p, i] + step
                l[p, i] = l[p, j] = l[p, i] / 2
                taken |= {i, j}
                done[p] += 1
        after = objective(x, l)
        worse = ~(after < before)
        x[worse] = old_x[worse]
        l[worse] = old_l[worse]
        done[worse] = 0
    return done
