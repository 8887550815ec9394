"""The KKT residual of Haim et al. (2022) in closed form, for a population of candidate sets at once.

A homogeneous ReLU MLP trained to near-zero logistic loss converges in direction to a KKT point of
min ||theta||^2 s.t. y_i Phi(theta; x_i) >= 1, where

    theta = sum_i lambda_i y_i grad_theta Phi(theta; x_i),   lambda_i >= 0.

The attack searches candidates x_i and multipliers lambda_i that satisfy this. This module computes,
without autograd's double backward and without forming per-sample gradients,

    fit(x, lambda) = sum_l ||theta_l - G_l||^2 / ||theta||^2,   G_l = sum_i c_i grad_{theta_l} Phi(x_i),

with c_i = lambda_i y_i. For a layer h_l = W_l a_{l-1} the per-sample gradient is the outer product
g_l(x_i) a_{l-1}(x_i)^T, where g_l = dPhi/dh_l is the back-propagated signal, so G_l = (c * g_l)^T a_{l-1}
is one matrix product. Following Haim et al., the ReLU's derivative is replaced by sigmoid(alpha * h)
wherever it is differentiated: inside g_l and in the backward from the loss into x (their modified ReLU
acts in both passes of the double backward); the forward values stay exact ReLU, and alpha -> infinity
recovers the true gradient. The square expands through m x m Gram matrices, never forming the H x H matrix G_l:

    ||W_l - G_l||^2 = ||W_l||^2 - 2 sum_i c_i <g_l(x_i), W_l a_{l-1}(x_i)> + c^T (S_l * K_{l-1}) c

with S_l = g_l g_l^T, K_{l-1} = a_{l-1} a_{l-1}^T (elementwise product), and W_l a_{l-1} = h_l - b_l
already known from the forward pass. The Gram route costs ~2 m^2 (H_l + H_{l-1}) FLOPs per layer against
2 m H_l H_{l-1} for forming G_l, so `method="auto"` picks per layer whichever is cheaper.

Every tensor may carry leading population dimensions: x (..., m, d), c (..., m), alpha broadcastable to
(..., 1, 1). Shapes: W_l (H_l, H_{l-1}); the last layer W_L is (1, H_{L-1}); optional first-layer bias b (H_1,).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.attack.network import Homogeneous, Network


@dataclass(frozen=True)
class Weights(Homogeneous):
    """The attacked MLP's parameters: W_1..W_L and an optional first-layer bias (all detached); the
    closed form's `bench.attack.network.Network`."""

    mats: tuple[torch.Tensor, ...]
    bias: torch.Tensor | None = None

    @property
    def depth(self) -> int:
        return len(self.mats)

    @property
    def n_out(self) -> int:
        return int(self.mats[-1].shape[0])

    @property
    def d(self) -> int:
        return int(self.mats[0].shape[1])

    def sq_norm(self) -> torch.Tensor:
        """||theta||^2 over all parameters (scalar), computed once (the weights never change)."""
        return self._sq_norm

    @functools.cached_property
    def _sq_norm(self) -> torch.Tensor:
        total = sum((w * w).sum() for w in self.mats)
        return total + ((self.bias * self.bias).sum() if self.bias is not None else 0.0)

    def layer_sq_norms(self) -> torch.Tensor:
        """||theta_l||^2 of every layer (L,), the first layer's bias counted with W_1."""
        return self._layer_sq_norms

    @functools.cached_property
    def _layer_sq_norms(self) -> torch.Tensor:
        norms = [(w * w).sum() for w in self.mats]
        if self.bias is not None:
            norms[0] = norms[0] + (self.bias * self.bias).sum()
        return torch.stack(norms)

    def scaled(self, factor: float) -> Weights:
        """Every layer (and the bias) times `factor`: Phi scales by factor^L."""
        bias = None if self.bias is None else self.bias * factor
        return Weights(tuple(w * factor for w in self.mats), bias)

    def to(self, dtype: torch.dtype, device: torch.device | str | None = None) -> Weights:
        """The same weights in `dtype` (and on `device`, if given)."""
        bias = None if self.bias is None else self.bias.to(device=device, dtype=dtype)
        return Weights(tuple(w.to(device=device, dtype=dtype) for w in self.mats), bias)

    def split(self) -> tuple[None, tuple]:
        """(structure, tensors) that `join` rebuilds the weights from (see `wrapped_loss`)."""
        return None, (self.mats, self.bias)

    @classmethod
    def join(cls, structure: None, tensors: tuple) -> Weights:
        return cls(tuple(tensors[0]), tensors[1])


