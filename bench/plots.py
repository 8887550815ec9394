"""Figures: reconstruction grids, curves and series plots (matplotlib, Agg backend)."""

from __future__ import annotations

import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402


def _as_image(v: np.ndarray, shape: tuple[int, int] | None) -> np.ndarray:
    if shape is not None:
        return v.reshape(shape)
    side = int(np.ceil(np.sqrt(v.size)))
    return np.pad(v, (0, side * side - v.size)).reshape(side, side)


def pair_order(
    score: np.ndarray, max_pairs: int, higher_is_better: bool = True, best_only: bool = False
) -> np.ndarray:
    """Indices of the pairs to draw, best first: all of them, or the best and the worst halves of max_pairs
    (`best_only`: the best max_pairs).

    NaN scores count as the worst.
    """
    key = np.where(np.isnan(score), -np.inf, score if higher_is_better else -score)
    order = np.argsort(-key, kind="stable")
    if len(order) <= max_pairs or best_only:
        return order[:max_pairs]
    best = (max_pairs + 1) // 2
    return np.concatenate([order[:best], order[len(order) - (max_pairs - best) :]])


def reconstruction_grid(
    train: np.ndarray,
    recon: np.ndarray,
    score: np.ndarray,
    shape: tuple[int, int] | None,
    title: str = "",
    max_pairs: int = 24,
    metric: str = "score",
    higher_is_better: bool = True,
    per_row: int = 8,
    best_only: bool = False,
) -> plt.Figure:
    """Training samples above their matched reconstructions, best match first, in rows of `per_row` pairs.

    train, recon: (n, d) matched pairs (already rescaled to [0, 1]); score: (n,) the pair's match score
    named `metric` (e.g. "NCC"), higher is better unless `higher_is_better` is False. Each pair is labelled
    with its score; the best and the worst pair also say "best"/"worst" and the metric's name. With more
    than `max_pairs` pairs the best and the worst halves are drawn (`best_only`: the best `max_pairs`). Tabular rows are drawn as padded
    squares. About 1 inch (100 px at matplotlib's default dpi) per image: 8 pairs are ~900 px wide; the labels
    are large enough to read when the MLflow artifact pane shrinks the figure to ~60%.
    """
    score = np.asarray(score, dtype=float)
    order = pair_order(score, max_pairs, higher_is_better, best_only)
    k, per_row = len(order), max(1, min(per_row, len(order)))
    n_rows = -(-k // per_row)
    shown = f"{k} of {len(score)} pairs" if k < len(score) else f"{k} pairs"
    last = f"#{k} best" if best_only and k < len(score) else "worst"  # the worst pair is not shown
    shown += ", the best" if best_only and k < len(score) else ""
    note = f"{shown}, ordered by {metric} ({'higher' if higher_is_better else 'lower'} is better)"
    w = 1.05 * per_row + 0.6  # inches; margins below are in inches too
    text = "\n".join(textwrap.fill(t, max(24, int(w * 9))) for t in ([title] if title else []) + [note])
    head = 0.2 + 0.22 * (text.count("\n") + 1)  # the title's lines
    h = 2.45 * n_rows + head + 0.3
    # One image of all the pairs (an axes per image cost ~7 ms each to make and draw: 0.5 s of a quick
    # blob run's 8 s went to this figure); blank (NaN, drawn white) between images and rows.
    pairs = [(_as_image(train[i], shape), _as_image(recon[i], shape)) for i in order]
    mosaic, origins = pair_mosaic(pairs, per_row)
    ih, iw = pairs[0][0].shape
    fig = plt.figure(figsize=(w, h))
    ax = fig.add_axes((0.5 / w, 0.35 / h, 1 - 0.6 / w, 1 - (head + 0.35) / h))
    ax.set_axis_off()
    cmap = plt.get_cmap("gray").with_extremes(bad="white")
    ax.imshow(mosaic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="equal")
    for j, (i, (top, left)) in enumerate(zip(order, origins, strict=True)):
        label = f"{score[i]:.2f}"
        if j in (0, k - 1) and k > 1:
            label = f"{metric} {score[i]:.2f}"
            best = j == 0
            ax.text(
                left + iw / 2,
                top - 0.08 * ih,
                "best" if best else last,
                ha="center",
                va="bottom",
                fontsize=11,
                color="C2" if best else "C3",
            )
        ax.text(left + iw / 2, top + 2.2 * ih, label, ha="center", va="top", fontsize=11)
        if j % per_row == 0:
            for q, name in enumerate(("train", "recon")):
                y = top + (q * 1.1 + 0.5) * ih
                ax.text(left - 0.1 * iw, y, name, ha="right", va="center", rotation=90, fontsize=10)
    fig.suptitle(text, fontsize=12, y=1 - 0.1 / h, va="top")
    return fig


def pair_mosaic(
    pairs: list[tuple[np.ndarray, np.ndarray]], per_row: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The (train, recon) image pairs (each ih x iw) in rows of `per_row` pairs, train above recon: one
    (H, W) image, NaN between them, and each pair's (top, left) pixel. Gaps: 0.1 iw between columns,
    0.1 ih between a pair's two images, 0.8 ih between rows of pairs (room for the labels)."""
    ih, iw = pairs[0][0].shape
    gx, gy, gr = max(1, round(0.1 * iw)), max(1, round(0.1 * ih)), max(1, round(0.8 * ih))
    n_rows = -(-len(pairs) // per_row)
    cols = min(per_row, len(pairs))
    mosaic = np.full((n_rows * (2 * ih + gy) + (n_rows - 1) * gr, cols * iw + (cols - 1) * gx), np.nan)
    origins = []
    for j, (a, b) in enumerate(pairs):
        r, c = divmod(j, per_row)
        top, left = r * (2 * ih + gy + gr), c * (iw + gx)
        mosaic[top : top + ih, left : left + iw] = a
        mosaic[top + ih + gy : top + 2 * ih + gy, left : left + iw] = b
        origins.append((top, left))
    return mosaic, origins


def curves(series: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """One panel per curve: name -> (steps, values)."""
    fig, axes = plt.subplots(1, len(series), figsize=(3.2 * len(series), 2.6), squeeze=False)
    for ax, (name, (x, y)) in zip(axes[0], series.items(), strict=True):
        ax.plot(x, y, marker="." if len(x) < 50 else None)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def series_plot(x: np.ndarray, y: np.ndarray, xlabel: str, ylabel: str, title: str = "") -> plt.Figure:
    """Per-seed points, the mean per x value and its 95% CI (t-interval; none with one point)."""
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    ax.scatter(x, y, s=14, alpha=0.6, label="runs")
    xs = np.unique(x)
    means, lows, highs = [], [], []
    for v in xs:
        vals = y[x == v]
        mu = vals.mean()
        half = (
            stats.t.ppf(0.975, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals))
            if len(vals) > 1
            else 0.0
        )
        means.append(mu)
        lows.append(mu - half)
        highs.append(mu + half)
    ax.plot(xs, means, color="C1", marker="o", label="mean")
    ax.fill_between(xs, lows, highs, color="C1", alpha=0.2, label="95% CI")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def close(fig: plt.Figure) -> None:
    plt.close(fig)


def margin_vs_distance(
    margins: np.ndarray, distance: np.ndarray, y: np.ndarray, title: str = ""
) -> plt.Figure:
    """Per training sample: reconstruction distance (1 - NCC to its nearest reconstruction) against its
    normalised margin y f(x) / min margin (n,); only samples near 1 enter the KKT condition."""
    from bench.data.base import class_groups

    fig, ax = plt.subplots(figsize=(5, 3.6))
    binary = {-1.0: "class 0 (y=-1)", 1.0: "class 1 (y=+1)"}
    groups = class_groups(y)
    for k, (cls, value) in enumerate(groups):
        sel = y == value
        name = binary[value] if len(groups) <= 2 and value in binary else f"class {cls}"
        ax.scatter(margins[sel], distance[sel], s=14, color=f"C{k % 10}", label=name, alpha=0.8)
    ax.axvline(1.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("normalised margin y f(x) / min margin")
    ax.set_ylabel("ncc_dist to nearest reconstruction")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
