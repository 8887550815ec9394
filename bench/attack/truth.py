"""The truth's own KKT fit: how well the true training set explains the weights.

The attack searches candidates x and multipliers lambda >= 0 with theta ~ sum_i lambda_i J(x_i). With x
fixed at the training set the residual is linear in lambda, so the fit is a quadratic in it, and its best
value over lambda >= 0 is a small bounded least-squares problem, solved here exactly in float64. It is the
reference every reconstruction is read against: an attack whose fit is *below* the truth's has found
candidates that explain the weights better than the data do, so the objective's minimum is not the data
(its candidates then mix training samples with shapes that fit better); a truth that leaves much of a layer
unexplained says the trained network is outside the regime where the KKT theory holds.

Rows. A row r is one gradient the sum may use, with its own multiplier lambda_r >= 0:
- binary network (one output): a training sample i, J_r = y_i grad_theta Phi(x_i);
- C outputs, `pairs="max"` (Buzaglo et al.): a sample i, J_r = grad_theta (Phi_{y_i} - Phi_{j*})(x_i) with
  j* = argmax_{j != y_i} Phi_j(x_i) under the trained network;
- C outputs, `pairs="all"`: a (sample i, class j != y_i) pair, J_r = grad_theta (Phi_{y_i} - Phi_j)(x_i).
Every row is grad_theta (u_r . Phi(x_{i(r)})) for an output direction u_r (binary: u_r = y_i).

Per layer l (the first layer's bias counted with W_1, as everywhere in bench), with the exact ReLU derivative,

    ||theta_l - sum_r lambda_r J_l(r)||^2 = ||theta_l||^2 - 2 lambda . b_l + lambda^T K_l lambda,

K_l (r x r) = <J_l(r), J_l(r')>, b_l (r,) = <theta_l, J_l(r)>. For an MLP J_l(r) = g_l(r) a_{l-1}(r)^T (the
back-propagated signal times the layer's input), so K_l = (g_l g_l^T) * (a_{l-1} a_{l-1}^T [+ 1 with the
bias]) and b_l = g_l . h_l: the products of the attack's Gram route (`bench.attack.kkt.layer_residuals`),
never forming a per-sample gradient. Any other network (`bench.attack.engine.ModuleNet`: a CNN) fills
`GramTerms` from per-sample gradients by autograd (`module_gram_terms`) and shares `solve`.

The fit uses the attack's norm (`attack.fit_norm`, `attack.fit_layers`; `bench.attack.kkt.fit_from_terms`):
"layer" is the mean over the chosen layers of residual_l / ||theta_l||^2, "theta" their summed residual over
their summed ||theta_l||^2. Both are a weighted sum of the layer quadratics, so one bounded least-squares
problem gives the exact optimum: min lambda^T Q lambda - 2 q . lambda over lambda >= 0, Q = sum_l w_l K_l,
q = sum_l w_l b_l, written as NNLS through Q's eigendecomposition and solved by scipy's `nnls`.
The fit is invariant to a rescaling of theta (the multipliers absorb it), so margin normalisation does not
change it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from bench.attack.engine import ModuleNet
from bench.attack.kkt import Weights
from bench.attack.network import Network


@dataclass(frozen=True)
class GramTerms:
    """The quadratic of the residual in the multipliers, per layer (float64).

    K (L, r, r): <J_l(r), J_l(r')>; b (L, r): <theta_l, J_l(r)>; own (L,): ||theta_l||^2; sample (r,): the
    training sample of each row; other (r,): the other class of a multiclass row (-1 for binary rows)."""

    K: torch.Tensor
    b: torch.Tensor
    own: torch.Tensor
    sample: np.ndarray
    other: np.ndarray


@dataclass(frozen=True)
class TruthFit:
    """The truth's best fit. fit: in the attack's norm; layers (L,): residual_l / ||theta_l||^2 of every
    layer at the same multipliers; lam (r,): the optimal multipliers (one per row, see `GramTerms`), in the
    scale of the weights they were computed on; support: rows with lambda > 0 (binary: samples on the
    margin); seconds: wall time of the computation."""

    fit: float
    layers: np.ndarray
    lam: np.ndarray
    support: int
    rows: int
    seconds: float = 0.0

    def metrics(self) -> dict[str, float]:
        """`truth/kkt_fit`, `truth/kkt_fit_layer<l>`, `truth/support` (and its fraction of the rows)."""
        out = {"truth/kkt_fit": self.fit, "truth/support": float(self.support)}
        out["truth/support_frac"] = self.support / max(1, self.rows)
        return out | {f"truth/kkt_fit_layer{i + 1}": float(v) for i, v in enumerate(self.layers)}


def output_directions(
    phi: torch.Tensor, y: np.ndarray, pairs: str = "max"
) -> tuple[torch.Tensor, np.ndarray]:
    """The rows' output directions u (r, C) and their samples (r,), from the trained outputs phi (n, C) and
    class indices y (n,) (see the module docstring); binary networks (C = 1, y in {-1, +1}): u = y."""
    n, C = phi.shape
    if C == 1:
        return torch.as_tensor(y, dtype=phi.dtype).view(n, 1), np.arange(n)
    yi = torch.as_tensor(np.asarray(y), dtype=torch.long)
    onehot = torch.nn.functional.one_hot(yi, C).to(phi.dtype)
    if pairs == "max":
        other = phi.masked_fill(onehot.bool(), float("-inf")).argmax(-1)
        return onehot - torch.nn.functional.one_hot(other, C).to(phi.dtype), np.arange(n)
    if pairs != "all":
        raise ValueError(f"pairs must be 'max' or 'all', not {pairs!r}")
    sample, other = np.nonzero(~onehot.bool().numpy())  # every (i, j != y_i), in order of i then j
    eye = torch.eye(C, dtype=phi.dtype)
    return onehot[sample] - eye[other], sample


def mlp_gram_terms(
    w: Weights,
    x: torch.Tensor,
    y: np.ndarray,
    pairs: str = "max",
    alpha: float | None = None,
    slopes1: torch.Tensor | None = None,
) -> GramTerms:
    """`GramTerms` of a ReLU MLP in closed form, in float64.

    w: the network (any scale); x (n, d): the centred training inputs; y (n,): +-1 (binary) or class
    indices (C outputs). alpha: None for the exact ReLU derivative 1[h > 0]; a slope for the attack's
    surrogate sigmoid(alpha h) (`bench.attack.kkt.forward_signals`: the fit the attack's objective sees
    at the training set). slopes1: (n, H_1) the first hidden layer's derivative at every sample, in place
    of the rule (`clarke_truth`). Memory: the acts (n, H) and signals (r, H) of every layer, and L Gram
    matrices (r x r): at n = 500, H = 1000, L = 3, ~30 MB.
    """
    w = w.to(torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64)
    acts, pre, h = _exact_forward(w, x)
    u, sample = output_directions(h, y, pairs)
    other = np.full(len(sample), -1) if h.shape[1] == 1 else _other_class(u)
    s = torch.as_tensor(sample)
    K, b, own = [], [], []
    # last layer: J_L(r) = u_r a_{L-1}(x_r)^T
    a_prev = acts[-1][s]
    K.append((u @ u.T) * (a_prev @ a_prev.T))
    b.append((u * h[s]).sum(-1))
    g = u
    for layer in range(w.depth - 2, -1, -1):  # hidden layers, top down: g_l = (g_{l+1} W_{l+1}) * 1[h_l > 0]
        h_l = pre[layer][s]
        slope = (h_l > 0).to(g.dtype) if alpha is None else torch.sigmoid(alpha * h_l)
        if layer == 0 and slopes1 is not None:
            slope = slopes1[s]
        g = (g @ w.mats[layer + 1]) * slope
        a_prev = acts[layer][s]
        k_prev = a_prev @ a_prev.T
        if layer == 0 and w.bias is not None:
            k_prev = k_prev + 1.0
        K.append((g @ g.T) * k_prev)
        b.append((g * pre[layer][s]).sum(-1))  # <W_l, g a^T> (+ <b_1, g>) = g . h_l
    own = w.layer_sq_norms().to(torch.float64)
    return GramTerms(torch.stack(K[::-1]), torch.stack(b[::-1]), own, sample, other)


def module_gram_terms(
    net: ModuleNet,
    x: torch.Tensor,
    y: np.ndarray,
    pairs: str = "max",
    chunk: int = 256,
    alpha: float | None = None,
) -> GramTerms:
    """`GramTerms` of any homogeneous network from its per-row gradients J_r = grad_theta (u_r . Phi(x_r))
    by autograd (torch.func: vmap over rows of grad), in float64; alpha: None for the exact ReLU
    derivative, else the attack's surrogate sigmoid(alpha h) (as `mlp_gram_terms`).

    net: the network (any scale); x (n, d): the centred training inputs; y (n,): +-1 or class indices.
    Memory: the r x p per-row gradients in float64 (p parameters; r rows: n, or n (C - 1) with
    `pairs="all"`), plus one chunk of `chunk` rows' activations while they are formed; time: about r
    backward passes (batched) and L products (r x p_l) (p_l x r).
    """
    net = net.to(torch.float64)
    x = torch.as_tensor(x, dtype=torch.float64)
    with torch.no_grad():
        phi = net.phi(x)
    u, sample = output_directions(phi, y, pairs)
    other = np.full(len(sample), -1) if phi.shape[1] == 1 else _other_class(u)
    params = net.params()

    def row(p: list[torch.Tensor], xi: torch.Tensor, ui: torch.Tensor) -> torch.Tensor:
        return (ui * net.phi(xi.unsqueeze(0), alpha, p)[0]).sum()

    per_row = torch.func.vmap(torch.func.grad(row), in_dims=(None, 0, 0))
    s = torch.as_tensor(sample)
    parts = [per_row(params, x[s[i : i + chunk]], u[i : i + chunk]) for i in range(0, len(s), chunk)]
    grads = [torch.cat(g) for g in zip(*parts, strict=True)]  # per parameter: (r, *shape)
    L = net.depth
    flat = [g.flatten(1) for g in grads[:L]]
    if net.bias is not None:  # the bias counts with the first layer
        flat[0] = torch.cat([flat[0], grads[L].flatten(1)], dim=1)
    theta = [p.flatten() for p in params[:L]]
    if net.bias is not None:
        theta[0] = torch.cat([theta[0], net.bias.flatten()])
    K = torch.stack([j @ j.T for j in flat])
    b = torch.stack([j @ t for j, t in zip(flat, theta, strict=True)])
    return GramTerms(K, b, net.layer_sq_norms().to(torch.float64), sample, other)


def _other_class(u: torch.Tensor) -> np.ndarray:
    """The class j of each multiclass row's direction e_y - e_j."""
    return u.argmin(-1).numpy()


def layer_weights(own: torch.Tensor, norm: str = "layer", layers: tuple[int, ...] = ()) -> torch.Tensor:
    """w_l (L,) with fit = sum_l w_l residual_l, as `bench.attack.kkt.fit_from_terms` combines them."""
    chosen = torch.zeros_like(own, dtype=torch.bool)
    chosen[[i - 1 for i in layers] if layers else slice(None)] = True
    if norm == "layer":
        return torch.where(chosen, 1.0 / (own * chosen.sum()), torch.zeros_like(own))
    if norm == "theta":
        return torch.where(chosen, 1.0 / own[chosen].sum(), torch.zeros_like(own))
    raise ValueError(f"norm must be 'layer' or 'theta', not {norm!r}")


def solve(terms: GramTerms, norm: str = "layer", layers: tuple[int, ...] = ()) -> TruthFit:
    """The best multipliers lambda >= 0 for `terms` and the fit they reach (exact: NNLS, float64)."""
    from scipy.optimize import nnls

    start = time.perf_counter()
    wl = layer_weights(terms.own, norm, layers)
    Q = torch.einsum("l,lij->ij", wl, terms.K).numpy()
    q = (wl @ terms.b).numpy()
    Q = 0.5 * (Q + Q.T)
    # Q = A^T A with A = diag(sqrt(e)) V^T over Q's non-negligible eigenvalues; q = A^T t (q lies in
    # Q's range: b_l = J_l theta_l), so ||A lam - t||^2 = lam^T Q lam - 2 q . lam + const
    e, V = np.linalg.eigh(Q)
    keep = e > max(e.max(), 0.0) * 1e-13
    A = np.sqrt(e[keep])[:, None] * V[:, keep].T
    t = (V[:, keep].T @ q) / np.sqrt(e[keep])
    lam = np.zeros(len(q)) if not keep.any() else nnls(A, t, maxiter=50 * len(q))[0]
    lam_t = torch.as_tensor(lam, dtype=torch.float64)
    quad = torch.einsum("i,lij,j->l", lam_t, terms.K, lam_t)
    residual = (terms.own - 2.0 * (terms.b @ lam_t) + quad).clamp(min=0.0)
    fit = float((wl * residual).sum())
    support = int((lam > 1e-12 * max(lam.max(initial=0.0), 1e-300)).sum())
    return TruthFit(
        fit=fit,
        layers=(residual / terms.own).numpy(),
        lam=lam,
        support=support,
        rows=len(lam),
        seconds=time.perf_counter() - start,
    )


def truth_fit(
    w: Network,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray,
    norm: str = "layer",
    layers: tuple[int, ...] = (),
    pairs: str = "max",
    alpha: float | None = None,
) -> TruthFit:
    """The truth's fit of a network: `solve` of `mlp_gram_terms` (closed-form `Weights`) or of
    `module_gram_terms` (a `ModuleNet`, by autograd); see the module docstring. `alpha`: None for the
    exact ReLU derivative, else the surrogate's slope. Seconds include forming the Gram matrices."""
    start = time.perf_counter()
    x_t = torch.as_tensor(np.asarray(x))
    if isinstance(w, Weights):
        with torch.no_grad():
            terms = mlp_gram_terms(w, x_t, y, pairs, alpha)
    else:
        terms = module_gram_terms(w, x_t, y, pairs, alpha=alpha)
    out = solve(terms, norm, layers)
    return TruthFit(out.fit, out.layers, out.lam, out.support, out.rows, time.perf_counter() - start)


def clarke_truth(
    w: Weights,
    x: np.ndarray | torch.Tensor,
    y: np.ndarray,
    norm: str = "layer",
    layers: tuple[int, ...] = (),
    pairs: str = "max",
    tol: float = 1e-3,
    rounds: int = 20,
    mask: torch.Tensor | None = None,
) -> tuple[TruthFit, int]:
    """The truth's fit with the first hidden layer's ReLU derivative free in [0, 1] where a sample sits on a
    unit's kink (its Clarke subdifferential), and the number of such (sample, unit) pairs.

    The KKT conditions a non-smooth homogeneous network converges to (Lyu & Li 2020) hold with Clarke
    subgradients: where a training sample lies on a hidden unit's hyperplane (h = 0), the unit's derivative
    may take any value in [0, 1]. Minimisers of weight decay put many samples there (and gradient descent
    oscillates around them, so |h| stays at the step size's scale), so the exact-derivative truth
    (`truth_fit`) can leave much of the first layer unexplained at a point that satisfies the conditions.
    A pair (i, k) counts as on the kink when |h_ik| <= tol ||w_k|| ||x~_i|| (x~ = [x, 1] with a bias): the
    sample lies within an angle ~tol of the hyperplane. Only the first hidden layer is relaxed (the problem
    then stays convex in (lambda, lambda * slope)); it is solved by alternating the exact NNLS in lambda
    with, per unit, the bounded least squares of its kink slopes (`_kink_slopes`), `rounds` times: an
    upper bound on the relaxed optimum that never exceeds `truth_fit`. `mask` (n, H_1): relax these pairs
    instead (a control: as many pairs chosen off the kinks explain far less, docs/identifiability.md)."""
    start = time.perf_counter()
    with torch.no_grad():
        kinks = Kinks(w, x, y, pairs, tol, mask)
        best = solve(kinks.terms(), norm, layers)
        if kinks.count == 0:
            return _timed(best, start), 0
        for _ in range(rounds):
            kinks.fit_slopes(torch.as_tensor(best.lam))
            new = solve(kinks.terms(), norm, layers)
            if new.fit >= best.fit * (1 - 1e-6):
                best = new if new.fit < best.fit else best
                break
            best = new
    return _timed(best, start), kinks.count


class Kinks:
    """The (sample, first-layer unit) pairs of a network on a kink (|h_ik| <= tol ||w_k|| ||x~_i||) and the
    first layer's derivative there, free in [0, 1] (elsewhere the exact 1[h > 0]); see `clarke_truth`."""

    def __init__(
        self,
        w: Weights,
        x: np.ndarray | torch.Tensor,
        y: np.ndarray,
        pairs: str,
        tol: float,
        mask: torch.Tensor | None = None,
    ):
        self.w, self.y, self.pairs = w.to(torch.float64), y, pairs
        w = self.w
        self.x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
        ones = torch.ones(len(self.x), 1, dtype=self.x.dtype)
        self.xa = torch.cat([self.x, ones], 1) if w.bias is not None else self.x  # x~
        self.h1 = self.x @ w.mats[0].T + (w.bias if w.bias is not None else 0.0)  # (n, H_1)
        self.w1 = torch.cat([w.mats[0], w.bias[:, None]], 1) if w.bias is not None else w.mats[0]
        scale = self.w1.norm(dim=1)[None, :] * self.xa.norm(dim=1)[:, None]
        self.kink = (self.h1.abs() <= tol * scale) if w.depth >= 2 else torch.zeros_like(self.h1, dtype=bool)
        if mask is not None:  # pairs chosen by the caller (a control: as many pairs off the kinks)
            self.kink = mask.to(torch.bool)
        self.count = int(self.kink.sum())
        self.slopes = (self.h1 > 0).to(torch.float64)
        self.signal, self.sample = _upstream(w, self.x, y, pairs)  # (r, H_1), rows' samples

    def terms(self) -> GramTerms:
        """The truth's Gram terms with the current first-layer slopes."""
        return mlp_gram_terms(self.w, self.x, self.y, self.pairs, None, self.slopes)

    def fit_slopes(self, lam: torch.Tensor) -> None:
        """The kink slopes that best fit the first layer at the rows' multipliers `lam` (r,)."""
        # per sample: the sum over its rows of lambda_r times the upstream signal (n, H_1)
        coef = torch.zeros_like(self.h1).index_add_(
            0, torch.as_tensor(self.sample), lam[:, None] * self.signal
        )
        fixed = (coef * self.slopes * ~self.kink).T @ self.xa  # (H_1, d~): the non-kink part of G_1
        self.slopes = _kink_slopes(self.w1 - fixed, coef, self.xa, self.kink, self.slopes)


def clarke_stationarity(
    w: Weights, x: np.ndarray | torch.Tensor, y: np.ndarray, weight_decay: float, tol: float = 1e-3
) -> float:
    """||theta - sum_r lam_r J(r)|| / ||theta|| at weight decay's own multipliers, with the first layer's
    derivative free in [0, 1] on kinks (`Kinks`): the stationarity of mean loss + (wd/2)||theta||^2 in the
    Clarke sense. Binary: rows = samples, lam_i = sigmoid(-y_i Phi_i) / (n wd); C classes (cross-entropy):
    rows = (i, j != y_i), lam_ij = softmax(Phi(x_i))_j / (n wd). 0 at a stationary point, where the gradient
    itself need not vanish (samples on a kink: `bench.train` reports both)."""
    with torch.no_grad():
        kinks = Kinks(w, x, y, "all", tol)
        wt = kinks.w
        h = kinks.x @ wt.mats[0].T + (wt.bias if wt.bias is not None else 0.0)
        for mat in wt.mats[1:]:
            h = torch.relu(h) @ mat.T
        n = len(kinks.x)
        if h.shape[1] == 1:
            lam = torch.sigmoid(-torch.as_tensor(y, dtype=h.dtype) * h[:, 0]) / (n * weight_decay)
        else:
            prob = torch.softmax(h, -1)
            lam = prob[torch.as_tensor(kinks.sample), torch.as_tensor(_rows_other(h, y))] / (n * weight_decay)
        if kinks.count:
            kinks.fit_slopes(lam)
        terms = kinks.terms()
        quad = torch.einsum("i,lij,j->l", lam, terms.K, lam)
        residual = (terms.own - 2.0 * (terms.b @ lam) + quad).clamp(min=0.0)
    return float((residual.sum() / terms.own.sum()) ** 0.5)


def _rows_other(phi: torch.Tensor, y: np.ndarray) -> np.ndarray:
    """The other class j of every (i, j != y_i) row, in `output_directions`'s order."""
    onehot = torch.nn.functional.one_hot(torch.as_tensor(np.asarray(y), dtype=torch.long), phi.shape[1])
    return np.nonzero(~onehot.bool().numpy())[1]


def _kink_slopes(
    target: torch.Tensor,
    coef: torch.Tensor,
    xa: torch.Tensor,
    kink: torch.Tensor,
    slopes: torch.Tensor,
    sweeps: int = 50,
) -> torch.Tensor:
    """Per unit k, the slopes s_ik in [0, 1] of its kink samples i minimising
    ||target_k - sum_i s_ik coef_ik x~_i||^2: a small box-constrained least squares per unit, solved for all
    units at once by projected coordinate descent on its Gram matrix (padded to the most kinks of a unit).
    target (H, d~); coef, kink, slopes (n, H); xa (n, d~). Returns the slopes with the kink entries updated."""
    units = torch.nonzero(kink.any(0)).flatten()
    counts = kink[:, units].sum(0)
    width = int(counts.max())
    # order[u, j]: the j-th kink sample of unit u (padded with other samples, masked out by `valid`)
    order = torch.argsort((~kink[:, units]).to(torch.int8), dim=0, stable=True)[:width].T  # (U, width)
    valid = torch.arange(width)[None, :] < counts[:, None]
    cols = coef[order, units[:, None]][..., None] * xa[order] * valid[..., None]  # (U, width, d~)
    gram = cols @ cols.transpose(1, 2)  # (U, width, width)
    rhs = (cols @ target[units][..., None]).squeeze(-1)  # (U, width)
    s = slopes[order, units[:, None]] * valid
    diag = torch.diagonal(gram, dim1=1, dim2=2)
    for _ in range(sweeps):
        for j in range(width):
            rest = (gram[:, j, :] * s).sum(-1) - diag[:, j] * s[:, j]
            step = torch.where(diag[:, j] > 0, (rhs[:, j] - rest) / diag[:, j].clamp(min=1e-300), s[:, j])
            s[:, j] = torch.where(valid[:, j], step.clamp(0.0, 1.0), s[:, j])
    out = slopes.clone()
    out[order[valid], units[:, None].expand_as(order)[valid]] = s[valid]
    return out


def _exact_forward(
    w: Weights, x: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]:
    """An MLP's forward with the exact ReLU: acts [x, a_1, ..., a_{L-1}], pre-activations [h_1, ...,
    h_{L-1}] (bias included), and the outputs Phi (n, C)."""
    acts, pre = [x], []
    h = x @ w.mats[0].T + (w.bias if w.bias is not None else 0.0)
    for mat in w.mats[1:]:
        pre.append(h)
        acts.append(torch.relu(h))
        h = acts[-1] @ mat.T
    return acts, pre, h


def _timed(fit: TruthFit, start: float) -> TruthFit:
    return TruthFit(fit.fit, fit.layers, fit.lam, fit.support, fit.rows, time.perf_counter() - start)


def _upstream(w: Weights, x: torch.Tensor, y: np.ndarray, pairs: str) -> tuple[torch.Tensor, np.ndarray]:
    """Each row's back-propagated signal at the first hidden layer's output, before that layer's own ReLU
    derivative: (r, H_1), and the rows' samples (exact derivatives above the first layer)."""
    _, pre, h = _exact_forward(w, x)
    u, sample = output_directions(h, y, pairs)
    s = torch.as_tensor(sample)
    g = u
    for layer in range(w.depth - 2, 0, -1):
        g = (g @ w.mats[layer + 1]) * (pre[layer][s] > 0).to(g.dtype)
    return g @ w.mats[1], sample


def residual_at(
    w: Weights, x: np.ndarray | torch.Tensor, y: np.ndarray, lam: np.ndarray, pairs: str = "max"
) -> np.ndarray:
    """||theta_l - sum_r lam_r J_l(r)||^2 per layer (L,), with the gradient sums formed explicitly by
    autograd (exact ReLU; float64): the reference `mlp_gram_terms` is tested against."""
    w = w.to(torch.float64)
    x = torch.as_tensor(np.asarray(x), dtype=torch.float64)
    params = [m.clone().requires_grad_() for m in w.mats]
    bias = None if w.bias is None else w.bias.clone().requires_grad_()
    with torch.enable_grad():
        h = x @ params[0].T + (bias if bias is not None else 0.0)
        for mat in params[1:]:
            h = torch.relu(h) @ mat.T
        u, sample = output_directions(h.detach(), y, pairs)
        lam_t = torch.as_tensor(lam, dtype=torch.float64)
        weighted = torch.zeros_like(h)
        weighted.index_add_(0, torch.as_tensor(sample), lam_t[:, None] * u)
        grads = torch.autograd.grad((weighted * h).sum(), params + ([bias] if bias is not None else []))
    res = [((p.detach() - g) ** 2).sum() for p, g in zip(params, grads, strict=False)]
    if bias is not None:
        res[0] = res[0] + ((bias.detach() - grads[-1]) ** 2).sum()
    return torch.stack(res).numpy()
