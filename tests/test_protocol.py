"""The reference's protocol: settings drawn from a sweep distribution, candidates pooled and matched as one."""

from __future__ import annotations

import numpy as np
import pytest

from bench.attack.protocol import DISTRIBUTIONS, draw_settings, extraction_score, select
from bench.experiment import resolve_config, run_experiment
from bench.tasks import get_task


def test_draws_are_reproducible_and_inside_their_ranges() -> None:
    for dist, ranges in DISTRIBUTIONS.items():
        a, b = draw_settings(dist, 50, seed=3), draw_settings(dist, 50, seed=3)
        assert a == b and a != draw_settings(dist, 50, seed=4)
        for key, (scale, low, high) in ranges.items():
            values = np.array([s[key] for s in a])
            assert values.min() >= low and values.max() <= high
            if scale == "log":  # log-uniform: about half the draws below the geometric middle
                assert 0.3 < np.mean(values < np.sqrt(low * high)) < 0.7


def test_extraction_score_and_selection() -> None:
    assert extraction_score(np.arange(20.0, 0.0, -1.0), k=10) == pytest.approx(5.5)
    assert list(select(np.array([0.3, np.nan, 0.1, np.inf, 0.2]), keep=2)) == [2, 4]
    assert list(select(np.array([0.3, np.nan, 0.1]), keep=0)) == [2, 0]


def test_a_pooled_run_matches_the_union_of_the_chosen_settings() -> None:
    """Each training sample takes its nearest candidate from the union, so the pooled distance is at most
    every chosen member's; both selections are logged, the pool has m candidates per chosen setting."""
    task = get_task("blobs-rect")
    cfg = resolve_config(
        task, "smoke", {"attack.pool": 3, "attack.pool_keep": 2, "attack.steps": 100}, 25, seed=0
    )
    from bench.attack.protocol import draw_settings as draw

    settings = draw(cfg.attack.pool_dist, cfg.attack.pool, cfg.seed)
    res = run_experiment(cfg, settings)
    pooled = res.pooled
    assert pooled is not None and len(res.settings) == 3
    m = len(res.y_candidates)
    assert pooled.metrics["attack/pool_size"] == 2 * m and len(pooled.recon) == 2 * m
    kkt = select(_relu(res), keep=2)
    for p in kkt:
        assert np.all(pooled.distance <= res.settings[p].distance + 1e-12)
    assert pooled.metrics["ncc_dist_mean"] <= min(res.settings[p].metrics["ncc_dist_mean"] for p in kkt)
    for mode in ("kkt", "oracle"):
        assert f"pool/{mode}/ncc_dist_mean" in pooled.metrics
    assert pooled.metrics["pool/kkt/ncc_dist_mean"] == pytest.approx(pooled.metrics["ncc_dist_mean"])


def _relu(res) -> np.ndarray:
    """The settings' float64 objective with the true ReLU derivative, as the kkt selection reads it."""
    return np.array([s.metrics["attack/objective_relu"] for s in res.settings])
