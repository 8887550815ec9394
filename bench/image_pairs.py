"""Two-class image tasks (MedMNIST pairs, digits, faces): the measures of the paper's section 4.1.

Pure numpy/pandas: no MLflow, no Typer. The task modules plug these in as a `Task`'s `post` and
`report` hooks and build their `Dataset` with `pair_dataset`.

Definitions (lower DSSIM / L2 is better throughout):

* **Inter-class variance** (`class_var/*`, in `Dataset.stats`), on the training images in the data's own
  [0, 1] pixel scale, as `bench.data.selection.class_variance` defines it for the genetic tasks:
  `class_var/inter` = Euclidean distance between the two class-mean images; `class_var/intra0`,
  `class_var/intra1` = mean Euclidean distance of a class's images to its own mean; `class_var/ratio` =
  inter / mean(intra0, intra1), the between-class distance in units of within-class spread (a Fisher-like,
  scale-free number; > 1 means the class means lie further apart than a typical image from its mean).
  Spatial correlation (`moran_i/class0`, `moran_i/class1`, `moran_i/mean`: Moran's I with rook weights,
  averaged over the training images) is logged beside it.
* **Steadiness**, **worsening** (`steadiness/<name>`, `worsening/<name>` of the `attack/dssim_mean` and
  `attack/l2_mean` monitor curves) and **collapse to the class mean** (`collapse/class0`, `collapse/class1`,
  `collapse/classK_frac_mean`) are defined and computed in `bench.analysis.curves`; `pair_post` applies them.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bench.analysis.curves import collapse_ratios, steadiness, worsening
from bench.data.base import Dataset, to_pm1

# Small MLPs and short attacks for CI: the smoke profile of every image-pair task.
SMOKE_OVERRIDES = {
    "data.n_per_class": 5,
    "data.n_test_per_class": 10,
    "model.depth": 2,
    "model.width": 200,
    "train.max_epochs": 3000,
    "train.target_loss": 1e-3,
    "attack.steps": 300,
    "attack.eval_every": 50,
}


def pair_stats(x: np.ndarray, labels01: np.ndarray, shape: tuple[int, int]) -> dict[str, float]:
    """Inter-class variance and spatial correlation of training images x (n, d) with labels in {0, 1}."""
    from bench.analysis.spatial import morans_i
    from bench.data.selection import class_variance

    cv = class_variance(x, labels01)
    moran = np.array([morans_i(img.reshape(shape)) for img in x])
    return {
        "class_var/inter": cv["inter_class"],
        "class_var/intra0": cv["intra_class_0"],
        "class_var/intra1": cv["intra_class_1"],
        "class_var/ratio": cv["ratio"],
        "moran_i/class0": float(moran[labels01 == 0].mean()),
        "moran_i/class1": float(moran[labels01 == 1].mean()),
        "moran_i/mean": float(moran.mean()),
    }


def pair_dataset(
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    shape: tuple[int, int],
    source: str,
) -> Dataset:
    """A `Dataset` from (class 0, class 1) image stacks (k, h, w) in [0, 1]: class 0 -> y = -1, class 1 -> +1."""
    x_tr = np.concatenate([a.reshape(len(a), -1) for a in train]).astype(np.float64)
    x_te = np.concatenate([a.reshape(len(a), -1) for a in test]).astype(np.float64)
    lab_tr = np.repeat([0, 1], [len(a) for a in train])
    lab_te = np.repeat([0, 1], [len(a) for a in test])
    stats = pair_stats(x_tr, lab_tr, shape)
    return Dataset(x_tr, to_pm1(lab_tr), x_te, to_pm1(lab_te), shape, 0.0, 1.0, stats, source)


def split_class(images: np.ndarray, n_train: int, n_test: int, rng: np.random.Generator, what: str):
    """Disjoint random (train, test) draws of *distinct* images (k, h, w) of one class
    (bench.data.split.split_pool: equal after min-max rescaling counts once); test may be short."""
    from bench.data.split import split_pool

    tr, te = split_pool(images.reshape(len(images), -1), n_train, n_test, rng, what)
    return images[tr], images[te]


# --- task hooks --------------------------------------------------------------------------------------------


def pair_post(result: Any, sr: Any) -> dict[str, float]:
    """Task `post` hook: steadiness of the DSSIM and L2 curves and collapse to the class means."""
    out: dict[str, float] = {}
    for name in ("dssim", "l2"):
        key = f"attack/{name}_mean"
        if key in sr.curves:
            _, values = sr.curves[key]
            out[f"steadiness/{name}"] = steadiness(values)
            out[f"worsening/{name}"] = worsening(values)
    data, cfg = result.data, result.config
    out.update(
        collapse_ratios(
            data.x_train, data.y_train, sr.recon[sr.match_index], cfg.eval.rescale, data.lo, data.hi
        )
    )
    return out


# Quality columns of the series table correlated with the inter-class variance (all higher = better).
QUALITY_COLUMNS = ("ssim_mean", "corr_mean", "ssim_gt_0.4/frac", "gain/heldout/dssim", "gain/mean/dssim")
VARIANCE_COLUMN = "class_var/ratio"


def variance_vs_quality(table: Any) -> tuple[Any, dict[str, Any]]:
    """Per (setting, series point): mean inter-class variance and quality; Spearman rho across points.

    Returns (per-point DataFrame, {"setting<p>/<quality>": {"spearman_rho", "spearman_p", "n_points"}}).
    Seeds are averaged first: the variance is a property of the pair, so each pair is one point.
    """
    from scipy import stats

    cols = [c for c in (VARIANCE_COLUMN, "class_var/inter", "moran_i/mean", *QUALITY_COLUMNS) if c in table]
    keys = [k for k in ("setting", "series_value") if k in table]
    per_point = table.groupby(keys, sort=False)[cols].mean().reset_index()
    per_point.insert(len(keys), "n_runs", table.groupby(keys, sort=False).size().to_numpy())
    correlations: dict[str, Any] = {}
    if VARIANCE_COLUMN not in per_point:
        return per_point, correlations
    for setting, group in per_point.groupby("setting") if "setting" in per_point else [(0, per_point)]:
        for q in QUALITY_COLUMNS:
            if q not in group:
                continue
            x = group[VARIANCE_COLUMN].to_numpy(dtype=float)
            y = group[q].to_numpy(dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            rho = p = float("nan")
            if ok.sum() >= 2 and len(np.unique(x[ok])) > 1 and len(np.unique(y[ok])) > 1:
                res = stats.spearmanr(x[ok], y[ok])
                rho, p = float(res.statistic), float(res.pvalue)
            correlations[f"setting{setting}/{q}"] = {
                "spearman_rho": rho,
                "spearman_p": p,
                "n_points": int(ok.sum()),
            }
    return per_point, correlations


def variance_report(table: Any) -> dict[str, str]:
    """Task `report` hook: `variance_vs_quality.csv` (one row per pair) and `variance_vs_quality.json`."""
    per_point, correlations = variance_vs_quality(table)
    doc = {
        "x": f"{VARIANCE_COLUMN} (distance between class means / mean within-class distance to the mean)",
        "points": "one per (setting, series point), seeds averaged",
        "correlations": correlations,
    }
    return {
        "variance_vs_quality.csv": per_point.to_csv(index=False),
        "variance_vs_quality.json": json.dumps(doc, indent=2, sort_keys=True, default=str),
    }
