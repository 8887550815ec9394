"""The multiclass KKT residual (Buzaglo et al. 2023), in closed form like the binary one in `bench.attack.kkt`.

A C-output homogeneous ReLU network trained to near-zero cross-entropy converges in direction to a KKT point
of the multiclass max-margin problem: theta = sum_i sum_{j != y_i} lambda_ij grad_theta(Phi_{y_i}(x_i) -
Phi_j(x_i)). `pairs="max"` keeps one multiplier per candidate for j* = argmax_{j != y_i} Phi_j (Buzaglo et
al.); `pairs="all"` the full sum. The residual is explicit (a sum of squares per layer), combined into the
fit as the binary one (`bench.attack.kkt.fit_from_terms`); checked against double backward in the tests.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bench.attack.kkt import Weights, _SurrogateReLU, box_term, fit_from_terms, penalties, wrapped_loss

# Multiclass networks (Buzaglo et al. 2023, arXiv 2307.01827).
#
# A homogeneous ReLU MLP with C outputs, Phi(x) = W_L relu(... relu(W_1 x + b_1)) in R^C (W_L is C x H),
# trained to near-zero cross-entropy, converges in direction to a KKT point of
# min ||theta||^2 s.t. Phi_{y_i}(x_i) - Phi_j(x_i) >= 1 for all j != y_i, so that
#
#     theta = sum_i sum_{j != y_i} lambda_ij grad_theta (Phi_{y_i}(x_i) - Phi_j(x_i)),   lambda_ij >= 0.
#
# Buzaglo et al. keep one multiplier per sample, on the most violated (largest) other output:
# theta ~ sum_i lambda_i grad_theta (Phi_{y_i}(x_i) - max_{j != y_i} Phi_j(x_i)). Both are one form:
# theta ~ sum_i grad_theta (u_i . Phi(x_i)) with a direction u_i in R^C ("max": u_i = lambda_i (e_y - e_j*);
# "all": u_i[y] = sum_j lambda_ij, u_i[j] = -lambda_ij). The gradient of u . Phi is linear in u, so in closed
# form per layer: G_L = U^T A_{L-1} (C x H), and the back-propagated signal starts at g_{L-1} = (U W_L) *
# sigmoid(alpha h_{L-1}) (i.e. lambda (W_L[y] - W_L[j]) through the surrogate ReLU derivative) and runs down
# as in the binary case, G_l = g_l^T a_{l-1}. The residual is formed explicitly and never expanded
# (||W_l - G_l||^2 summed as a square: no cancellation in low precision).
#
# The binary attack is this one at C = 2 under an exact map (tests/test_multiclass.py): the binary
# network (W_1, ..., W_{L-1}, w) and the C = 2 network (W_1, ..., W_{L-1}, [-w/sqrt2; +w/sqrt2]) have the
# same ||theta||^2, and with labels y = +1 <-> class 1, multipliers lambda_C2 = lambda_binary / sqrt2, the two
# residuals are equal (hidden layers: the C = 2 signal is y sqrt2 w, times lambda / sqrt2; last layer:
# 2 ||w/sqrt2 - G/sqrt2||^2 = ||w - G||^2). The C = 2 network's margin Phi_1 - Phi_0 is sqrt2 times Phi.


def multiclass_forward(
    w: Weights, x: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Forward pass of a C-output network: phi (..., m, C); acts [a_0 = x, ..., a_{L-1}] (..., m, H_l);
    slopes [sigmoid(alpha h_1), ..., sigmoid(alpha h_{L-1})], the surrogate ReLU derivatives (the forward
    values are exact ReLU; the backward into x uses the slopes, as in `forward_signals`)."""
    acts, slopes = [x], []
    h = x @ w.mats[0].T
    if w.bias is not None:
        h = h + w.bias
    for mat in w.mats[1:]:
        slopes.append(torch.sigmoid(alpha * h))
        acts.append(_SurrogateReLU.apply(h, slopes[-1]))
        h = acts[-1] @ mat.T
    return h, acts, slopes


