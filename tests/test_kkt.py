"""The attack's math: closed-form gradient sums and KKT residual against autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.attack.kkt import Weights, flops_per_step, gradient_sums, kkt_fit, lambda_scale, layer_residuals
from bench.attack.reference import per_sample_gradient_sums, reference_fit


def _weights(depth: int, bias: bool, d: int = 12, width: int = 9, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)
    sizes = [d] + [width] * (depth - 1) + [1]
    mats = tuple(
        torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) / sizes[i] ** 0.5
        for i in range(depth)
    )
    return Weights(mats, torch.randn(width, generator=g, dtype=torch.float64) if bias else None)


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("bias", [False, True])
def test_gradient_sums_equal_autograd(depth: int, bias: bool) -> None:
    w = _weights(depth, bias)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(7, 12, generator=g, dtype=torch.float64)
    c = torch.randn(7, generator=g, dtype=torch.float64)
    grads, gbias = gradient_sums(w, x, c, alpha=3.0)
    ref = per_sample_gradient_sums(w, x, c, alpha=3.0)
    ours = [grads[0]] + ([gbias] if bias else []) + grads[1:]
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_large_alpha_recovers_the_true_gradient() -> None:
    """sigmoid(alpha h) -> step(h): the modified sums approach torch's own ReLU gradients."""
    w = _weights(3, True)
    x = torch.randn(5, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    c = torch.ones(5, dtype=torch.float64)
    params = [p.clone().requires_grad_() for p in (w.mats[0], w.bias, w.mats[1], w.mats[2])]
    h = torch.relu(x @ params[0].T + params[1])
    out = (torch.relu(h @ params[2].T) @ params[3].T).sum()
    true = torch.autograd.grad(out, params)
    grads, gbias = gradient_sums(w, x, c, alpha=1e6)
    for a, b in zip([grads[0], gbias, grads[1], grads[2]], true, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["gram", "explicit", "auto"])
@pytest.mark.parametrize("bias", [False, True])
def test_kkt_fit_and_its_gradients_equal_double_backward(method: str, bias: bool) -> None:
    w = _weights(3, bias)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 12, generator=g, dtype=torch.float64, requires_grad=True)
    c = torch.randn(6, generator=g, dtype=torch.float64, requires_grad=True)
    ours = kkt_fit(w, x, c, 5.0, method=method)
    ref = reference_fit(w, x, c, 5.0)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-12)
    g_ours = torch.autograd.grad(ours, (x, c))
    g_ref = torch.autograd.grad(ref, (x, c))
    for a, b in zip(g_ours, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_population_dimension_is_independent_settings() -> None:
    """x (P, m, d) with per-setting alpha gives each setting's own residual."""
    w = _weights(3, False)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 5, 12, generator=g, dtype=torch.float64)
    c = torch.randn(3, 5, generator=g, dtype=torch.float64)
    alpha = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    batched = kkt_fit(w, x, c, alpha.view(3, 1, 1))
    single = torch.stack([kkt_fit(w, x[p], c[p], float(alpha[p])) for p in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
def test_the_gram_route_takes_the_layer_norms_it_is_given_bit_for_bit(bias: bool) -> None:
    """The steps pass ||theta_l||^2 in (`Weights.layer_sq_norms`, computed once) instead of summing
    ||W_l||^2 at every step: the same float32 values, bit for bit, with and without it (the Gram route)."""
    w64 = _weights(3, bias, d=30, width=40)
    w = w64.to(torch.float32)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 4, 30, generator=g)
    c = torch.randn(2, 4, generator=g)
    fresh = layer_residuals(w, x, c, 20.0, "gram")
    given = layer_residuals(w, x, c, 20.0, "gram", layer_sq=w.layer_sq_norms())
    assert torch.equal(fresh, given)
    assert not torch.equal(fresh, layer_residuals(w, x, c, 20.0, "gram", layer_sq=2 * w.layer_sq_norms()))


def test_a_layer_that_satisfies_the_kkt_condition_adds_nothing_to_the_residual() -> None:
    """Set the last layer to its own gradient sum (w_L = sum_i c_i a_{L-1}(x_i), which does not depend on
    w_L): its term vanishes, and the residual is exactly the first layer's ||W_1 - G_1||^2 / ||theta||^2."""
    w = _weights(2, False)
    x = torch.randn(4, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    c = torch.tensor([0.5, -0.2, 0.3, 0.7], dtype=torch.float64)
    last = gradient_sums(w, x, c, alpha=7.0)[0][1]
    exact = Weights((w.mats[0], last))
    grads, _ = gradient_sums(exact, x, c, alpha=7.0)
    torch.testing.assert_close(grads[1], exact.mats[1])
    first_only = ((exact.mats[0] - grads[0]) ** 2).sum() / exact.sq_norm()
    for method in ("gram", "explicit"):
        torch.testing.assert_close(
            kkt_fit(exact, x, c, 7.0, method=method), first_only, rtol=1e-10, atol=1e-12
        )


def test_lambda_scale_and_flops() -> None:
    w = _weights(3, False)
    assert float(lambda_scale(w, 10)) == pytest.approx(float(w.sq_norm()) / 30)
    # one hidden layer, explicit route: forward 2*m*d*H (layer 1) + 2*m*H (last) ... counted by the formula
    f_gram = flops_per_step(784, [1000, 1000], 200, method="gram")
    f_expl = flops_per_step(784, [1000, 1000], 200, method="explicit")
    assert f_gram < f_expl
    assert 2e9 < f_gram < 5e9
    assert np.isclose(flops_per_step(784, [1000], 10, population=4), 4 * flops_per_step(784, [1000], 10))


def test_a_fit_of_chosen_layers_is_their_share_of_the_residual() -> None:
    """fit_layers=(1,): ||W_1 - G_1||^2 / ||W_1||^2 under either norm; all layers under "layer" is the mean
    of the per-layer fractions."""
    w = _weights(3, False)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(5, 12, generator=g, dtype=torch.float64)
    c = torch.randn(5, generator=g, dtype=torch.float64)
    grads, _ = gradient_sums(w, x, c, alpha=4.0)
    frac = [((m - gr) ** 2).sum() / (m**2).sum() for m, gr in zip(w.mats, grads, strict=True)]
    for norm in ("theta", "layer"):
        torch.testing.assert_close(kkt_fit(w, x, c, 4.0, norm=norm, layers=(1,)), frac[0], rtol=1e-12, atol=0)
    torch.testing.assert_close(kkt_fit(w, x, c, 4.0, norm="layer"), sum(frac) / 3, rtol=1e-12, atol=0)


def test_the_gram_route_differentiates_under_bfloat16_autocast() -> None:
    """The Gram products' one-product backward (kkt._Gram) under bf16 autocast: float32 gradients of the
    float32 leaves, equal to the float32 route's to bf16 precision."""
    w = _weights(3, True, d=40, width=30).to(torch.float32)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(8, 40, generator=g).requires_grad_()
    c = torch.randn(8, generator=g).requires_grad_()
    grads = {}
    for mixed in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=mixed):
            fit = kkt_fit(w, x, c, 5.0, method="gram")
        grads[mixed] = torch.autograd.grad(fit, (x, c))
    for a, b in zip(grads[True], grads[False], strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=0.05, atol=0.05 * float(b.abs().max()))
