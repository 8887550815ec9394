"""The autograd engine (bench.attack.engine): the closed form's residual on MLPs, an explicit
per-sample-gradient sum on CNNs, and the refusal of networks that are not positively homogeneous."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attack.engine import as_engine, autograd_attack_loss, closed_form, from_module, layer_terms
from bench.attack.kkt import Weights, attack_loss
from bench.attack.multiclass import multiclass_attack_loss
from bench.attack.reference import _ModifiedReLU
from bench.errors import BenchInputError

F64 = torch.float64


def _weights(depth: int, bias: bool, n_out: int = 1, d: int = 12, width: int = 9, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)
    sizes = [d] + [width] * (depth - 1) + [n_out]
    mats = tuple(
        torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=F64) / sizes[i] ** 0.5 for i in range(depth)
    )
    return Weights(mats, torch.randn(width, generator=g, dtype=F64) if bias else None)


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("n_out,pairs", [(1, "max"), (4, "max"), (4, "all")])
def test_the_engine_is_the_closed_form_on_mlps(depth: int, bias: bool, n_out: int, pairs: str) -> None:
    """Residual, fit, loss and their gradients into x and lambda, per setting of a population (P = 2,
    each its own alpha), to 1e-10 in float64, binary and multiclass (pairs max and all)."""
    w = _weights(depth, bias, n_out)
    net = as_engine(w, "autograd")
    assert closed_form(net) is not None and net.depth == depth and net.n_out == n_out
    torch.testing.assert_close(net.layer_sq_norms(), w.layer_sq_norms(), rtol=1e-14, atol=0)
    g = torch.Generator().manual_seed(1)
    P, m = 2, 8
    x = torch.randn(P, m, 12, generator=g, dtype=F64, requires_grad=True)
    shape = (P, m, n_out) if pairs == "all" else (P, m)
    l = torch.rand(shape, generator=g, dtype=F64).requires_grad_()
    y = (
        torch.where(torch.arange(m) < m // 2, -1.0, 1.0).to(F64)
        if n_out == 1
        else (torch.arange(m) % n_out).to(F64)
    )
    kw = {
        "lam_scale": 0.7,
        "lam_min": 0.3,
        "alpha": torch.tensor([3.0, 40.0], dtype=F64).view(P, 1, 1),
        "lo": -torch.ones(12, dtype=F64),
        "hi": torch.ones(12, dtype=F64),
        "norm": "layer",
    }
    closed = attack_loss if n_out == 1 else multiclass_attack_loss
    ref_loss, ref_fit = closed(
        w, x, l, y, **kw, **({"method": "explicit"} if n_out == 1 else {"pairs": pairs})
    )
    loss, fit = autograd_attack_loss(net, x, l, y, **kw, pairs=pairs)
    torch.testing.assert_close(fit, ref_fit, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=1e-12)
    for a, b in zip(
        torch.autograd.grad(loss.sum(), (x, l)), torch.autograd.grad(ref_loss.sum(), (x, l)), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    c = l.detach() * 0.7 * (y if n_out == 1 else 1.0)
    terms = [layer_terms(v, x.detach(), y, c, 5.0, pairs) for v in (w, net)]
    torch.testing.assert_close(terms[1], terms[0], rtol=1e-10, atol=1e-12)


def _cnn(pool: str, bias: bool, n_out: int = 1) -> nn.Sequential:
    torch.manual_seed(0)
    pool_layer = {"avg": nn.AvgPool2d(2), "max": nn.MaxPool2d(2)}[pool]
    return nn.Sequential(
        nn.Unflatten(1, (1, 6, 6)),
        nn.Conv2d(1, 3, 3, padding=1, bias=bias),
        nn.ReLU(),
        pool_layer,
        nn.Conv2d(3, 4, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, n_out, bias=False),
    ).to(F64)


def _explicit_residual(module: nn.Sequential, x: torch.Tensor, u: torch.Tensor, alpha: float) -> torch.Tensor:
    """sum_l ||theta_l - sum_i grad_{theta_l} (u_i . Phi(x_i))||^2, one sample at a time, by a forward
    written out here with the reference's modified ReLU (independent of bench.attack.engine)."""
    conv1, pool, conv2, head = module[1], module[3], module[4], module[7]
    params = [conv1.weight, conv2.weight, head.weight] + ([conv1.bias] if conv1.bias is not None else [])
    total = [torch.zeros((), dtype=F64) for _ in params]
    for xi, ui in zip(x, u, strict=True):
        h = F.conv2d(xi.view(1, 1, 6, 6), conv1.weight, conv1.bias, padding=1)
        h = pool(_ModifiedReLU.apply(h, alpha))
        h = _ModifiedReLU.apply(F.conv2d(h, conv2.weight, padding=1), alpha)
        out = h.flatten(1) @ head.weight.T
        grads = torch.autograd.grad((ui * out[0]).sum(), params, create_graph=True)
        total = [t + g for t, g in zip(total, grads, strict=True)]
    terms = [((p.detach() - g) ** 2).sum() for p, g in zip(params, total, strict=True)]
    if conv1.bias is not None:
        terms[0] = terms[0] + terms.pop()
    return torch.stack(terms)