def multiclass_directions(
    phi: torch.Tensor, y: torch.Tensor, c: torch.Tensor, pairs: str = "max"
) -> torch.Tensor:
    """The output directions u (..., m, C) with sum_i u_i . Phi(x_i) the KKT sum's scalar.

    phi (..., m, C) outputs; y (m,) class indices (any dtype holding integers); c the multipliers:
    (..., m) for `pairs="max"` (u_i = c_i (e_{y_i} - e_{j*}), j* = argmax_{j != y_i} phi_j, not
    differentiated: a selection) or (..., m, C) for `pairs="all"` (u_i[j] = -c_ij for j != y_i,
    u_i[y_i] = sum_{j != y_i} c_ij; the entries c_{i y_i} are ignored).
    """
    classes = torch.arange(phi.shape[-1], device=phi.device)
    # one-hot rows by comparison (torch's one_hot checks its values on the host, which vmap cannot do)
    onehot = (y.long().unsqueeze(-1) == classes).to(phi.dtype)  # (m, C)
    if pairs == "max":
        other = phi.detach().masked_fill(onehot.bool(), float("-inf")).argmax(-1)
        diff = onehot - (other.unsqueeze(-1) == classes).to(phi.dtype)
        return c.unsqueeze(-1) * diff
    if pairs == "all":
        off = c * (1.0 - onehot)
        return onehot * off.sum(-1, keepdim=True) - off
    raise ValueError(f"pairs must be 'max' or 'all', not {pairs!r}")


