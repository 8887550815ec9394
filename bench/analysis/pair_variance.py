"""Inter-class variance against reconstruction quality across image pairs (the paper's section 4.1): a
pure function of a series table (one row per run), used by the `medmnist-pairs` task's report hook
(`bench.image_pairs.variance_report`, which writes `variance_vs_quality.csv` and `.json` on the parent).

The variance is `class_var/ratio` (see `bench.image_pairs`: distance between the class-mean images over
the mean within-class distance), a property of the pair: seeds are averaged first, each pair is one point.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