def forward_signals(
    w: Weights, x: torch.Tensor, alpha: torch.Tensor | float, exact_relu: bool = False
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Forward pass with the modified backward signals.

    Returns phi (..., m); acts [a_0 = x, a_1, ..., a_{L-1}] (..., m, H_l); pre [h_1, ..., h_{L-1}]
    (pre-activations of the hidden layers, bias included); signals [g_1, ..., g_{L-1}] with
    g_l = dPhi/dh_l computed with sigmoid(alpha h) in place of the ReLU derivative. The activations'
    values are the exact ReLU's either way; their own derivative is the surrogate slope (Haim et al.'s
    modified ReLU) unless `exact_relu` (then torch.relu's, for second derivatives: bench.attack.splitting).
    """
    acts, pre, slopes = [x], [], []
    h = x @ w.mats[0].T
    if w.bias is not None:
        h = h + w.bias
    for mat in w.mats[1:]:
        pre.append(h)
        slopes.append(torch.sigmoid(alpha * h))
        acts.append(torch.relu(h) if exact_relu else _SurrogateReLU.apply(h, slopes[-1]))
        h = acts[-1] @ mat.T
    phi = h.squeeze(-1)
    g = w.mats[-1].squeeze(0) * slopes[-1]
    signals = [g]
    for mat, slope in zip(reversed(w.mats[1:-1]), reversed(slopes[:-1]), strict=True):
        g = (g @ mat) * slope
        signals.append(g)
    signals.reverse()
    return phi, acts, pre, signals


class _SurrogateReLU(torch.autograd.Function):
    """relu(h) whose derivative is the given slope sigmoid(alpha h), as everywhere in the reference code.

    The slope is an input computed from h outside, so a second derivative (the autograd engine's double
    backward, `bench.attack.engine`) runs through it. Written in torch.func's form (`setup_context`, a
    generated vmap rule) so that it also works under `torch.func.grad` and `vmap`."""

    generate_vmap_rule = True

    @staticmethod
    def forward(h: torch.Tensor, slope: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return h.clamp(min=0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:  # type: ignore[override]
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (slope,) = ctx.saved_tensors
        return grad * slope, None


class _Gram(torch.autograd.Function):
    """a a^T (..., m, m) for a (..., m, k), whose backward is one product, (grad + grad^T) a, where
    autograd's two-operand product takes two (and ~2.8x the time at m = 200, k = 1000 on one CPU thread)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(a)
        return a @ a.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (a,) = ctx.saved_tensors
        # under bf16 autocast grad is bf16 and a float32: the product in grad's dtype, as autocast's own
        return ((grad + grad.transpose(-1, -2)) @ a.to(grad.dtype)).to(a.dtype)


def gram_route(out_dim: int, in_dim: int, m: int, method: str = "auto") -> bool:
    """Whether a hidden layer's residual ||W_l - G_l||^2 (W_l out_dim x in_dim, m candidates) is expanded
    through m x m Gram matrices under `method`: "gram" always, "explicit" never, "auto" where that needs
    fewer FLOPs, m (H_l + H_{l-1}) < H_l H_{l-1} (see `layer_residuals`)."""
    return method == "gram" or (method == "auto" and m * (out_dim + in_dim) < out_dim * in_dim)


def step_method(method: str, mixed: bool) -> str:
    """`attack.residual` as the steps apply it: "auto" under bfloat16 products (`mixed`) is "explicit"
    (the Gram expansion is not a faithful residual in bf16: docs/attack.md); otherwise unchanged."""
    return "explicit" if mixed and method == "auto" else method


