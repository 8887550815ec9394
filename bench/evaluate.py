"""Match reconstructions to training samples and score them; every candidate set is scored alike.

Protocol (after Haim et al.; see docs/metrics.md):
1. Candidates are brought to the data's own scale: x + training mean (the centring the model saw).
2. Rescaling (`EvalConfig.rescale`), applied to the training set and to *every* candidate set
   (reconstructions and baselines alike): "minmax" maps each image to [0, 1] by its own min and max
   (Haim et al.; a constant image maps to 0); "clip" clips to the data range (tabular data).
3. Each training sample's nearest candidate is the one of highest normalised cross-correlation (NCC:
   per-sample standardised dot product / d), so one candidate may match several training samples.
4. Per pair: `ncc_dist` = 1 - NCC (scale- and offset-invariant, the primary distance for binary and
   synthetic images); SSIM as Haim et al.'s kornia code computes it (Gaussian window 3, sigma 1.5,
   reflect padding, same-size map, C1 = 1e-4, C2 = 9e-4, mean of the map) and DSSIM = (1 - SSIM) / 2;
   L2 (Euclidean norm of the difference, in the compared scale) and `l2_255` = L2 in 0-255 pixel units
   (images); MAE; the correlation itself.
Caveat, documented: with window 3 and C1 = 1e-4, SSIM scores a window that is exactly 0 in both images
near 1 and the same window with faint noise near 0, so DSSIM favours exactly binary candidates (held-out
binary samples) over noisy reconstructions; it is kept for comparison with the paper, not as the primary.
Summary: means over training samples (`*_mean`), the mean of the `top_k` best DSSIMs (`dssim_topk`, the
reference code's score), the count and fraction of training images whose best reconstruction has SSIM >
`eval.ssim_threshold` (`ssim_gt_0.4/count`, `ssim_gt_0.4/frac` at the default 0.4: the "reconstructed"
count of later work, e.g. Oz et al. 2024; the name carries the threshold), the best correlation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


def _gauss_filter(img: np.ndarray, window: int, sigma: float) -> np.ndarray:
    """Same-size Gaussian filtering of images (k, h, w) with reflect padding (kornia's filter2d)."""
    r = window // 2
    t = np.arange(window) - r
    g = np.exp(-(t**2) / (2 * sigma**2))
    g /= g.sum()
    p = np.pad(img, ((0, 0), (r, r), (r, r)), mode="reflect")
    h, w = img.shape[1:]
    rows = sum(g[i] * p[:, i : i + h, :] for i in range(window))
    return sum(g[j] * rows[:, :, j : j + w] for j in range(window))


def ssim_batch(
    a: np.ndarray, b: np.ndarray, window: int = 3, data_range: float = 1.0, sigma: float = 1.5
) -> np.ndarray:
    """SSIM of image pairs a[i], b[i] (k, h, w) as Haim et al.'s kornia code computes it: (k,).

    Gaussian window `window` x `window` with std `sigma`, reflect padding, same-size SSIM map,
    C1 = (0.01 data_range)^2, C2 = (0.03 data_range)^2, the map averaged per image.
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _gauss_filter(a, window, sigma), _gauss_filter(b, window, sigma)
    var_a = _gauss_filter(a * a, window, sigma) - mu_a**2
    var_b = _gauss_filter(b * b, window, sigma) - mu_b**2
    cov = _gauss_filter(a * b, window, sigma) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / (den + 1e-12)).mean(axis=(1, 2))


def ssim(a: np.ndarray, b: np.ndarray, window: int = 3, data_range: float = 1.0) -> float:
    """SSIM of two images (h, w); see `ssim_batch`."""
    return float(ssim_batch(a[None], b[None], window, data_range)[0])


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
        shape = (len(train), *image_shape)
        ssims = ssim_batch(train.reshape(shape), best.reshape(shape), cfg.ssim_window, data_range)
    return Match(
        index=index,
        corr=corr[np.arange(len(train)), index],
        l2=np.linalg.norm(diff, axis=1),
        mae=np.abs(diff).mean(axis=1),
        ssim=ssims,
    )


def ssim_key(threshold: float) -> str:
    """The name stem of the SSIM-above-threshold metrics: `ssim_gt_0.4` for 0.4 (then `/count`, `/frac`)."""
    return f"ssim_gt_{threshold:g}"


def summarise(mt: Match, cfg: EvalConfig, mask: np.ndarray | None = None) -> dict[str, float]:
    """Summary metrics of a match (over the training samples selected by `mask`)."""
    sel = np.ones(len(mt.index), dtype=bool) if mask is None else mask
    out = {
        "l2_mean": float(mt.l2[sel].mean()),
        "mae_mean": float(mt.mae[sel].mean()),
        "mae_std": float(mt.mae[sel].std()),
        "corr_mean": float(mt.corr[sel].mean()),
        "corr_max": float(mt.corr[sel].max()),
        "ncc_dist_mean": float(1.0 - mt.corr[sel].mean()),
    }
    if mt.ssim is not None:
        s = mt.ssim[sel]
        dssim = (1.0 - s) / 2.0
        out.update(
            l2_255_mean=float(255.0 * mt.l2[sel].mean()),
            ssim_mean=float(s.mean()),
            dssim_mean=float(dssim.mean()),
            dssim_topk=float(np.sort(dssim)[: cfg.top_k].mean()),
        )
        above = s > cfg.ssim_threshold
        out[f"{ssim_key(cfg.ssim_threshold)}/count"] = float(above.sum())
        out[f"{ssim_key(cfg.ssim_threshold)}/frac"] = float(above.mean())
    return out


@dataclass
class Evaluation:
    """Scores of the attack and its baselines. metrics: flat dict ready to log (see `Scorer.evaluate`)."""

    metrics: dict[str, float]
    match: Match


class Scorer:
    """Scores candidate sets against one training set, rescaled once.

    train_x (n, d) and candidates in the data's own scale; train_y (n,) in {-1, +1} or class indices.
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
        """Summary metrics of a candidate set (and per class: `class0/...`, `class1/...` for y = -1, +1;
        `class{c}/...` for class indices c, see `bench.data.base.class_groups`)."""
        from bench.data.base import class_groups

        mt = self.match(cands_x)
        metrics = summarise(mt, self.cfg)
        for cls, value in class_groups(self.train_y) if per_class else ():
            mask = self.train_y == value
            metrics.update({f"class{cls}/{k}": v for k, v in summarise(mt, self.cfg, mask).items()})
        return metrics, mt

    def evaluate(
        self,
        recon_x: np.ndarray,
        baselines: dict[str, dict[str, float]],
        extra: dict[str, float] | None = None,
    ) -> Evaluation:
        """Score reconstructions (k, d) beside baselines already scored by `scores`.

        `extra`: further metrics of the reconstructions (e.g. `memorised/frac`) compared with the
        baselines' values of the same name (`gain/<name>/memorised`).

        Metrics: the attack's summary (`dssim_mean`, ...), per class (`class0/dssim_mean`, ...), each
        baseline's (`baseline/<name>/dssim_mean`, `baseline/<name>/class1/dssim_mean`, ...) and the attack's
        gain over it (`gain/<name>/<m>` = baseline distance - attack distance for ncc_dist, dssim, l2_255 and
        mae, attack corr - baseline corr for corr, attack fraction - baseline fraction for `ssim_gt_0.4`;
        positive means the attack recovers more than the baseline); per class,
        `gain/<name>/class<c>/ncc_dist` (and `/dssim` for images).
        """
        from bench.data.base import class_groups

        metrics, mt = self.scores(recon_x)
        metrics.update(extra or {})
        for name, base in baselines.items():
            metrics.update({f"baseline/{name}/{k}": v for k, v in base.items()})
            for cls, _ in class_groups(self.train_y):
                for key, metric in (("ncc_dist", "ncc_dist_mean"), ("dssim", "dssim_mean")):
                    mine, theirs = f"class{cls}/{metric}", base.get(f"class{cls}/{metric}")
                    if theirs is not None and mine in metrics:
                        metrics[f"gain/{name}/class{cls}/{key}"] = theirs - metrics[mine]
            metrics[f"gain/{name}/corr"] = metrics["corr_mean"] - base["corr_mean"]
            metrics[f"gain/{name}/ncc_dist"] = base["ncc_dist_mean"] - metrics["ncc_dist_mean"]
            metrics[f"gain/{name}/mae"] = base["mae_mean"] - metrics["mae_mean"]
            if "memorised/frac" in base and "memorised/frac" in metrics:
                metrics[f"gain/{name}/memorised"] = metrics["memorised/frac"] - base["memorised/frac"]
            if "dssim_mean" in base:
                metrics[f"gain/{name}/dssim"] = base["dssim_mean"] - metrics["dssim_mean"]
                metrics[f"gain/{name}/l2_255"] = base["l2_255_mean"] - metrics["l2_255_mean"]
                above = ssim_key(self.cfg.ssim_threshold)
                metrics[f"gain/{name}/{above}"] = metrics[f"{above}/frac"] - base[f"{above}/frac"]
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
