"""The attack on a really trained model: the KKT residual falls, populations equal single runs."""

from __future__ import annotations

import numpy as np
import pytest
from blob_fixture import make_blob_classes

from bench.attack.kkt import Weights
from bench.attack.reconstruct import reconstruct
from bench.config import AttackConfig, ModelConfig, TrainConfig
from bench.train import train_classifier


@pytest.fixture(scope="module")
def trained():
    x, lab = make_blob_classes(np.random.default_rng(0), 5, 25, "rect")
    y = np.where(lab > 0, 1.0, -1.0)
    mean = x.mean(0)
    res = train_classifier(x - mean, y, ModelConfig(depth=2, width=100), TrainConfig(max_epochs=3000), seed=0)
    return res, x - mean, y


def test_training_reaches_the_target_loss(trained) -> None:
    res, _, _ = trained
    assert res.metrics["train_loss"] < 1e-4 and res.metrics["train_accuracy"] == 1.0
    epochs, losses = res.curve
    assert losses[-1] < losses[0] and epochs[-1] == res.epochs


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_kkt_residual_falls_during_reconstruction(trained, dtype: str) -> None:
    res, xc, y = trained
    w = Weights(tuple(res.model.weights()))
    cfg = AttackConfig(steps=200, eval_every=50, dtype=dtype)
    out = reconstruct(w, len(y), -np.ones(784), np.ones(784), cfg, seed=0)
    fit = out.curves["attack/kkt_fit"][1][0]
    assert fit[0] > 0.5  # random candidates explain little of theta
    assert fit[-1] < 0.5 * fit[0]
    assert out.x.shape == (1, 20, 784) and out.lam.shape == (1, 20)
    assert not out.diverged.any()


def test_population_equals_settings_run_one_by_one(trained) -> None:
    res, xc, y = trained
    w = Weights(tuple(res.model.weights()))
    cfg = AttackConfig(steps=20, dtype="float64")
    settings = [{"lr": 0.01, "alpha": 50.0}, {"lr": 0.003, "alpha": 200.0, "lam_min": 0.2}]
    box = (-np.ones(784), np.ones(784))
    together = reconstruct(w, len(y), *box, cfg, seed=1, settings=settings)
    for p, s in enumerate(settings):
        alone = reconstruct(w, len(y), *box, cfg, seed=1, settings=[s])
        np.testing.assert_allclose(together.x[p], alone.x[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(together.lam[p], alone.lam[0], rtol=1e-9, atol=1e-12)
    assert together.curves["attack/loss"][1].shape == (2, 20)


def test_a_diverging_setting_is_frozen_not_fatal(trained) -> None:
    res, _, y = trained
    w = Weights(tuple(res.model.weights()))
    cfg = AttackConfig(steps=30, optimizer="sgd", momentum=0.9)
    out = reconstruct(w, len(y), -np.ones(784), np.ones(784), cfg, 0, settings=[{"lr": 1e-3}, {"lr": 1e12}])
    assert list(out.diverged) == [False, True]
    assert np.isfinite(out.x).all()


def test_compiled_attack_follows_the_eager_one(trained) -> None:
    """attack.compile=true (torch.compile of the loss) takes the same path as eager autograd; in float64
    the fused kernels round differently only at ~1e-16, far below what 20 Adam steps could amplify."""
    res, xc, y = trained
    w = Weights(tuple(res.model.weights()))
    box = (-np.ones(784), np.ones(784))
    runs = [
        reconstruct(w, len(y), *box, AttackConfig(steps=20, dtype="float64", compile=c), seed=2)
        for c in (False, True)
    ]
    np.testing.assert_allclose(runs[1].x, runs[0].x, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(runs[1].lam, runs[0].lam, rtol=1e-7)
    eager, compiled = (r.curves["attack/kkt_fit"][1] for r in runs)
    np.testing.assert_allclose(compiled, eager, rtol=1e-9)
    assert eager[0, -1] < eager[0, 0]


@pytest.mark.parametrize(("compiled", "beta2"), [(False, 0.999), (True, 0.999), (False, 0.95)])
def test_the_population_optimiser_is_adam_and_freezes_stopped_settings(compiled: bool, beta2: float) -> None:
    """The attack's own Adam (eager, and fused through torch.compile with attack.compile=true; with
    attack.beta2) follows torch.optim.Adam on a setting that moves; a stopped setting and its kept state
    stay where they were."""
    import torch

    from bench.attack.optim import Optimizer

    gen = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 6, 5, generator=gen, dtype=torch.float64)
    x = x0.clone().requires_grad_()
    ref = x0[0].clone().requires_grad_()
    lr = torch.tensor([0.03, 0.03], dtype=torch.float64).view(2, 1, 1)
    opt = Optimizer([x], [lr], "adam", 0.9, compiled, beta2)
    torch_adam = torch.optim.Adam([ref], lr=0.03, betas=(0.9, beta2), eps=1e-8)
    kept = [x0.clone()]
    alive = torch.tensor([True, False])
    for _ in range(50):
        grad = torch.randn(x0.shape, generator=gen, dtype=torch.float64)
        x.grad, ref.grad = grad.clone(), grad[0].clone()
        opt.step(alive, kept)
        torch_adam.step()
    np.testing.assert_allclose(x[0].detach().numpy(), ref.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert not np.allclose(x[0].detach().numpy(), x0[0].numpy())  # it moved
    assert torch.equal(x[1].detach(), x0[1])  # the stopped setting did not
    assert torch.equal(kept[0][0], x[0].detach()) and torch.equal(kept[0][1], x0[1])
