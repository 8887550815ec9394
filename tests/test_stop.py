"""The attack's stopping rule (`attack.stop=plateau`): fires on a plateau, not while the attack improves."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from blob_fixture import make_blob_classes

from bench.attack.kkt import Weights
from bench.attack.reconstruct import movement_window, plateau, reconstruct
from bench.config import AttackConfig, ModelConfig, RunConfig, TrainConfig, apply_overrides
from bench.errors import ConfigError
from bench.train import train_classifier

BOX = (-np.ones(784), np.ones(784))


@pytest.fixture(scope="module")
def weights() -> Weights:
    x, lab = make_blob_classes(np.random.default_rng(0), 5, 25, "rect")
    y = np.where(lab > 0, 1.0, -1.0)
    res = train_classifier(
        x - x.mean(0), y, ModelConfig(depth=2, width=100), TrainConfig(max_epochs=3000), seed=0
    )
    return Weights(tuple(res.model.weights()))


def test_plateau_rule_on_synthetic_curves() -> None:
    steps = np.arange(400)

    def curve(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return steps[: values.shape[1]], values

    # a flat objective; one still falling fast (by 0.1 of ||theta||^2 a window)
    flat = np.vstack([np.full(300, 2.0), 1.0 - steps[:300] / 1000])
    assert list(plateau(curve(flat), None, at=200, window=100, tol=0.01)) == [True, False]
    assert not plateau(curve(flat), None, at=50, window=100, tol=0.01).any()  # too early to judge
    # the objective's drop is measured relative to max(value, 1), as scipy's L-BFGS-B ftol: a fit of 0.003
    # falling by 1.5% a window (5e-5 of ||theta||^2) has converged; a fit falling by 0.02 has not, and an
    # objective above 1 is judged relative to itself (2.0 -> 1.97 is 1.5%)
    late = np.vstack(
        [0.003 * 0.985 ** (steps[:300] / 100), 0.5 - 0.0002 * steps[:300], 2.0 * 0.985 ** (steps[:300] / 100)]
    )
    assert list(plateau(curve(late), None, at=200, window=100, tol=0.01)) == [True, False, False]
    # floor 0 (attack.stop_floor=0) is the rule before 2026-12-04: relative to the objective alone
    assert list(plateau(curve(late), None, at=200, window=100, tol=0.01, floor=0.0)) == [False, False, False]
    # the error keeps its own scale: the same 1.5% a window of an error of 0.003 is still improving
    err = (steps[:300:100], np.array([[0.003, 0.003 * 0.985, 0.003 * 0.985**2]]))
    assert not plateau(curve(late[:1]), err, at=200, window=100, tol=0.01).any()
    # the objective is flat but the monitored error still falls by 20% over the window: not converged
    mon = (np.array([0, 100, 200]), np.array([[0.5, 0.5, 0.4], [0.5, 0.5, 0.5]]))
    assert list(plateau(curve(np.full((2, 300), 2.0)), mon, at=200, window=100, tol=0.01)) == [False, True]
    # a noisy objective that no longer improves on its best value has plateaued (whether the state is
    # at its best is the attack's `degraded` check, tested in tests/test_soundness.py)
    noisy = np.array([[1.0] * 100 + [0.5] + [0.6, 0.55] * 100])
    assert plateau(curve(noisy), None, at=300, window=100, tol=0.01).all()


def test_plateau_is_never_judged_against_the_random_start() -> None:
    """A window as long as the run leaves only step 0 before it: the rule then says nothing (False), for an
    attack that moved and then stopped as for one that never moved. (Before, it compared with the random
    start: on the quick profiles, 1,000 steps with a 1,000-step window, an attack that moved was never
    converged and one stuck at its start always was.) With the default window, a fifth of the steps, the
    same curves are judged on their last fifth."""
    steps = np.arange(0, 1001, 100)
    moved = np.r_[2.0, np.full(10, 1.0)]  # halved by step 100, flat after
    stuck = np.full(11, 2.0)
    curves = (steps, np.vstack([moved, stuck]))
    assert not plateau(curves, None, at=1000, window=1000, tol=0.01).any()
    assert not plateau(curves, None, at=1000, window=950, tol=0.01).any()  # only step 0 before the window
    window = AttackConfig(steps=1000).plateau_window()
    assert window == 200 and AttackConfig(steps=5000).plateau_window() == 1000
    assert plateau(curves, None, at=1000, window=window, tol=0.01).all()
    assert list(plateau(curves, None, at=200, window=window, tol=0.01)) == [False, False]  # too early


def test_rule_fires_early_on_a_toy_attack(weights: Weights) -> None:
    cfg = AttackConfig(steps=3000, eval_every=50, stop="plateau", stop_window=100, stop_tol=0.05)
    out = reconstruct(weights, 10, *BOX, cfg, seed=0)
    assert out.converged[0] and not out.diverged[0]
    assert out.steps_run[0] < 3000 and out.steps_run[0] % 50 == 0
    # stopped early, at a large step size: judged over the integral of the steps it ran, it holds too
    # (over the whole 3,000-step schedule's last fifth no monitor point would lie before the window)
    assert movement_window(cfg, int(out.steps_run[0])) < out.steps_run[0] < movement_window(cfg)
    assert out.converged_movement[0]
    fit = out.curves["attack/kkt_fit"][1][0]
    assert len(fit) == out.steps_run[0]  # the loop ended with the only setting
    assert fit[-1] < 0.5 * fit[0]


def test_rule_does_not_fire_while_improving(weights: Weights) -> None:
    cfg = AttackConfig(steps=200, eval_every=50, stop="plateau", stop_window=100, stop_tol=1e-3)
    out = reconstruct(weights, 10, *BOX, cfg, seed=0)
    assert not out.converged[0] and out.steps_run[0] == 200  # hit the cap: flagged unconverged
    assert out.curves["attack/kkt_fit"][1].shape == (1, 200)


def test_converged_setting_is_frozen_and_others_go_on(weights: Weights) -> None:
    """A setting whose candidates barely move (lr 1e-12) converges early (only its multipliers move, and
    their gain is spent in the first window); the other goes on to the cap exactly as it would alone."""
    # beta2 0.999 and tol 1e-3: with the default 0.99, or 1e-2 of ||theta||^2, the moving setting too has
    # plateaued by step 300 on this toy (its objective falls 0.063 -> 0.060 over the last 100 steps)
    cfg = AttackConfig(
        steps=300, eval_every=50, stop="plateau", stop_window=100, stop_tol=1e-3, dtype="float64", beta2=0.999
    )
    settings = [{"lr": 1e-12}, {"lr": 1e-2}]
    out = reconstruct(weights, 10, *BOX, cfg, seed=1, settings=settings)
    assert list(out.converged) == [True, False]
    stop = int(out.steps_run[0])
    assert stop < 300 and stop % 50 == 0 and out.steps_run[1] == 300
    fit = out.curves["attack/kkt_fit"][1]
    assert fit.shape == (2, 300) and np.all(fit[0, stop:] == fit[0, stop])  # frozen
    alone = reconstruct(weights, 10, *BOX, cfg, seed=1, settings=[settings[1]])
    np.testing.assert_allclose(out.x[1], alone.x[0], rtol=1e-9, atol=1e-12)


def test_monitor_error_keeps_the_attack_going(weights: Weights) -> None:
    """With a monitored error that keeps falling, a flat-enough fit alone does not stop the attack."""
    cfg = AttackConfig(steps=600, eval_every=50, stop="plateau", stop_window=100, stop_tol=0.5)

    def falling(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"attack/error": np.full(len(x), np.exp(-step / 50))}  # -86% per window

    def constant(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"attack/error": np.full(len(x), 0.3)}

    keeps = reconstruct(weights, 10, *BOX, cfg, seed=0, monitor=falling)
    stops = reconstruct(weights, 10, *BOX, cfg, seed=0, monitor=constant)
    assert keeps.steps_run[0] == 600 and not keeps.converged[0]
    assert stops.steps_run[0] < 600 and stops.converged[0]
    assert stops.curves["attack/error"][0][-1] == stops.steps_run[0]


def test_stop_none_runs_all_steps_and_still_reports(weights: Weights) -> None:
    cfg = AttackConfig(steps=400, eval_every=50, stop_window=100, stop_tol=0.5)
    out = reconstruct(weights, 10, *BOX, cfg, seed=0)
    assert out.steps_run[0] == 400 and out.curves["attack/loss"][1].shape == (1, 400)
    assert out.converged[0]  # the rule, applied at the last step with a loose tolerance, holds


def test_movement_window_spans_the_last_fifth_of_the_step_size_integral() -> None:
    assert movement_window(AttackConfig(steps=1000, schedule="constant", warmup=0)) == 200
    assert movement_window(AttackConfig(steps=1000)) == 484  # cosine, 100 steps of warm-up
    assert movement_window(AttackConfig(steps=5000)) == 2555
    # x0.1 from step 666: 33.4 of the tail's 139.9 lie after it, the rest in the 106 steps before
    assert movement_window(AttackConfig(steps=1000, schedule="step", warmup=0)) == 440


def test_the_movement_flag_sees_an_attack_that_settled_only_as_its_step_size_decayed(
    weights: Weights,
) -> None:
    """A fixed 400-step attack whose error keeps falling until its cosine step size has decayed: the
    default window (the last 80 steps, ~1.6% of the step-size integral) calls it converged, the window
    over the last fifth of the integral (194 steps) does not. With a constant step size and no warm-up
    the two windows are one, and so are the flags."""

    def falling(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        return {"attack/error": np.full(len(x), 1.0 - 0.5 * min(step, 300) / 300)}  # flat from 300

    cfg = AttackConfig(steps=400, eval_every=20, stop_tol=0.1)
    out = reconstruct(weights, 10, *BOX, cfg, seed=0, monitor=falling)
    assert out.converged[0] and not out.converged_movement[0]
    flat = dataclasses.replace(cfg, schedule="constant", warmup=0)
    out = reconstruct(weights, 10, *BOX, flat, seed=0, monitor=falling)
    assert out.converged[0] == out.converged_movement[0]


def test_stop_config_is_checked() -> None:
    from bench.tasks.blobs import BlobData

    cfg = apply_overrides(RunConfig(data=BlobData()), {"attack.stop": "plateau", "attack.stop_window": "500"})
    assert cfg.attack.stop == "plateau" and cfg.attack.stop_window == 500
    bad = (
        ("attack.stop", "early"),
        ("attack.stop_tol", "-1"),
        ("attack.stop_window", "-1"),
        ("attack.stop_floor", "-1"),
    )
    for key, value in bad:
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            apply_overrides(RunConfig(data=BlobData()), {key: value})
    # a window as long as the run is refused, naming the key and the fix
    with pytest.raises(ConfigError, match=r"'attack\.stop_window'.*fix: --set attack\.stop_window=0"):
        apply_overrides(RunConfig(data=BlobData()), {"attack.steps": "1000", "attack.stop_window": "1000"})
    cfg = apply_overrides(RunConfig(data=BlobData()), {"attack.steps": "1000"})
    assert cfg.attack.stop_window == 0 and cfg.attack.plateau_window() == 200
