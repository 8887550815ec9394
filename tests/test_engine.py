"""The autograd engine (bench.attack.engine): the closed form's residual on MLPs, an explicit
per-sample-gradient sum on CNNs, and the refusal of networks that are not positively homogeneous."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from bench.attack.engine import as_engine, autograd_attack_loss, closed_form, from_module, layer_terms
from bench.attack.kkt import Weights, attack_loss
from bench.attack.multiclass import multiclass_attack_loss
from bench.attack.reference import _ModifiedReLU
from bench.attack.truth import mlp_gram_terms, module_gram_terms, truth_fit
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


@pytest.mark.parametrize("bias,alpha", [(False, None), (True, None), (True, 7.0)])
@pytest.mark.parametrize("kind", ["binary", "max", "all"])
def test_the_truths_gram_terms_by_autograd_are_the_mlp_closed_form(bias: bool, alpha, kind: str) -> None:
    """Exact ReLU (alpha None) and the attack's surrogate slope alike."""
    n_out = 1 if kind == "binary" else 3
    w = _weights(3, bias, n_out)
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.standard_normal((7, 12)))
    y = np.where(np.arange(7) % 2 == 0, -1.0, 1.0) if n_out == 1 else np.arange(7) % 3
    pairs = "max" if kind == "binary" else kind
    ours = module_gram_terms(as_engine(w, "autograd"), x, y, pairs, chunk=3, alpha=alpha)
    ref = mlp_gram_terms(w, x, y, pairs, alpha)
    for a, b in ((ours.K, ref.K), (ours.b, ref.b), (ours.own, ref.own)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert (ours.sample == ref.sample).all() and (ours.other == ref.other).all()


@pytest.mark.parametrize("pool,n_out,pairs", [("avg", 1, "max"), ("max", 1, "max"), ("max", 3, "all")])
def test_a_cnn_truth_fit_is_its_explicit_per_sample_gradient_residual(
    pool: str, n_out: int, pairs: str
) -> None:
    """The Gram quadratic at the NNLS multipliers (and at random ones) equals the residual formed from the
    module's own forward by autograd (exact ReLU), and the fit is that residual in the attack's norm."""
    module = _cnn(pool, True, n_out)
    net = from_module(module, 36)
    rng = np.random.default_rng(5)
    x = torch.as_tensor(rng.standard_normal((6, 36)))
    y = np.where(np.arange(6) % 2 == 0, -1.0, 1.0) if n_out == 1 else np.arange(6) % 3
    terms = module_gram_terms(net, x, y, pairs)
    fit = truth_fit(net, x, y, "layer", (), pairs)
    params = [module[1].weight, module[4].weight, module[7].weight, module[1].bias]
    for k, lam in enumerate((fit.lam, rng.random(len(fit.lam)))):
        lam_t = torch.as_tensor(lam)
        quad = terms.own - 2 * terms.b @ lam_t + torch.einsum("i,lij,j->l", lam_t, terms.K, lam_t)
        out = module(x).view(6, -1)
        u = torch.as_tensor(y).view(6, 1) if n_out == 1 else None
        if n_out > 1:  # rows (i, j != y_i) with direction e_y - e_j
            rows = [(i, j) for i in range(6) for j in range(3) if j != y[i]]
            total = sum(lam[r] * (out[i, y[i]] - out[i, j]) for r, (i, j) in enumerate(rows))
        else:
            total = (lam_t.view(6, 1) * u * out).sum()
        grads = torch.autograd.grad(total, params)
        explicit = [((p.detach() - g) ** 2).sum() for p, g in zip(params, grads, strict=True)]
        explicit = torch.stack([explicit[0] + explicit[3], explicit[1], explicit[2]])
        torch.testing.assert_close(quad, explicit.detach(), rtol=1e-9, atol=1e-12)
        if k == 0:  # at the NNLS optimum: the fit is the explicit residual in the layer norm
            assert fit.fit == pytest.approx(float((explicit / terms.own).mean()), rel=1e-9)
            assert fit.fit < 1.0  # the optimum explains part of theta: lambda = 0 would give 1


def test_the_smooth_surrogate_that_torch_compile_traces_is_the_same_function(monkeypatch) -> None:
    """Under torch.compile the engine's ReLU is `smooth_surrogate_relu`: the same residual and gradients
    into x and lambda as the custom Function's (float64, 1e-10), where alpha h spans both signs and the
    far tails (e^{alpha h} underflowing: no NaN)."""
    import bench.attack.engine as engine

    net = from_module(_cnn("max", True), 36)
    g = torch.Generator().manual_seed(6)
    x = (torch.randn(2, 5, 36, generator=g, dtype=F64) * 3).requires_grad_()
    c = torch.randn(2, 5, generator=g, dtype=F64, requires_grad=True)
    alpha = torch.tensor([2.0, 500.0], dtype=F64).view(2, 1, 1)
    out = []
    for form in (engine.surrogate_relu, engine.smooth_surrogate_relu):
        monkeypatch.setattr(engine, "surrogate_relu", form)
        terms = net.layer_residuals(x, torch.ones(5, dtype=F64), c, alpha)
        out.append((terms, *torch.autograd.grad(terms.sum(), (x, c))))
    for a, b in zip(*out, strict=True):
        assert torch.isfinite(b).all()
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_a_cnn_attack_on_blobs_beats_the_mean_image_and_random_candidates() -> None:
    """End to end on a CNN (one 16-channel convolution and a linear head, the smoke scale, blob size 1):
    trained to the target, attacked through the autograd engine, and closer to the training images than the
    mean image and the untrained candidates, with every training image memorised."""
    from bench.experiment import resolve_config, run_experiment
    from bench.tasks import get_task

    sets = {"model.arch": "cnn", "model.channels": "16", "threads": 1}
    res = run_experiment(resolve_config(get_task("blobs-rect"), "smoke", sets, 1, seed=0))
    m = res.settings[0].metrics
    assert (
        res.train_metrics["train/converged"] == 1.0 and res.train_metrics["model/params"] == 16 * 9 + 16 * 784
    )
    assert m["gain/mean/ncc_dist"] > 0.02 and m["gain/random/ncc_dist"] > 0.02, m
    assert m["memorised/frac"] == 1.0 and m["attack/fit_check_failed"] == 0.0


BAD_NET = """
from torch import nn

def build(d, n_out, image_shape):
    h, w = image_shape
    return nn.Sequential(
        nn.Unflatten(1, (1, h, w)), nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * h * w, n_out, bias=False),
    )

def good(d, n_out, image_shape):
    h, w = image_shape
    return nn.Sequential(
        nn.Unflatten(1, (1, h, w)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(4 * (h // 2) * (w // 2), n_out, bias=False),
    )
"""


def test_a_users_network_that_is_not_homogeneous_exits_2_naming_the_layer(tmp_path, tracking_uri) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    (tmp_path / "nets.py").write_text(BAD_NET)
    sets = ["--set", "model.arch=module", "--set", f"model.module={tmp_path / 'nets.py'}:build"]
    out = CliRunner().invoke(
        app, ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri, *sets]
    )
    assert out.exit_code == 2, out.output
    assert (
        "model layer '2' (BatchNorm2d) is a normalisation layer" in out.output
        and "fix: remove it" in out.output
    )


def test_a_users_homogeneous_network_is_built_with_the_small_first_layer(tmp_path) -> None:
    from bench.config import ModelConfig
    from bench.models import make_model

    (tmp_path / "nets.py").write_text(BAD_NET)
    cfg = ModelConfig(arch="module", module=f"{tmp_path / 'nets.py'}:good")
    model = make_model(cfg, 64, 1e-4, seed=0, dtype=F64, n_out=3, image_shape=(8, 8))
    net = from_module(model, 64)
    assert (net.depth, net.n_out) == (2, 3) and float(net.bias.abs().max()) == 0.0
    assert 0.5e-4 < float(net.weights[0].std()) < 2e-4  # N(0, init_scale^2), as the MLP's first layer
    assert model(torch.zeros(5, 64, dtype=F64)).shape == (5, 3)
    with pytest.raises(BenchInputError, match="model.arch=cnn needs image data"):
        make_model(ModelConfig(arch="cnn"), 10, 1e-4, seed=0, dtype=F64)
