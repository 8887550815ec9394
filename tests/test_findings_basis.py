"""What the findings lean on: margin normalisation, the baselines' samples, and Scorer's per-class,
top-k and fraction metrics, each against a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.analysis.baselines import heldout_sets, mean_image, random_candidates
from bench.attack.kkt import Weights, forward_signals
from bench.config import EvalConfig
from bench.evaluate import Scorer
from bench.experiment import attack_and_evaluate, prepare, resolve_config
from bench.tasks import get_task


def _weights(bias: bool) -> Weights:
    g = torch.Generator().manual_seed(0)
    mats = (
        torch.randn(7, 5, generator=g, dtype=torch.float64),
        torch.randn(1, 7, generator=g, dtype=torch.float64),
    )
    return Weights(mats, torch.randn(7, generator=g, dtype=torch.float64) if bias else None)


@pytest.mark.parametrize("bias", [False, True])
def test_margin_normalisation_makes_the_smallest_margin_one(bias: bool) -> None:
    w = _weights(bias)
    x = torch.randn(9, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    phi = forward_signals(w, x, 100.0)[0]
    y = torch.sign(phi)  # labels the network separates: every margin y phi > 0
    q = float((y * phi).min())
    phi_n = forward_signals(w.margin_normalized(q), x, 100.0)[0]
    assert float((y * phi_n).min()) == pytest.approx(1.0, rel=1e-12)
    # homogeneity: every output scales by the same factor 1 / q
    assert torch.allclose(phi_n, phi / q, rtol=1e-12)


def test_a_non_positive_smallest_margin_leaves_the_weights_alone() -> None:
    w = _weights(False)
    for q in (0.0, -0.3):
        same = w.margin_normalized(q)
        assert all(torch.equal(a, b) for a, b in zip(same.mats, w.mats, strict=True))


def test_normalize_none_attacks_the_weights_as_trained() -> None:
    task = get_task("blobs-rect")
    sets = {"data.n_per_class": 3, "model.width": 30, "attack.steps": 2, "attack.eval_every": 1}
    prep = prepare(resolve_config(task, "smoke", sets, 4))
    for mode, expected in (("margin", 1.0), ("none", 0.0)):
        cfg = resolve_config(task, "smoke", sets | {"attack.normalize": mode}, 4)
        assert attack_and_evaluate(prep, cfg).train_metrics["normalized"] == expected


def test_heldout_sets_are_balanced_disjoint_and_short_when_a_class_is() -> None:
    x = np.arange(30, dtype=float)[:, None] * np.ones((1, 4))
    y = np.repeat([-1.0, 1.0], [20, 10])
    held = heldout_sets(x, y, m=12, n=8, rng=np.random.default_rng(0))
    assert (held.y == -1).sum() == 6 and (held.y == 1).sum() == 6
    assert (held.fresh_y == -1).sum() == 4 and (held.fresh_y == 1).sum() == 4
    rows = [tuple(r) for r in np.concatenate([held.x, held.fresh_x])]
    assert len(set(rows)) == len(rows) == 20  # disjoint
    short = heldout_sets(x, y, m=12, n=12, rng=np.random.default_rng(0))
    assert (short.fresh_y == 1).sum() == 4  # class +1 has 10: 6 held out, 4 left for fresh
    mean = np.full(4, 0.5)
    rand = random_candidates(mean, np.ones((3, 4)), 1e-3)
    assert np.allclose(rand, 0.501) and mean_image(mean).shape == (1, 4)


def _square(r: int, c: int) -> np.ndarray:
    img = np.zeros((12, 12))
    img[r : r + 4, c : c + 4] = 1.0
    return img.ravel()


def test_scorer_per_class_top_k_and_fraction_against_known_answers() -> None:
    train = np.stack([_square(0, 0), _square(6, 6), _square(0, 7), _square(7, 0)])
    y = np.array([-1.0, -1.0, 1.0, 1.0])
    rng = np.random.default_rng(3)
    cands = np.stack([train[0], train[1], rng.random(144), rng.random(144)])  # class 0 copied exactly
    m, _ = Scorer(train, y, (12, 12), EvalConfig(top_k=2), 0.0, 1.0).scores(cands)
    assert m["class0/ssim_mean"] == pytest.approx(1.0, abs=1e-5)
    assert m["dssim_topk"] == pytest.approx(0.0, abs=1e-5)  # the two exact copies
    assert m["ssim_gt_0.4/count"] == 2 and m["ssim_gt_0.4/frac"] == 0.5
    assert m["class0/ssim_gt_0.4/frac"] == 1.0 and m["class1/ssim_gt_0.4/frac"] == 0.0
    assert abs(m["class0/ncc_dist_mean"]) < 1e-12 and m["class1/ncc_dist_mean"] > 0.5
    assert m["ncc_dist_mean"] == pytest.approx((m["class0/ncc_dist_mean"] + m["class1/ncc_dist_mean"]) / 2)
