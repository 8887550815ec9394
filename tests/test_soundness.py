"""The attack is sound at any length: a faithful residual in every dtype, a float64 check that catches a
fast path optimising another function, the best state returned, and a degrading run never 'converged'."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.attack.check import ExactCheck
from bench.attack.kkt import Weights, kkt_fit, lambda_scale, loss_function, residual_routes, step_method
from bench.attack.reconstruct import reconstruct
from bench.config import AttackConfig, ModelConfig, RunConfig, TrainConfig, apply_overrides
from bench.errors import ConfigError
from bench.tasks.blobs import BlobData
from bench.train import train_classifier

BOX = (-np.ones(784), np.ones(784))


@pytest.fixture(scope="module")
def trained() -> tuple[Weights, np.ndarray]:
    """A 784-100-1 network trained to loss 1e-4 on 5 + 5 blob images (seconds)."""
    data = BlobData(n_per_class=5, blob_size=25).load(0)
    xc = data.x_train - data.x_train.mean(0)
    res = train_classifier(
        xc, data.y_train, ModelConfig(depth=2, width=100), TrainConfig(max_epochs=3000), seed=0
    )
    return Weights(tuple(res.model.weights())), xc


def test_the_explicit_residual_stays_a_residual_in_bfloat16_where_the_gram_expansion_does_not(
    trained,
) -> None:
    """Candidates in near-identical pairs of opposite labels with large multipliers: their gradients
    cancel, so the residual stays small, while each Gram term grows like lambda^2. Expanded in bfloat16 the
    residual (which cannot be negative) comes out negative: the minimum an optimiser of that path finds is
    rounding error. The explicit form is a sum of squares: never negative. Its bfloat16 value is still off
    here, which is what the attack's float64 check (next tests) is for."""
    w, xc = trained
    w32, w64 = w.to(torch.float32), w.to(torch.float64)
    x = torch.tensor(xc, dtype=torch.float32)
    n = len(x)
    x = torch.cat([x, x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))])
    y = torch.cat([-torch.ones(n), torch.ones(n)])
    c = 100.0 * y * float(lambda_scale(w32, 2 * n))
    with torch.no_grad():
        exact = float(kkt_fit(w64, x.double(), c.double(), 100.0, method="explicit"))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            gram = float(kkt_fit(w32, x, c, 100.0, method="gram"))
            explicit = float(kkt_fit(w32, x, c, 100.0, method="explicit"))
    assert exact > 0
    assert gram < 0  # the failure of the expanded form: a squared residual below zero
    assert explicit > 0
    assert abs(explicit - exact) / exact > 0.01  # and bf16 is not exact here: the check must catch it


def test_the_default_float32_route_is_the_gram_expansion_and_the_float64_check_catches_its_failure(
    trained,
) -> None:
    """`attack.residual` "auto" (the default) expands the hidden layer through Gram matrices in float32 at
    this shape, explicit in bfloat16. On the construction above the float32 Gram fit is ~6% off the float64
    one: the check flags it at the monitor point (a flagged run goes on explicit, next test); on the random
    first candidates it is accepted."""
    w, xc = trained
    shapes = [tuple(m.shape) for m in w.mats]
    assert AttackConfig().residual == "auto"
    assert residual_routes(shapes, 20, step_method("auto", mixed=False)) == ["gram", "explicit"]
    assert residual_routes(shapes, 20, step_method("auto", mixed=True)) == ["explicit", "explicit"]
    w32 = w.to(torch.float32)
    x = torch.tensor(xc, dtype=torch.float32)
    n = len(x)
    near = torch.cat([x, x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))])
    y = torch.cat([-torch.ones(n), torch.ones(n)])
    cfg = AttackConfig()
    start = 1e-3 * torch.randn(2 * n, 784, generator=torch.Generator().manual_seed(1))
    for cand, lam, flagged in ((near, 100.0, True), (start, 1.0, False)):
        check = ExactCheck(w, y.numpy(), *BOX, cfg, [{"lam_min": cfg.lam_min}], torch.device("cpu"))
        l = torch.full((1, 2 * n), lam)
        _, fast_fit = loss_function(mixed=False, compiled=False)(
            w32,
            cand[None],
            l,
            y,
            lam_scale=lambda_scale(w32, 2 * n),
            lam_min=cfg.lam_min,
            alpha=cfg.alpha,
            lo=torch.tensor(BOX[0]).float(),
            hi=torch.tensor(BOX[1]).float(),
            norm=cfg.fit_norm,
        )
        check.check(0, cand[None], l, torch.tensor([cfg.alpha]))
        assert check.gap_too_large(fast_fit, torch.tensor([True])) == flagged


def _corrupt_after(start: int, corrupt) -> tuple[callable, list[int]]:
    """A loss function that is the exact float32 one for `start` calls, then `corrupt(loss, fit)`."""
    exact = loss_function(mixed=False, compiled=False)
    calls = [0]

    def fn(*args, **kwargs):
        loss, fit = exact(*args, **kwargs)
        calls[0] += 1
        return corrupt(loss, fit) if calls[0] > start else (loss, fit)

    return fn, calls