def residual_routes(shapes: list[tuple[int, int]], m: int, method: str = "auto") -> list[str]:
    """The route each layer's residual takes ("gram" or "explicit"), for layers of `shapes` [(H_l,
    H_{l-1}), ...] (the last one the output row, always a sum of squares) at m candidates under the
    `method` the steps apply (`step_method`)."""
    routes = ["gram" if gram_route(o, i, m, method) else "explicit" for o, i in shapes[:-1]]
    return [*routes, "explicit"]


def gradient_sums(
    w: Weights, x: torch.Tensor, c: torch.Tensor, alpha: torch.Tensor | float
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """G_l = sum_i c_i grad_{W_l} Phi(x_i) for every layer, and the first-layer bias sum (or None).

    Explicit (..., H_l, H_{l-1}) matrices; used by tests and for inspection, and by `kkt_fit` where the
    explicit route is cheaper.
    """
    _, acts, _, signals = forward_signals(w, x, alpha)
    grads = [(c.unsqueeze(-1) * g).transpose(-1, -2) @ a for g, a in zip(signals, acts[:-1], strict=True)]
    grads.append((c.unsqueeze(-1) * acts[-1]).sum(-2, keepdim=True))
    bias = (c.unsqueeze(-1) * signals[0]).sum(-2) if w.bias is not None else None
    return grads, bias


def layer_residuals(
    w: Weights,
    x: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor | float,
    method: str = "auto",
    layer_sq: torch.Tensor | None = None,
) -> torch.Tensor:
    """||theta_l - G_l||^2 of every layer l = 1..L (the first layer's bias counted with W_1): (..., L).

    `method`: "explicit" forms G_l and sums the squares of theta_l - G_l: a sum of squares, >= 0 in any
    dtype, with rounding errors relative to the residual itself; "gram" expands the square through m x m
    Gram matrices (||W_l||^2 - 2 <W_l, G_l> + ||G_l||^2, see the module docstring): cheaper when
    m (H_l + H_{l-1}) < H_l H_{l-1}, but the three terms are of the size of ||W_l||^2 and cancel, so its
    rounding error is relative to ||theta||^2, and where candidates nearly coincide it is amplified
    (in bfloat16 the optimiser finds and follows it: the logged fit turned negative after ~8,000 steps at the
    paper's scale); "auto": the cheaper of the two per layer. The attack checks whichever it uses against
    the float64 explicit form (`bench.attack.reconstruct`, `attack.fit_check_tol`). `layer_sq`: the (L,)
    ||theta_l||^2 (`Weights.layer_sq_norms`, the same sums), which the Gram route adds; computed here when
    None (at the quick blob scale, 784-1000-1 and m = 40, a fresh ||W_1||^2 was a quarter of the step).
    """
    phi, acts, pre, signals = forward_signals(w, x, alpha)
    m = x.shape[-2]
    terms = []
    for layer, (g, a_prev, h) in enumerate(zip(signals, acts[:-1], pre, strict=True)):
        mat = w.mats[layer]
        has_bias = layer == 0 and w.bias is not None
        if gram_route(*mat.shape, m, method):
            # <W_l, G_l> (+ <b, sum c g_1>) = sum_i c_i <g_l(x_i), h_l(x_i)>; h includes the bias.
            cross = (c * (g * h).sum(-1)).sum(-1)
            k_prev = _Gram.apply(a_prev)
            if has_bias:
                k_prev = k_prev + 1.0
            gram = _Gram.apply(g) * k_prev  # (S_l * K_{l-1}), m x m
            quad = (c * (gram @ c.unsqueeze(-1)).squeeze(-1)).sum(-1)
            if layer_sq is not None:
                own = layer_sq[layer]
            else:
                own = (mat * mat).sum() + ((w.bias * w.bias).sum() if has_bias else 0.0)
            terms.append(own - 2.0 * cross + quad)
        else:
            cg = c.unsqueeze(-1) * g
            diff = mat - cg.transpose(-1, -2) @ a_prev
            term = (diff * diff).sum((-1, -2))
            if has_bias:
                diff_b = w.bias - cg.sum(-2)
                term = term + (diff_b * diff_b).sum(-1)
            terms.append(term)
    # Last layer: grad_{w_L} Phi(x_i) = a_{L-1}(x_i), so G_L = sum_i c_i a_{L-1}(x_i) (one row).
    s_last = (c.unsqueeze(-2) @ acts[-1]).squeeze(-2)
    diff = w.mats[-1].squeeze(0) - s_last
    terms.append((diff * diff).sum(-1))
    return torch.stack(torch.broadcast_tensors(*terms), dim=-1)


def kkt_fit(
    w: Weights,
    x: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor | float,
    method: str = "auto",
    theta_sq: torch.Tensor | None = None,
    norm: str = "theta",
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
) -> torch.Tensor:
    """The KKT residual of each candidate set: shape (...,).

    norm "theta": sum_l ||theta_l - G_l||^2 / ||theta||^2 (Haim et al.'s residual, divided by ||theta||^2);
    "layer": the mean over layers of ||theta_l - G_l||^2 / ||theta_l||^2, every layer weighted alike
    (a layer that keeps most of its random initialisation, such as the hidden layer of a trained
    784-1000-1000-1 network, holds ~95% of ||theta||^2 and no gradient sum explains it: under "theta" it
    drowns the layers that training wrote). `method`: see `layer_residuals`. `theta_sq`: ||theta||^2 if
    already known; `layer_sq`: the (L,) ||theta_l||^2 if already known. `layers`: the layers (1-based)
    the fit is made of (empty: all; under "theta" the sum is divided by their share of ||theta||^2).
    """
    terms = layer_residuals(w, x, c, alpha, method, layer_sq)
    return fit_from_terms(terms, w, norm, theta_sq, layer_sq, layers)


def fit_from_terms(
    terms: torch.Tensor,
    w: Weights,
    norm: str = "theta",
    theta_sq: torch.Tensor | None = None,
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
) -> torch.Tensor:
    """The fit (...,) from the per-layer residuals (..., L) of `layer_residuals` (see `kkt_fit`)."""
    layer_sq = w.layer_sq_norms() if layer_sq is None else layer_sq
    if layers:
        idx = [i - 1 for i in layers]
        terms, layer_sq = terms[..., idx], layer_sq[idx]
    if norm == "layer":
        return (terms / layer_sq).mean(-1)
    if layers:
        return terms.sum(-1) / layer_sq.sum()
    return terms.sum(-1) / (w.sq_norm() if theta_sq is None else theta_sq)


def attack_loss(
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
    method: str = "auto",
    theta_sq: torch.Tensor | None = None,
    norm: str = "theta",
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reconstruction loss per candidate set (...,) and its KKT-fit part (...,).

    lambda = lam_scale * l (see `lambda_scale`); loss = fit + lam_penalty * sum relu(lam_min - l)^2
    + box_penalty * sum (relu(x - hi)^2 + relu(lo - x)^2), sums over candidates and features.
    lo, hi: (d,) bounds of the centred data (the data range minus the training mean). Population
    hyperparameters broadcast: lam_min (..., 1), alpha (..., 1, 1). `method`, `norm`, `theta_sq`,
    `layer_sq`, `layers`: see `kkt_fit`.
    """
    c = l * lam_scale * y
    fit = kkt_fit(w, x, c, alpha, method, theta_sq, norm, layer_sq, layers)
    return fit + penalties(x, l, lam_min, lo, hi, lam_penalty, box_penalty), fit


def penalties(
    x: torch.Tensor,
    l: torch.Tensor,
    lam_min: torch.Tensor | float,
    lo: torch.Tensor,
    hi: torch.Tensor,
    lam_penalty: float = 5.0,
    box_penalty: float = 1.0,
) -> torch.Tensor:
    """The constraint terms of the loss (...,): lam_penalty * sum relu(lam_min - l)^2 (dual feasibility)
    + box_penalty * sum (relu(x - hi)^2 + relu(lo - x)^2) (the data range)."""
    lam_term = torch.relu(lam_min - l).pow(2).sum(-1)
    return lam_penalty * lam_term + box_penalty * box_term(x, lo, hi)


def box_term(x: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """sum (relu(x - hi)^2 + relu(lo - x)^2) over candidates and features (...,): the data range."""
    outside = x - torch.clamp(x, lo, hi)  # relu(x - hi) - relu(lo - x): one of the two is zero
    return (outside * outside).sum((-1, -2))


def loss_function(
    mixed: bool = False, compiled: bool = False
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`attack_loss` as the attack loop calls it: f(w, x, l, y, **kwargs) -> (loss, fit).

    mixed: matrix products in bfloat16 (autocast on x's device type; x, lambda and the sums stay float32),
    and the residual in its explicit form (a sum of squares; see `layer_residuals`) unless `method` names
    "gram": the Gram expansion in bfloat16 is not a faithful residual over a long attack (`step_method`).
    Unmixed, `method` "auto" (the default) takes the cheaper route per layer (`residual_routes`).
    compiled: through `torch.compile` (inductor), which fuses the elementwise work between the products:
    on this project's 2-core CPU it halves a bf16 step at the paper's scale (benchmarks/scaling.sh).
    It costs ~10-30 s of compilation per process and shape, so it pays only for long attacks; one compiled
    function serves every run of the process with the same shapes (the weights are inputs, not constants).
    """
    return wrapped_loss(attack_loss, mixed, compiled)


@functools.cache
def wrapped_loss(
    loss: Callable[..., tuple[torch.Tensor, torch.Tensor]], mixed: bool, compiled: bool
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`loss(w, x, l, y, **kwargs)` (`attack_loss`, the multiclass one, or the autograd engine's) with
    ||theta||^2 and the layers' norms supplied once, under bf16 autocast (`mixed`) and through torch.compile
    (`compiled`); one wrapped function per (loss, mixed, compiled) and process (see `loss_function`). The
    network goes in as its tensors (graph inputs) and its structure (`split`; constants to torch.compile),
    so one compiled function serves every network of the same structure and shapes."""

    def call(w: Network, x: torch.Tensor, l: torch.Tensor, y: torch.Tensor, **kwargs):
        kwargs.setdefault("theta_sq", w.sq_norm())  # cached on w; computed in the graph it would be per step
        kwargs.setdefault("layer_sq", w.layer_sq_norms())
        kwargs["method"] = step_method(kwargs.get("method", "auto"), mixed)
        structure, tensors = w.split()
        return inner(type(w), structure, tensors, x, l, y, **kwargs)

    def inner(kind, structure, tensors, x, l, y, **kwargs):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=mixed):
            return loss(kind.join(structure, tensors), x, l, y, **kwargs)

    if compiled:
        inner = torch.compile(inner, dynamic=False)
    return call


def lambda_scale(w: Weights, m: int) -> torch.Tensor:
    """s = ||theta||^2 / (L m): the natural size of a multiplier.

    For a degree-L homogeneous network <theta, grad Phi(x)> = L Phi(x), so at a KKT point
    ||theta||^2 = L sum_i lambda_i y_i Phi(x_i); with margins near 1 the multipliers sum to ||theta||^2 / L.
    Writing lambda = s l keeps the learned l of order 1 whatever the weights' scale.
    """
    return w.sq_norm() / (w.depth * m)


def flops_per_step(d: int, widths: list[int], m: int, population: int = 1, method: str = "auto") -> int:
    """Multiply-add FLOPs (2 per MAC) of one forward + backward step of `kkt_fit` (dominant GEMMs only).

    `widths`: hidden widths [H_1, ..., H_{L-1}]. The backward into x and lambda costs two GEMMs per
    forward GEMM (the input gradient, and the transposed product), except the first layer's
    weight-gradient, which is not needed: x gets one GEMM there.
    """
    sizes = [d, *widths]
    fwd = bwd = 0
    for i in range(len(widths)):
        fwd += 2 * m * sizes[i] * sizes[i + 1]  # h_{i+1} = a_i W^T
        bwd += 2 * m * sizes[i] * sizes[i + 1]  # grad wrt a_i
    for i in range(1, len(widths)):
        fwd += 2 * m * sizes[i] * sizes[i + 1]  # g_i = g_{i+1} W_{i+1}
        bwd += 2 * m * sizes[i] * sizes[i + 1]
    for i in range(len(widths)):
        out_dim, in_dim = sizes[i + 1], sizes[i]
        if gram_route(out_dim, in_dim, m, method):  # two m x m Gram products, one product each back
            cost = 2 * m * m * (out_dim + in_dim)
            fwd, bwd = fwd + cost, bwd + cost
        else:  # G_l = (c g_l)^T a_{l-1}, two products back
            cost = 2 * m * out_dim * in_dim
            fwd, bwd = fwd + cost, bwd + 2 * cost
    return population * (fwd + bwd)


def weight_decay_multipliers(
    w: Weights, x: torch.Tensor, y: torch.Tensor, weight_decay: float
) -> torch.Tensor:
    """lambda_i = sigmoid(-y_i Phi(x_i)) / (n * weight_decay), shape (n,): the KKT multipliers of a
    network trained with weight decay (see `stationarity_residual`). x (n, d) centred inputs, y (n,) +-1."""
    with torch.no_grad():
        phi = _exact_phi(w.mats, w.bias, x)
    return torch.sigmoid(-y * phi) / (len(x) * weight_decay)


def stationarity_residual(w: Weights, x: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> float:
    """||theta - sum_i lam_i y_i grad_theta Phi(x_i)|| / ||theta|| with the exact ReLU gradient (autograd).

    x (n, d), y (n,) in {-1, +1}, lam (n,); theta = all of `w` (bias included). 0 exactly at a KKT point
    with these multipliers; `kkt_fit` is its square with the ReLU derivative smoothed (alpha -> inf).

    With weight decay. Training on J(theta) = (1/n) sum_i log(1 + exp(-y_i Phi(x_i))) + (wd/2)||theta||^2
    to a stationary point gives 0 = -(1/n) sum_i sigmoid(-y_i Phi_i) y_i grad Phi_i + wd theta, i.e.

        theta = sum_i lambda_i y_i grad_theta Phi(x_i),   lambda_i = sigmoid(-y_i Phi(x_i)) / (n wd) > 0,

    the same condition the attack fits (`weight_decay_multipliers` gives these lambda). It needs the decay
    on every parameter the sum runs over: the first-layer bias of `model.bias=first` is decayed too
    (bench.train), so its row holds as well; an undecayed bias would instead need sum_i lambda_i y_i
    dPhi/db = 0. Rescaling theta by a (the attack's margin normalisation) keeps the form, with lambda
    multiplied by a^(2-L). What differs from the unregularised case: there the direction converges to
    the max-margin KKT point, where lambda_i = 0 for every sample off the margin (complementary
    slackness), so only margin samples carry the gradient; with weight decay no multiplier is zero, each
    decays like exp(-margin_i) / (n wd), and every training sample contributes. The attack itself is
    unchanged (it fits theta = sum lambda y grad Phi with lambda >= lam_min * s, which the regularised
    point also satisfies); it is the multipliers it has to find that are no longer margin-limited.
    """
    params = [m.detach().clone().requires_grad_() for m in w.mats]
    bias = None if w.bias is None else w.bias.detach().clone().requires_grad_()
    leaves = params + ([bias] if bias is not None else [])
    with torch.enable_grad():
        phi = _exact_phi(params, bias, x)
        grads = torch.autograd.grad((lam * y * phi).sum(), leaves)
    num = sum(float(((p.detach() - g) ** 2).sum()) for p, g in zip(leaves, grads, strict=True))
    den = sum(float((p.detach() ** 2).sum()) for p in leaves)
    return (num / den) ** 0.5


def _exact_phi(
    mats: list[torch.Tensor] | tuple[torch.Tensor, ...], bias: torch.Tensor | None, x: torch.Tensor
) -> torch.Tensor:
    """Phi(x) (n,) with the exact ReLU (no surrogate slope)."""
    h = x @ mats[0].T + (bias if bias is not None else 0.0)
    for mat in mats[1:]:
        h = torch.relu(h) @ mat.T
    return h.squeeze(-1)