@pytest.mark.parametrize("pool", ["avg", "max"])
@pytest.mark.parametrize("bias", [False, True])
def test_a_cnn_residual_is_the_explicit_per_sample_gradient_sum(pool: str, bias: bool) -> None:
    module = _cnn(pool, bias)
    for p in module.parameters():
        p.requires_grad_()
    net = from_module(module, 36)
    assert (net.depth, net.n_out, net.d) == (3, 1, 36)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 36, generator=g, dtype=F64, requires_grad=True)
    c = torch.randn(5, generator=g, dtype=F64)
    ours = net.layer_residuals(x, torch.ones(5, dtype=F64), c, 7.0)
    ref = _explicit_residual(module, x, c.unsqueeze(-1), 7.0)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-12)
    gx = torch.autograd.grad(ours.sum(), x)[0]
    torch.testing.assert_close(gx, torch.autograd.grad(ref.sum(), x)[0], rtol=1e-9, atol=1e-12)


def test_a_multiclass_cnn_residual_is_the_explicit_sum() -> None:
    module = _cnn("max", False, n_out=3)
    for p in module.parameters():
        p.requires_grad_()
    net = from_module(module, 36)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 36, generator=g, dtype=F64)
    y = torch.tensor([0, 1, 2, 0, 1, 2], dtype=F64)
    c = torch.rand(6, 3, generator=g, dtype=F64)
    ours = net.layer_residuals(x, y, c, 7.0, pairs="all")
    own = torch.nn.functional.one_hot(y.long(), 3).to(F64)
    off = c * (1 - own)
    u = own * off.sum(-1, keepdim=True) - off  # u_i . Phi = sum_j c_ij (Phi_y - Phi_j)
    torch.testing.assert_close(ours, _explicit_residual(module, x, u, 7.0).detach(), rtol=1e-10, atol=1e-12)


def test_margin_normalisation_scales_every_layer_by_the_root_of_the_degree() -> None:
    module = _cnn("avg", True)
    net = from_module(module, 36)
    x = torch.randn(4, 36, dtype=F64)
    scaled = net.margin_normalized(8.0)  # Phi is homogeneous of degree 3: each layer times 8^(-1/3)
    torch.testing.assert_close(scaled.phi(x), net.phi(x) / 8.0, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(scaled.sq_norm(), net.sq_norm() / 4.0, rtol=1e-12, atol=0)
    torch.testing.assert_close(net.phi(x).squeeze(-1), module(x).squeeze(-1), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    "bad,name,what",
    [
        (nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 1)), "2", "has a bias"),
        (
            nn.Sequential(nn.Linear(4, 3, bias=False), nn.BatchNorm1d(3), nn.Linear(3, 1, bias=False)),
            "1",
            "normalisation",
        ),
        (
            nn.Sequential(nn.Linear(4, 3, bias=False), nn.Tanh(), nn.Linear(3, 1, bias=False)),
            "1",
            "not a ReLU",
        ),
        (
            nn.Sequential(nn.Linear(4, 3, bias=False), nn.LayerNorm(3), nn.Linear(3, 1, bias=False)),
            "1",
            "normalisation",
        ),
    ],
)
def test_a_network_that_is_not_homogeneous_is_refused_by_its_layer(
    bad: nn.Module, name: str, what: str
) -> None:
    with pytest.raises(BenchInputError, match=rf"model layer '{name}' \(\w+\) .*{what}.*fix:"):
        from_module(bad)


def test_a_custom_block_and_the_closed_form_on_a_cnn_are_refused() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(4, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lin(x)

    seq = nn.Sequential()
    seq.add_module("body", Block())
    with pytest.raises(BenchInputError, match=r"'body' \(Block\) is a module with its own forward"):
        from_module(seq, 4)
    cnn = from_module(_cnn("avg", False), 36)
    with pytest.raises(BenchInputError, match="attack.engine=closed"):
        as_engine(cnn, "closed")
    assert as_engine(cnn, "auto") is cnn and closed_form(cnn) is None
