"""Match reconstructions to training samples and score them; baselines that give the scores meaning.

Protocol (after Haim et al., documented choices marked *):
1. Reconstructions are brought to the data's own scale: x + training mean (the centring the model saw).
2. Rescaling (`EvalConfig.rescale`): "minmax" maps each image to [0, 1] by its own min and max (Haim et
   al.; a constant image maps to 0); "clip" clips to the data range (tabular data, compared as is).
3. Each training sample's nearest candidate is the one of highest normalised cross-correlation
   (per-sample standardised dot product / d), so one candidate may match several training samples.
4. For each such pair: SSIM (scikit-image `structural_similarity`, uniform window `ssim_window`*,
   `data_range` = 1 after min-max or the data range after clipping), DSSIM = (1 - SSIM) / 2, L2 = the
   Euclidean norm of the difference, MAE = its mean absolute value, and the correlation.
   scikit-image's SSIM crops (window - 1) / 2 pixels at the borders; it is not kornia's window-3 score of
   the reference code, which pads: values differ slightly*.
Summary: means over training samples (`*_mean`), the mean of the `top_k` best DSSIMs (`dssim_topk`, the
reference code's score), the count and fraction with SSIM > threshold, the best correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import structural_similarity

from bench.config import EvalConfig


@dataclass
class Match:
    """Per training sample (n,): index of its nearest candidate and the pair's scores."""

    index: np.ndarray
    corr: np.ndarray
    l2: np.ndarray
    mae: np.ndarray
    ssim: np.ndarray | None


def rescale(
    x: np.ndarray, mode: str, lo: np.ndarray | float = 0.0, hi: np.ndarray | float = 1.0
) -> np.ndarray:
    """(k, d) samples in the data scale -> the scale they are compared in (see module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if mode == "clip":
        return np.clip(x, lo, hi)
    mn, mx = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
    span = np.where(mx - mn > 0, mx - mn, 1.0)
    return (x - mn) / span


def correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Normalised cross-correlation of every row of a (n, d) with every row of b (k, d): (n, k)."""

    def standardise(v: np.ndarray) -> np.ndarray:
        v = v - v.mean(axis=1, keepdims=True)
        sd = v.std(axis=1, keepdims=True)
        return v / np.where(sd > 0, sd, 1.0)

    return standardise(a) @ standardise(b).T / a.shape[1]


def ssim(a: np.ndarray, b: np.ndarray, window: int = 3, data_range: float = 1.0) -> float:
    """SSIM of two images (h, w) with a uniform `window` x `window` window."""
    return float(structural_similarity(a, b, win_size=window, data_range=data_range, gaussian_weights=False))


def match(
    train: np.ndarray,
    cands: np.ndarray,
    image_shape: tuple[int, int] | None,
    cfg: EvalConfig,
    data_range: float,
) -> Match:
    """Nearest candidate of each training sample; both (n, d) / (k, d) already rescaled."""
    corr = correlation(train, cands)
    index = corr.argmax(axis=1)
    best = cands[index]
    diff = train - best
    ssims = None
    if image_shape is not None:
        ssims = np.array(
            [
                ssim(t.reshape(image_shape), r.reshape(image_shape), cfg.ssim_window, data_range)
                for t, r in zip(train, best, strict=True)
            ]
        )
    return Match(
        index=index,
        corr=corr[np.arange(len(train)), index],
        l2=np.linalg.norm(diff, axis=1),
        mae=np.abs(diff).mean(axis=1),
        ssim=ssims,
    )


def summarise(mt: Match, cfg: EvalConfig, mask: np.ndarray | None = None) -> dict[str, float]:
    """Summary metrics of a match (over the training samples selected by `mask`)."""
    sel = np.ones(len(mt.index), dtype=bool) if mask is None else mask
    out = {
        "l2_mean": float(mt.l2[sel].mean()),
        "mae_mean": float(mt.mae[sel].mean()),
        "mae_std": float(mt.mae[sel].std()),
        "corr_mean": float(mt.corr[sel].mean()),
        "corr_max": float(mt.corr[sel].max()),
        "one_minus_corr": float(1.0 - mt.corr[sel].mean()),
    }
    if mt.ssim is not None:
        s = mt.ssim[sel]
        dssim = (1.0 - s) / 2.0
        out.update(
            ssim_mean=float(s.mean()),
            dssim_mean=float(dssim.mean()),
            dssim_topk=float(np.sort(dssim)[: cfg.top_k].mean()),
            n_reconstructed=float((s > cfg.ssim_threshold).sum()),
            frac_reconstructed=float((s > cfg.ssim_threshold).mean()),
        )
    return out


