"""The attack on a really trained model: the KKT residual falls, populations equal single runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
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


def test_restarts_keep_the_start_with_the_lowest_float64_objective() -> None:
    """attack.restarts=3: three random starts per setting, the first the single start's own (bit for bit in
    float64), the one with the lowest float64 objective kept, so never worse than one start."""
    import dataclasses

    from bench.attack.kkt import Weights
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    g = torch.Generator().manual_seed(0)
    w = Weights(
        (
            torch.randn(20, 12, generator=g, dtype=torch.float64) * 0.3,
            torch.randn(1, 20, generator=g, dtype=torch.float64),
        )
    )
    cfg = AttackConfig(steps=60, eval_every=20, dtype="float64")
    box = (-np.ones(12), np.ones(12))
    one = reconstruct(w, 4, *box, cfg, seed=3)
    three = reconstruct(w, 4, *box, dataclasses.replace(cfg, restarts=3), seed=3, settings=[{}, {"lr": 0.01}])
    assert three.x.shape == (2, 8, 12) and three.restart.shape == (2,)
    assert three.objective[0] <= one.objective[0]
    if three.restart[0] == 0:
        np.testing.assert_array_equal(three.x[0], one.x[0])
    assert three.curves["attack/loss"][1].shape[0] == 2


def test_priors_join_the_objective_and_its_float64_check() -> None:
    """With tv, floor and repel on, the float64 objective of the returned state includes them (the fast path
    and the check agree: nothing is flagged), and each term is zero where it should be."""
    from bench.attack.kkt import Weights
    from bench.attack.priors import coincidence, floor_pull, total_variation
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    flat = torch.zeros(1, 3, 16, dtype=torch.float64)
    assert float(total_variation(flat, (4, 4))) < 1e-3
    assert float(floor_pull(flat - 1.0, torch.zeros(16, dtype=torch.float64))) == 0.0
    y = torch.tensor([-1.0, -1.0, 1.0], dtype=torch.float64)
    x = torch.randn(1, 3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert float(coincidence(x, y)) == 0.0
    x[0, 1] = x[0, 0] * 2  # two candidates of one label on the same ray
    assert float(coincidence(x, y)) > 0.0
    g = torch.Generator().manual_seed(0)
    w = Weights((torch.randn(20, 16, generator=g) * 0.3, torch.randn(1, 20, generator=g)))
    cfg = AttackConfig(steps=40, eval_every=20, tv=0.1, floor=0.1, repel=1.0)
    out = reconstruct(w, 4, -np.ones(16), np.ones(16), cfg, seed=0, shape=(4, 4))
    assert not out.fit_check_failed.any()
    plain = reconstruct(w, 4, -np.ones(16), np.ones(16), AttackConfig(steps=40, eval_every=20), seed=0)
    assert out.objective[0] != plain.objective[0]
