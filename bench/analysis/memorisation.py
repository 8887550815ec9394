"""The attack's advantage over "any sample of the distribution": a memorisation and a membership test.

Distances are `1 - NCC` (normalised cross-correlation of the pair, see `bench.evaluate.correlation`).
The experiment passes *centred* samples (x - training mean, the space the model and the attack work in):
Haim et al.'s protocol adds the training mean back to reconstructions for viewing, and that mean, a
training statistic, already matches training samples better than fresh samples do at small n (measured:
mean + noise candidates scored memorised/frac ~0.9 and AUC 1.0 at 6 images per class in data space).

- Memorisation (after Cohen et al. 2024, arXiv 2405.15753): for each training sample i,
  d_att(i) = distance to its nearest candidate (reconstruction), d_fresh(i) = distance to its nearest
  held-out sample, the held-out set as large as the candidate set. `memorised/frac` = mean over training
  samples of [d_att(i) < d_fresh(i)], also per class (`class0` = y -1, `class1` = y +1; `class{c}` for
  class indices c). Chance: a
  candidate set that knows only the distribution beats an equally large fresh set about half the time.
- Membership: every training sample and as many further fresh samples (not those above) are scored by
  their distance to the nearest candidate; training samples are positives, a smaller distance means
  member. `membership/auc` (0.5 = chance, ties count half) and `membership/tpr_at_fpr_0.1` (the largest
  true-positive rate at a false-positive rate <= 0.1, as arXiv 2505.14323 recommends over averages).
"""

from __future__ import annotations

import numpy as np

from bench.data.base import class_groups
from bench.evaluate import correlation


def nearest_distance(x: np.ndarray, cands: np.ndarray) -> np.ndarray:
    """(n,) distance 1 - NCC of every row of x (n, d) to its nearest row of cands (k, d)."""
    return 1.0 - correlation(x, cands).max(axis=1)


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """Probability that a positive scores lower (closer) than a negative, ties counting half."""
    pos, neg = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(((pos < neg) + 0.5 * (pos == neg)).mean())


def tpr_at_fpr(pos: np.ndarray, neg: np.ndarray, fpr: float = 0.1) -> float:
    """Largest TPR over thresholds t (member iff distance <= t) whose FPR is <= fpr."""
    best = 0.0
    for t in np.unique(np.concatenate([pos, neg])):
        if (neg <= t).mean() <= fpr:
            best = max(best, float((pos <= t).mean()))
    return best


def memorisation(
    train: np.ndarray,
    train_y: np.ndarray,
    cands: np.ndarray,
    heldout: np.ndarray,
    fresh: np.ndarray,
    d_fresh: np.ndarray | None = None,
) -> dict[str, float]:
    """Memorisation and membership metrics of one candidate set (see the module docstring).

    train (n, d) with labels train_y (n,) in {-1, +1} or class indices; cands (m, d); heldout (k, d), k ideally = m;
    fresh (n', d), n' ideally = n. All in the same (compared) scale. `d_fresh`: (n,)
    `nearest_distance(train, heldout)` when the caller already has it (it does not depend on cands).
    """
    d_att = nearest_distance(train, cands)
    d_fresh = nearest_distance(train, heldout) if d_fresh is None else d_fresh
    won = d_att < d_fresh
    out = {"memorised/frac": float(won.mean())}
    for cls, value in class_groups(train_y):
        out[f"memorised/class{cls}/frac"] = float(won[train_y == value].mean())
    if len(fresh):
        d_neg = nearest_distance(fresh, cands)
        out["membership/auc"] = auc(d_att, d_neg)
        out["membership/tpr_at_fpr_0.1"] = tpr_at_fpr(d_att, d_neg, 0.1)
    return out