@dataclass
class Evaluation:
    """Scores of the attack and its baselines. metrics: flat dict ready to log (see `Scorer.evaluate`)."""

    metrics: dict[str, float]
    match: Match


class Scorer:
    """Scores candidate sets against one training set, rescaled once.

    train_x (n, d) and candidates in the data's own scale; train_y (n,) in {-1, +1}.
    """

    def __init__(
        self,
        train_x: np.ndarray,
        train_y: np.ndarray,
        image_shape: tuple[int, int] | None,
        cfg: EvalConfig,
        lo: np.ndarray | float,
        hi: np.ndarray | float,
    ) -> None:
        self.train_y, self.image_shape, self.cfg, self.lo, self.hi = train_y, image_shape, cfg, lo, hi
        self.train_s = rescale(train_x, cfg.rescale, lo, hi)
        self.data_range = 1.0 if cfg.rescale == "minmax" else float(np.max(np.asarray(hi) - np.asarray(lo)))

    def match(self, cands_x: np.ndarray) -> Match:
        """Each training sample's nearest candidate (k, d) and the pair's scores."""
        cands_s = rescale(cands_x, self.cfg.rescale, self.lo, self.hi)
        return match(self.train_s, cands_s, self.image_shape, self.cfg, self.data_range)

    def scores(self, cands_x: np.ndarray, per_class: bool = True) -> tuple[dict[str, float], Match]:
        """Summary metrics of a candidate set (and per class: `class0/...`, `class1/...` for y = -1, +1)."""
        mt = self.match(cands_x)
        metrics = summarise(mt, self.cfg)
        for cls, sign in ((0, -1), (1, 1)) if per_class else ():
            mask = self.train_y == sign
            if mask.any():
                metrics.update({f"class{cls}/{k}": v for k, v in summarise(mt, self.cfg, mask).items()})
        return metrics, mt

    def evaluate(self, recon_x: np.ndarray, baselines: dict[str, dict[str, float]]) -> Evaluation:
        """Score reconstructions (k, d) beside baselines already scored by `scores`.

        Metrics: the attack's summary (`dssim_mean`, ...), per class (`class0/dssim_mean`, ...), each
        baseline's (`baseline/<name>/dssim_mean`, `baseline/<name>/class1/dssim_mean`, ...) and the attack's
        gain over it (`gain/<name>/dssim` = baseline DSSIM - attack DSSIM, `gain/<name>/corr` = attack corr
        - baseline corr, `gain/<name>/mae`; positive means the attack recovers more than the baseline).
        """
        metrics, mt = self.scores(recon_x)
        for name, base in baselines.items():
            metrics.update({f"baseline/{name}/{k}": v for k, v in base.items()})
            metrics[f"gain/{name}/corr"] = metrics["corr_mean"] - base["corr_mean"]
            metrics[f"gain/{name}/mae"] = base["mae_mean"] - metrics["mae_mean"]
            if "dssim_mean" in base:
                metrics[f"gain/{name}/dssim"] = base["dssim_mean"] - metrics["dssim_mean"]
        return Evaluation(metrics, mt)


def evaluate(
    train_x: np.ndarray,
    train_y: np.ndarray,
    recon_x: np.ndarray,
    baselines: dict[str, np.ndarray],
    image_shape: tuple[int, int] | None,
    cfg: EvalConfig,
    lo: np.ndarray | float,
    hi: np.ndarray | float,
) -> Evaluation:
    """Score reconstructions `recon_x` (k, d) against `train_x` (n, d), both in the data's own scale.

    `baselines`: name -> candidate set (k', d) in the data scale, scored the same way (see `Scorer`).
    """
    scorer = Scorer(train_x, train_y, image_shape, cfg, lo, hi)
    return scorer.evaluate(recon_x, {name: scorer.scores(c)[0] for name, c in baselines.items()})