def test_the_fit_check_flags_a_corrupted_loss_and_falls_back_to_the_exact_path(trained) -> None:
    """From step 100 on the fast path reports (and optimises) half the fit: the first monitor point
    after that flags the run, which goes on from its best state on the exact path."""
    w, _ = trained
    cfg = AttackConfig(steps=300, eval_every=50)
    fn, _ = _corrupt_after(100, lambda loss, fit: (loss - 0.5 * fit, 0.5 * fit))
    out = reconstruct(w, 10, *BOX, cfg, seed=0, loss_fn=fn)
    assert out.fit_check_failed[0] and out.fallback_step == 100
    steps, exact_fit = out.curves["attack/fit_check"]
    fast_fit = out.curves["attack/kkt_fit"][1][0]
    after = (steps > 100) & (steps < len(fast_fit))
    # after the fallback the fit the steps use is the float64 one again (float32 rounding apart)
    np.testing.assert_allclose(fast_fit[steps[after]], exact_fit[0, after], rtol=1e-4)
    assert exact_fit[0, -1] < exact_fit[0, steps == 100][0]  # and the attack kept improving
    # a sound run is never flagged
    clean = reconstruct(w, 10, *BOX, cfg, seed=0)
    assert not clean.fit_check_failed[0] and clean.fallback_step == -1


def test_a_degrading_attack_is_neither_converged_nor_returned_at_its_last_state(trained) -> None:
    """From step 150 on the optimiser climbs the fit (it reports the true fit, so the check passes):
    the run ends far worse than its best. It is flagged degraded, not converged, and the candidates
    returned are those of its best monitor point."""
    w, _ = trained
    cfg = AttackConfig(steps=400, eval_every=50, stop_window=100, stop_tol=0.5)
    fn, _ = _corrupt_after(150, lambda loss, fit: (-loss, fit))
    out = reconstruct(w, 10, *BOX, cfg, seed=0, loss_fn=fn)
    steps, objective = out.curves["attack/objective"]
    assert not out.fit_check_failed[0]
    assert out.degraded[0] and not out.converged[0]
    assert out.best_step[0] <= 150 and objective[0, -1] > 2 * objective[0].min()
    assert out.objective[0] <= objective[0].min() * (1 + cfg.degrade_tol)  # the latest state near the best
    # the returned candidates are the best state's: re-scoring them gives the best objective
    x = torch.tensor(out.x[0], dtype=torch.float64)
    lam = torch.tensor(out.lam[0], dtype=torch.float64)
    y = torch.tensor(np.where(np.arange(20) < 10, -1.0, 1.0))
    w64 = w.to(torch.float64)
    fit = float(kkt_fit(w64, x, lam * y, cfg.alpha, method="explicit", norm=cfg.fit_norm))
    kept = int(np.flatnonzero(steps == out.best_step[0])[0])
    assert fit == pytest.approx(out.curves["attack/fit_check"][1][0, kept], rel=1e-6)
    # the same run without the corruption converges (same loose tolerance) and is not degraded
    clean = reconstruct(w, 10, *BOX, cfg, seed=0)
    assert clean.converged[0] and not clean.degraded[0] and clean.best_step[0] == 400


def test_bfloat16_tracks_float32_and_passes_its_check(trained) -> None:
    """The bf16 path (explicit residual) on a short attack: never flagged, and its float64-checked
    objective follows float32's (rounding moves when the objective drops, not where it ends)."""
    w, _ = trained
    runs = {
        dtype: reconstruct(w, 10, *BOX, AttackConfig(steps=400, eval_every=50, dtype=dtype), seed=0)
        for dtype in ("float32", "bfloat16")
    }
    assert not any(r.fit_check_failed[0] for r in runs.values())
    f32, bf16 = (runs[k].curves["attack/objective"][1][0] for k in ("float32", "bfloat16"))
    assert np.abs(bf16 - f32).max() < 0.02  # of an objective that starts at ~1
    assert bf16[-1] < 0.1 * bf16[0] and f32[-1] < 0.1 * f32[0]
    layers = [k for k in runs["bfloat16"].curves if k.startswith("attack/kkt_fit_layer")]
    assert layers == ["attack/kkt_fit_layer1", "attack/kkt_fit_layer2"]


@pytest.mark.parametrize(
    "key, value",
    [
        ("attack.fit_check_tol", "0"),
        ("attack.degrade_tol", "-1"),
        ("attack.warmup", "-1"),
        ("attack.alpha_final", "-5"),
        ("attack.fit_norm", "layers"),
        ("attack.schedule", "linear"),
    ],
)
def test_bad_soundness_settings_name_the_key(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        apply_overrides(RunConfig(data=BlobData()), {key: value})
