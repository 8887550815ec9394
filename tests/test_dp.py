"""Differentially private training (bench.train): clipping, the noise-free limit, the accounting, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.config import ModelConfig, TrainConfig
from bench.errors import ConfigError
from bench.models import make_mlp
from bench.train import (
    achieved_epsilon,
    check_dp,
    dp_gradient,
    noise_multiplier,
    per_sample_gradients,
    train_classifier,
)


def _data(n: int = 12, d: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.repeat([-1.0, 1.0], n // 2)
    x = 0.5 * y[:, None] * np.eye(d)[0] + rng.standard_normal((n, d))
    return x, y


def _model(d: int = 6, width: int = 8):
    return make_mlp(d, 2, width, "first", 0.3, seed=0, dtype=torch.float64)


def _flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in grads.values()])


def test_per_sample_gradients_match_autograd_one_sample_at_a_time() -> None:
    x, y = _data()
    model = _model()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    per = per_sample_gradients(model, xt, yt)
    for i in (0, 5, 11):
        model.zero_grad()
        torch.nn.functional.softplus(-yt[i : i + 1] * model(xt[i : i + 1])).sum().backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(per[name][i], p.grad, rtol=1e-10, atol=1e-12)


def test_clipping_bounds_each_samples_contribution() -> None:
    """Without noise the DP gradient is the mean of clipped per-sample gradients: each has norm <= C, so
    replacing one sample by any other moves the sum by at most 2C (the sensitivity the noise is scaled to)."""
    x, y = _data()
    model = _model()
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    norms = torch.sqrt(
        sum((g.reshape(len(x), -1) ** 2).sum(1) for g in per_sample_gradients(model, xt, yt).values())
    )
    clip = float(norms.median())  # half the samples are clipped
    assert (norms > clip).sum() >= 3
    g, reported = dp_gradient(model, xt, yt, clip, sigma=0.0)
    torch.testing.assert_close(reported, norms)
    # one sample alone: its contribution is its gradient scaled to norm min(||g_i||, C)
    for i in range(len(x)):
        gi, _ = dp_gradient(model, xt[i : i + 1], yt[i : i + 1], clip, sigma=0.0)
        assert float(_flat(gi).norm()) <= clip * (1 + 1e-9)
        assert float(_flat(gi).norm()) == pytest.approx(min(float(norms[i]), clip), rel=1e-9)
    # replace sample 0 by a far-away point with a huge gradient: the summed gradient moves by <= 2C
    x2 = xt.clone()
    x2[0] = 100.0 * torch.ones(x.shape[1], dtype=x2.dtype)
    y2 = yt.clone()
    y2[0] = -yt[0]
    g2, norms2 = dp_gradient(model, x2, y2, clip, sigma=0.0)
    assert float(norms2[0]) > 10 * clip
    assert float((_flat(g) - _flat(g2)).norm()) * len(x) <= 2 * clip * (1 + 1e-9)
    # noise: sigma C per coordinate of the sum (C = clip), i.e. sigma C / n after the division
    gen = torch.Generator().manual_seed(0)
    big = make_mlp(6, 2, 400, "none", 0.3, seed=0, dtype=torch.float64)
    clean, _ = dp_gradient(big, xt, yt, clip, sigma=0.0)
    noisy, _ = dp_gradient(big, xt, yt, clip, sigma=3.0, generator=gen)
    sd = float((_flat(noisy) - _flat(clean)).std()) * len(x)
    assert sd == pytest.approx(3.0 * clip, rel=0.05)


def test_noise_free_unclipped_dp_training_equals_plain_training() -> None:
    """epsilon = inf (sigma 0) and dp_clip = inf: T DP steps are T plain gradient steps (plain training
    with max_epochs = T + 1 computes the loss at epoch T + 1 after T steps, and stops there)."""
    x, y = _data()
    steps = 40
    plain = TrainConfig(lr=0.5, init_scale=0.3, target_loss=1e-300, max_epochs=steps + 1, weight_decay=1e-2)
    dp = TrainConfig(
        lr=0.5,
        init_scale=0.3,
        weight_decay=1e-2,
        dp=True,
        dp_epsilon=math.inf,
        dp_clip=math.inf,
        dp_epochs=steps,
    )
    model_cfg = ModelConfig(depth=3, width=8, bias="first")
    a = train_classifier(x, y, model_cfg, plain, seed=3)
    b = train_classifier(x, y, model_cfg, dp, seed=3)
    for pa, pb in zip(a.model.parameters(), b.model.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-13)
    assert b.metrics["dp/sigma"] == 0.0 and math.isinf(b.metrics["dp/epsilon"])
    assert b.metrics["dp/clipped_frac"] == 0.0
    # and a finite clip does change the weights (the equality is not vacuous)
    c = train_classifier(x, y, model_cfg, TrainConfig(**{**dp.__dict__, "dp_clip": 1e-3}), seed=3)
    assert c.metrics["dp/clipped_frac"] > 0.5
    assert not torch.allclose(next(c.model.parameters()), next(b.model.parameters()))


def test_logged_epsilon_is_the_accountants_for_sigma_steps_and_sampling_rate_one() -> None:
    from opacus.accountants import RDPAccountant

    x, y = _data()
    cfg = TrainConfig(
        lr=0.5, init_scale=0.3, dp=True, dp_epsilon=2.0, dp_delta=1e-3, dp_clip=1.0, dp_epochs=15
    )
    tr = train_classifier(x, y, ModelConfig(depth=2, width=8), cfg, seed=0)
    m = tr.metrics
    acc = RDPAccountant()
    acc.history = [(m["dp/sigma"], 1.0, 15)]
    assert m["dp/epsilon"] == pytest.approx(acc.get_epsilon(1e-3), rel=1e-12)
    assert m["dp/epsilon"] <= 2.0 and m["dp/epsilon"] == pytest.approx(2.0, rel=0.02)  # calibrated to target
    assert m["dp/sigma"] == noise_multiplier(cfg) > 0
    assert (m["dp/delta"], m["dp/clip"], m["dp/steps"]) == (1e-3, 1.0, 15.0)
    # more steps at the same sigma spend more privacy; more noise spends less
    assert (
        achieved_epsilon(m["dp/sigma"], 30, 1e-3)
        > m["dp/epsilon"]
        > achieved_epsilon(2 * m["dp/sigma"], 15, 1e-3)
    )
    # a DP model is not called converged unless its loss met the target
    assert m["reached_target"] == float(m["train_loss"] < cfg.target_loss) == 0.0
    # the noise is seeded: the same seed gives the same model, another seed another
    again = train_classifier(x, y, ModelConfig(depth=2, width=8), cfg, seed=0)
    other = train_classifier(x, y, ModelConfig(depth=2, width=8), cfg, seed=1)
    w0, w1, w2 = (next(t.model.parameters()) for t in (tr, again, other))
    assert torch.equal(w0, w1) and not torch.allclose(w0, w2)


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("dp_epsilon", 0.0, "train.dp_epsilon"),
        ("dp_epsilon", -1.0, "train.dp_epsilon"),
        ("dp_clip", 0.0, "train.dp_clip"),
        ("dp_clip", -2.0, "train.dp_clip"),
        ("dp_delta", 1.0, "train.dp_delta"),
        ("dp_epochs", 0, "train.dp_epochs"),
    ],
)
def test_bad_dp_settings_name_the_key(key: str, value: float, fix: str) -> None:
    with pytest.raises(ConfigError, match=fix.replace(".", r"\.")):
        TrainConfig(dp=True, **{key: value}).check()


def test_delta_must_be_below_one_over_n_and_the_budget_reachable() -> None:
    cfg = TrainConfig(dp=True, dp_delta=0.1)
    with pytest.raises(ConfigError, match=r"train\.dp_delta.*1/n = 0\.0833.*fix"):
        check_dp(cfg, 12)
    assert check_dp(TrainConfig(dp=True, dp_delta=0.05), 12) > 0
    with pytest.raises(ConfigError, match=r"train\.dp_clip.*finite"):
        TrainConfig(dp=True, dp_epsilon=1.0, dp_clip=math.inf).check()
    with pytest.raises(ConfigError, match=r"train\.dp_epsilon.*fix"):
        check_dp(TrainConfig(dp=True, dp_epsilon=1e-4, dp_epochs=1000), 100)


@pytest.mark.parametrize(
    ("setting", "needle"),
    [
        ("train.dp_epsilon=0", "'train.dp_epsilon'"),
        ("train.dp_epsilon=-1", "'train.dp_epsilon'"),
        ("train.dp_clip=0", "'train.dp_clip'"),
        ("train.dp_epochs=0", "'train.dp_epochs'"),
        ("train.dp_delta=0.2", "1/n = 0.167"),  # n = 6 training samples
    ],
)
def test_cli_bad_dp_setting_exits_2_before_anything_runs(tmp_path, setting: str, needle: str) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    store = tmp_path / "mlflow.db"
    args = ["run", "digits-pair", "--profile", "smoke", "--tracking-uri", f"sqlite:///{store}"]
    args += ["--set", "data.n_per_class=3", "--set", "train.dp=true", "--set", setting]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 2, out.output
    assert needle in out.output and "fix" in out.output and "Traceback" not in out.output
    assert not store.exists()  # refused before the store was touched, so before any training
