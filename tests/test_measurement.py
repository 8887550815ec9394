"""Trustworthy measurement: the SSIM of the reference code, fair scores, distinct and disjoint data, and a
memorisation test that can be recomputed from the logged arrays alone."""

from __future__ import annotations

import numpy as np
import pytest

from bench.analysis.memorisation import auc, memorisation, tpr_at_fpr
from bench.config import EvalConfig
from bench.data.split import InfeasibleData, distinct_index, drop_overlap, overlap_counts, split_pool
from bench.evaluate import Scorer, ssim_batch


def _ssim_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """Pixel-by-pixel SSIM with a 3x3 Gaussian window (sigma 1.5) and reflect padding: an independent
    loop implementation of kornia's formula (C1 = 1e-4, C2 = 9e-4)."""
    t = np.exp(-np.array([1.0, 0.0, 1.0]) / (2 * 1.5**2))
    w = np.outer(t, t) / np.outer(t, t).sum()
    pa, pb = np.pad(a, 1, mode="reflect"), np.pad(b, 1, mode="reflect")
    vals = []
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            wa, wb = pa[i : i + 3, j : j + 3], pb[i : i + 3, j : j + 3]
            ma, mb = (w * wa).sum(), (w * wb).sum()
            va, vb = (w * wa * wa).sum() - ma**2, (w * wb * wb).sum() - mb**2
            cov = (w * wa * wb).sum() - ma * mb
            num = (2 * ma * mb + 1e-4) * (2 * cov + 9e-4)
            vals.append(num / ((ma**2 + mb**2 + 1e-4) * (va + vb + 9e-4) + 1e-12))
    return float(np.mean(vals))


def test_ssim_matches_an_independent_loop_and_kornia() -> None:
    rng = np.random.default_rng(7)
    a = rng.random((3, 8, 8))
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1)
    got = ssim_batch(a, b)
    assert got == pytest.approx([_ssim_by_hand(x, y) for x, y in zip(a, b, strict=True)], abs=1e-12)
    # kornia 0.6.8 (Haim et al.'s pinned version), kornia.metrics.ssim(a, b, 3).mean() on these inputs
    assert got == pytest.approx([0.78780424, 0.85716714, 0.79905335], abs=1e-6)


def _square(r: int, c: int, side: int = 10) -> np.ndarray:
    img = np.zeros((28, 28))
    img[r : r + side, c : c + side] = 1.0
    return img.ravel()


def test_a_faithful_noisy_copy_beats_an_unrelated_sample_of_its_class() -> None:
    """The bias the issue found: with exact zeros, DSSIM prefers an unrelated binary square of the same
    class to a faithful but noisy reconstruction. Every other logged score prefers the faithful copy."""
    rng = np.random.default_rng(0)
    train = np.stack([_square(2, 2), _square(15, 3)])
    y = np.array([1.0, 1.0])
    faithful = np.clip(train + 0.12 * rng.standard_normal(train.shape), -0.3, 1.3)
    unrelated = np.stack([_square(16, 16), _square(3, 15)])  # same class (one 10x10 square), elsewhere
    scorer = Scorer(train, y, (28, 28), EvalConfig(), 0.0, 1.0)
    ours, _ = scorer.scores(faithful, per_class=False)
    theirs, _ = scorer.scores(unrelated, per_class=False)
    assert ours["corr_mean"] > 0.85 > 0.3 > theirs["corr_mean"]
    for lower_is_better in ("ncc_dist_mean", "l2_mean", "l2_255_mean", "mae_mean"):
        assert ours[lower_is_better] < theirs[lower_is_better], lower_is_better
    # documented exception (docs/metrics.md): the exact-zero windows of the binary square win under DSSIM
    assert ours["dssim_mean"] > theirs["dssim_mean"]


def test_split_pool_is_distinct_and_disjoint_and_names_the_fix() -> None:
    rng = np.random.default_rng(1)
    base = (rng.random((5, 16)) < 0.3).astype(float)
    pool = np.concatenate([base, 3 * base + 1, base[:2]])  # brightened copies are the same image
    assert len(distinct_index(pool)) == 5
    tr, te = split_pool(pool, 3, 10, rng, "toy class")
    assert len(set(tr) | set(te)) == 5 and not set(tr) & set(te)
    with pytest.raises(InfeasibleData, match=r"toy class has 5 distinct .*fix: --set data.n_per_class=4"):
        split_pool(pool, 5, 1, rng, "toy class")


def test_overlap_is_counted_and_dropped() -> None:
    x = np.eye(4)
    test = np.stack([x[0], 2 * x[1], np.ones(4) * 0.5 + x[2] * 0.1, np.array([1.0, 1, 0, 0])])
    counts = overlap_counts(x, test)
    assert counts == {"data/n_train_distinct": 4.0, "data/n_heldout": 4.0, "data/heldout_overlap": 3.0}
    kept, _, dropped = drop_overlap(x, test, np.ones(4))
    assert dropped == 3 and len(kept) == 1


def test_auc_and_tpr_against_known_answers() -> None:
    assert auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert auc(np.array([0.5]), np.array([0.5])) == 0.5
    assert auc(np.array([0.1, 0.4]), np.array([0.2, 0.3])) == 0.5
    pos, neg = np.arange(10) / 10, np.arange(10) / 10 + 0.35
    # threshold 0.4 admits 1 negative of 10 (0.35: fpr 0.1) and the positives 0.0..0.4 (tpr 0.5)
    assert tpr_at_fpr(pos, neg, 0.1) == pytest.approx(0.5)


def test_memorisation_of_the_training_set_itself_is_total() -> None:
    rng = np.random.default_rng(2)
    train = rng.random((6, 20))
    y = np.repeat([-1.0, 1.0], 3)
    fresh_pool = rng.random((20, 20))
    m = memorisation(train, y, train, fresh_pool[:12], fresh_pool[12:18])
    assert m["memorised/frac"] == 1.0 and m["membership/auc"] == 1.0
    assert m["memorised/class0/frac"] == 1.0 and m["membership/tpr_at_fpr_0.1"] == 1.0
    # candidates that know only the distribution: no better than chance on average
    chance = memorisation(train, y, fresh_pool[:12], rng.random((12, 20)), rng.random((6, 20)))
    assert chance["memorised/frac"] < 1.0