def multiclass_gradient_sums(
    w: Weights, acts: list[torch.Tensor], slopes: list[torch.Tensor], u: torch.Tensor
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """G_l = sum_i grad_{W_l} (u_i . Phi(x_i)) for every layer ((..., H_l, H_{l-1}); the last (..., C, H)),
    and the first-layer bias sum (..., H_1) (or None); acts and slopes from `multiclass_forward`."""
    grads = [u.transpose(-1, -2) @ acts[-1]]
    g = (u @ w.mats[-1]) * slopes[-1]  # dPhi/dh_{L-1} along u
    for layer in range(w.depth - 2, -1, -1):
        grads.append(g.transpose(-1, -2) @ acts[layer])
        if layer > 0:
            g = (g @ w.mats[layer]) * slopes[layer - 1]
    grads.reverse()
    bias = g.sum(-2) if w.bias is not None else None
    return grads, bias


def multiclass_layer_residuals(
    w: Weights,
    x: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor | float,
    pairs: str = "max",
) -> torch.Tensor:
    """||theta_l - G_l||^2 of every layer (..., L) (the first layer's bias counted with W_1), G from
    `multiclass_directions`: explicit, a sum of squares (see `layer_residuals`).

    x (..., m, d) candidates, y (m,) their class indices, c their multipliers ((..., m), or (..., m, C) for
    `pairs="all"`); alpha broadcastable to (..., 1, 1).
    """
    phi, acts, slopes = multiclass_forward(w, x, alpha)
    u = multiclass_directions(phi, y, c, pairs)
    grads, bias = multiclass_gradient_sums(w, acts, slopes, u)
    terms = [((mat - grad) ** 2).sum((-1, -2)) for mat, grad in zip(w.mats, grads, strict=True)]
    if bias is not None:
        terms[0] = terms[0] + ((w.bias - bias) ** 2).sum(-1)
    return torch.stack(torch.broadcast_tensors(*terms), dim=-1)


def multiclass_kkt_fit(
    w: Weights,
    x: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor | float,
    pairs: str = "max",
    theta_sq: torch.Tensor | None = None,
    norm: str = "theta",
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
) -> torch.Tensor:
    """The multiclass KKT residual per candidate set (...,): `multiclass_layer_residuals` combined as in
    `kkt_fit` (`norm`, `layers`); "theta" is sum_l ||theta_l - G_l||^2 / ||theta||^2."""
    terms = multiclass_layer_residuals(w, x, y, c, alpha, pairs)
    return fit_from_terms(terms, w, norm, theta_sq, layer_sq, layers)


def multiclass_penalties(
    x: torch.Tensor,
    l: torch.Tensor,
    y: torch.Tensor,
    lam_min: torch.Tensor | float,
    lo: torch.Tensor,
    hi: torch.Tensor,
    lam_penalty: float = 5.0,
    box_penalty: float = 1.0,
    pairs: str = "max",
) -> torch.Tensor:
    """`penalties` for a C-output network: with `pairs="all"` the lam_min floor applies to every
    (candidate, other class) multiplier, not to the column of the candidate's own class."""
    if pairs != "all":
        return penalties(x, l, lam_min, lo, hi, lam_penalty, box_penalty)
    floor = torch.as_tensor(lam_min, dtype=l.dtype, device=l.device)
    floor = floor.unsqueeze(-1) if floor.dim() else floor  # (..., 1) -> (..., 1, 1)
    others = 1.0 - torch.nn.functional.one_hot(y.long(), l.shape[-1]).to(l.dtype)
    lam_term = (torch.relu(floor - l).pow(2) * others).sum((-1, -2))
    return lam_penalty * lam_term + box_penalty * box_term(x, lo, hi)


def multiclass_attack_loss(
    w: Weights,
    x: torch.Tensor,
    l: torch.Tensor,
    y: torch.Tensor,
    *,
    lam_scale: torch.Tensor | float,
    lam_min: torch.Tensor | float,
    alpha: torch.Tensor | float,
    lo: torch.Tensor,
    hi: torch.Tensor,
    lam_penalty: float = 5.0,
    box_penalty: float = 1.0,
    theta_sq: torch.Tensor | None = None,
    pairs: str = "max",
    norm: str = "theta",
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
    method: str = "explicit",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`attack_loss` for a C-output network: y (m,) holds the candidates' class indices and lambda =
    lam_scale * l multiplies the direction e_y - e_j* (`pairs="max"`, l (..., m)); with `pairs="all"`, l is
    (..., m, C), one multiplier per (candidate, other class). The residual is always explicit (`method` is
    accepted for the attack loop's sake); `norm`, `layers` as in `kkt_fit`."""
    fit = multiclass_kkt_fit(w, x, y, l * lam_scale, alpha, pairs, theta_sq, norm, layer_sq, layers)
    pen = multiclass_penalties(x, l, y, lam_min, lo, hi, lam_penalty, box_penalty, pairs)
    return fit + pen, fit


def multiclass_loss_function(
    mixed: bool = False, compiled: bool = False
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`multiclass_attack_loss` as the attack loop calls it (see `loss_function`: bf16 autocast, compile)."""
    return wrapped_loss(multiclass_attack_loss, mixed, compiled)


def multiclass_flops_per_step(d: int, widths: list[int], n_classes: int, m: int, population: int = 1) -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward + backward step of `multiclass_kkt_fit` (GEMMs only).

    Per layer of size out x in (one GEMM = 2 m in out): the forward product h = a W^T, forming
    G = g^T a, and, for every layer but the first, the signal's product back through W (U W_L for the
    last). Backward into x and l (the weights are constants): one GEMM for each product with W, two for
    G = g^T a (both factors depend on x); none for the output Phi = a W_L^T, which enters only through
    the (undifferentiated) choice of the other class.
    """
    sizes = [d, *widths, n_classes]
    total = 0
    last = len(sizes) - 2
    for i in range(len(sizes) - 1):
        gemm = 2 * m * sizes[i] * sizes[i + 1]
        forward = 3 if i > 0 else 2  # h = a W^T, G = g^T a, and the signal g W (none below the first layer)
        backward = 2 + (1 if i == last else forward - 1)
        total += (forward + backward) * gemm
    return population * total
