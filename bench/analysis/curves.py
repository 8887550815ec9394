"""Steadiness of monitor curves and collapse of reconstructions to the class mean (paper sec. 4.1, fig 3).

Definitions (lower DSSIM / L2 is better throughout):

* **Steadiness** of a monitor curve v_1..v_T (e.g. `attack/dssim_mean` measured every `attack.eval_every`
  steps; the point at step 0, the random initialisation, is left out because its drop would dwarf every
  later wiggle): (max v - min v) / sum |v_t+1 - v_t|, the share of the curve's total movement that is net
  progress across its range: 1 for a monotone curve, towards 0 for a zig-zag (a flat curve counts as 1).
  **Worsening**: the fraction of monitor intervals in which the curve goes up (gets worse). Both are
  scale-free, so DSSIM and L2 can be compared directly.
* **Collapse to the class mean** (`collapse/class0`, `collapse/class1`): for the training images of a class,
  take each one's matched reconstruction; in the evaluation scale (`bench.evaluate.rescale`: per-image
  min-max by default, as every score), `collapse/classK` = mean L2 distance of those reconstructions to the
  class's training-mean image / mean L2 distance of the class's training images to that same mean image.
  Near 0: the reconstructions sit on the class mean (the paper's BreastMNIST observation); near 1: they are
  as far from the mean as real images are; > 1: further away than real images (typically noise).
  `collapse/classK_frac_mean` = the fraction of those reconstructions that correlate better with the
  class-mean image than with the training image they are matched to.
"""

from __future__ import annotations

import numpy as np


def steadiness(values: np.ndarray, skip_first: bool = True) -> float:
    """(max - min) / total variation of a curve (T,): 1 = monotone, towards 0 = zig-zag; NaN under 2 points.

    `skip_first` drops the first point (the initialisation) when the curve has more than 2 points;
    non-finite points are dropped.
    """
    v = _curve(values, skip_first)
    if len(v) < 2:
        return float("nan")
    tv = float(np.abs(np.diff(v)).sum())
    return 1.0 if tv == 0 else float((v.max() - v.min()) / tv)


def worsening(values: np.ndarray, skip_first: bool = True) -> float:
    """Fraction of monitor intervals in which a lower-is-better curve (T,) goes up; NaN under 2 points."""
    v = _curve(values, skip_first)
    if len(v) < 2:
        return float("nan")
    return float((np.diff(v) > 0).mean())


def _curve(values: np.ndarray, skip_first: bool) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    v = v[1:] if skip_first and len(v) > 2 else v
    return v[np.isfinite(v)]


def collapse_ratios(
    x_train: np.ndarray,
    y_train: np.ndarray,
    recon_matched: np.ndarray,
    mode: str = "minmax",
    lo: float | np.ndarray = 0.0,
    hi: float | np.ndarray = 1.0,
) -> dict[str, float]:
    """`collapse/classK` and `collapse/classK_frac_mean` (see the module docstring).

    x_train (n, d) and recon_matched (n, d), row i the reconstruction matched to training sample i, both in
    the data scale; y_train (n,) in {-1, +1} (class 0 is -1) or class indices; `mode`, `lo`, `hi` as `bench.evaluate.rescale`.
    A class absent from y_train is left out; a class whose training images all equal its mean gives NaN.
    """
    from bench.data.base import class_groups
    from bench.evaluate import correlation, rescale

    train_s = rescale(x_train, mode, lo, hi)
    recon_s = rescale(recon_matched, mode, lo, hi)
    out: dict[str, float] = {}
    for cls, value in class_groups(y_train):
        mask = np.asarray(y_train) == value
        mean_s = rescale(x_train[mask].mean(axis=0, keepdims=True), mode, lo, hi)
        d_rec = np.linalg.norm(recon_s[mask] - mean_s, axis=1).mean()
        d_tr = np.linalg.norm(train_s[mask] - mean_s, axis=1).mean()
        out[f"collapse/class{cls}"] = float(d_rec / d_tr) if d_tr > 0 else float("nan")
        c_mean = correlation(recon_s[mask], mean_s)[:, 0]
        c_own = np.sum(_standardise(recon_s[mask]) * _standardise(train_s[mask]), axis=1) / train_s.shape[1]
        out[f"collapse/class{cls}_frac_mean"] = float((c_mean > c_own).mean())
    return out


def _standardise(v: np.ndarray) -> np.ndarray:
    v = v - v.mean(axis=1, keepdims=True)
    sd = v.std(axis=1, keepdims=True)
    return v / np.where(sd > 0, sd, 1.0)
