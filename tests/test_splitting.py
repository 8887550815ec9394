"""Sample splitting (bench.attack.splitting): the curvature its power iteration finds predicts the drop of the
fit when a candidate is split, and the attack loop runs with it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.attack.kkt import Weights, kkt_fit
from bench.attack.splitting import top_eigenpairs
from bench.attack.truth import layer_weights


def test_the_top_eigenpair_predicts_the_drop_of_the_fit_when_a_candidate_splits() -> None:
    g = torch.Generator().manual_seed(0)
    d, h, m = 6, 15, 5
    w = Weights(
        (
            torch.randn(h, d, generator=g, dtype=torch.float64),
            torch.randn(1, h, generator=g, dtype=torch.float64),
        ),
        torch.randn(h, generator=g, dtype=torch.float64) * 0.2,
    )
    x = torch.randn(1, m, d, generator=g, dtype=torch.float64)
    c = torch.tensor([[0.7, -0.4, 0.9, -0.3, 0.5]], dtype=torch.float64)
    alpha = torch.full((1, 1, 1), 3.0, dtype=torch.float64)
    from bench.attack.kkt import gradient_sums

    grads, bias = gradient_sums(w, x, c, alpha)
    resid = [mat - gr for mat, gr in zip(w.mats, grads, strict=True)] + [w.bias - bias]
    wl = layer_weights(w.layer_sq_norms(), "layer")
    top, v = top_eigenpairs(w, x, c, alpha, resid, wl, iters=200)
    i = int(top[0].argmax())
    assert top[0, i] > 0
    eps = 1e-3
    split_x = torch.cat([x, (x[:, i] - eps * v[:, i])[:, None]], 1)
    split_x[:, i] = x[:, i] + eps * v[:, i]
    split_c = torch.cat([c, c[:, i : i + 1] / 2], 1)
    split_c[:, i] = c[:, i] / 2
    before = float(kkt_fit(w, x, c, alpha, "explicit", norm="layer"))
    after = float(kkt_fit(w, split_x, split_c, alpha, "explicit", norm="layer"))
    assert (before - after) / (eps**2 * float(top[0, i])) == pytest.approx(1.0, rel=1e-2)


def test_the_attack_runs_with_splitting_and_never_keeps_a_split_that_raised_the_objective() -> None:
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    g = torch.Generator().manual_seed(1)
    w = Weights((torch.randn(20, 12, generator=g) * 0.3, torch.randn(1, 20, generator=g)))
    cfg = AttackConfig(steps=60, eval_every=10, split_every=20, split_frac=0.25, dtype="float64")
    out = reconstruct(w, 4, -np.ones(12), np.ones(12), cfg, seed=0, settings=[{}, {"lr": 0.01}])
    assert out.split_count is not None and out.split_count.shape == (2,)
    assert np.isfinite(out.objective).all()
