"""Training factors: weight decay (the regularised KKT condition on a trained toy model) and extra epochs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.attack.kkt import Weights, stationarity_residual, weight_decay_multipliers
from bench.config import ModelConfig, RunConfig, TrainConfig, apply_overrides
from bench.errors import ConfigError
from bench.train import train_classifier

WD = 3e-2


def _clusters(n_per_class: int = 5, d: int = 10, noise: float = 0.3, seed: int = 0):
    """Two clusters at +-e_1: the regularised optimum puts no hidden unit on a data point's ReLU kink,
    so plain gradient descent reaches an exact stationary point (scattered data can pin units to kinks,
    where stationarity holds only with a subgradient)."""
    rng = np.random.default_rng(seed)
    y = np.repeat([-1.0, 1.0], n_per_class)
    x = y[:, None] * np.eye(d)[0] + noise * rng.standard_normal((2 * n_per_class, d))
    return x, y


def _train(x, y, depth: int, **train):
    cfg = TrainConfig(lr=0.5, init_scale=0.3, **train)
    return train_classifier(x, y, ModelConfig(depth=depth, width=16), cfg, seed=0)


def _weights(model) -> Weights:
    return Weights(tuple(model.weights()), model.first_bias())


@pytest.mark.parametrize("depth", [2, 3])
def test_weights_trained_with_decay_satisfy_the_regularised_kkt_condition(depth: int) -> None:
    x, y = _clusters()
    tr = _train(x, y, depth, weight_decay=WD, target_loss=1e-12, stationary_tol=1e-8, max_epochs=6000)
    assert tr.metrics["reached_target"] == 1.0 and tr.metrics["train_accuracy"] == 1.0
    assert tr.epochs < 6000  # stopped on stationarity: the loss target is out of reach with decay
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = _weights(tr.model)
    lam = weight_decay_multipliers(w, xt, yt, WD)
    assert (lam > 0).all()  # every sample carries a multiplier, not only those on the margin
    residual = stationarity_residual(w, xt, yt, lam)
    assert residual < 1e-7
    assert residual == pytest.approx(tr.metrics["train_stationarity"], abs=1e-9)

    # perturbed weights (1% per entry), with the multipliers the formula gives them: clearly off
    g = torch.Generator().manual_seed(1)
    noisy = Weights(tuple(m * (1 + 0.01 * torch.randn(m.shape, generator=g, dtype=m.dtype)) for m in w.mats))
    assert stationarity_residual(noisy, xt, yt, weight_decay_multipliers(noisy, xt, yt, WD)) > 1e3 * residual
    # the right weights with the multipliers of another decay: off by the factor
    assert stationarity_residual(w, xt, yt, weight_decay_multipliers(w, xt, yt, 2 * WD)) > 0.3
    # rescaling theta by a keeps the form with lambda * a^(2 - L) (the attack's margin normalisation)
    a = 1.7
    assert stationarity_residual(w.scaled(a), xt, yt, lam * a ** (2 - depth)) < 1e-7


def test_weights_without_decay_do_not_satisfy_it() -> None:
    """The condition is specific: an unregularised model with the same formula's multipliers fails it."""
    x, y = _clusters()
    tr = _train(x, y, 2, target_loss=1e-3, max_epochs=6000)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    w = _weights(tr.model)
    assert stationarity_residual(w, xt, yt, weight_decay_multipliers(w, xt, yt, WD)) > 0.1


def test_extra_epochs_train_past_the_target_and_the_margin_grows() -> None:
    x, y = _clusters(seed=2)
    base = _train(x, y, 2, target_loss=1e-2, max_epochs=5000)
    more = _train(x, y, 2, target_loss=1e-2, max_epochs=5000, extra_epochs=300)
    assert base.metrics["reached_target"] == more.metrics["reached_target"] == 1.0
    assert base.metrics["train_extra_epochs"] == 0.0 and more.metrics["train_extra_epochs"] == 300.0
    assert more.epochs == base.epochs + 300
    assert more.curve[0][-1] == more.epochs  # the last epoch is on the curve
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    with torch.no_grad():
        margins = [float((yt * r.model(xt)).min()) for r in (base, more)]
    assert margins[1] > margins[0]
    assert more.metrics["train_loss"] < base.metrics["train_loss"]


def test_extra_epochs_are_not_bounded_by_max_epochs() -> None:
    x, y = _clusters(seed=3)
    base = _train(x, y, 2, target_loss=1e-2, max_epochs=5000)
    capped = _train(x, y, 2, target_loss=1e-2, max_epochs=base.epochs, extra_epochs=50)
    assert capped.epochs == base.epochs + 50


@pytest.mark.parametrize(
    "key, value",
    [("train.weight_decay", "-1e-3"), ("train.extra_epochs", "-5"), ("train.extra_epochs", "1.5")],
)
def test_bad_training_factors_name_the_key(key: str, value: str) -> None:
    from bench.tasks.blobs import BlobData

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(RunConfig(data=BlobData()), {key: value})
