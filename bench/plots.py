"""Figures: reconstruction grids, curves and series plots (matplotlib, Agg backend)."""

from __future__ import annotations

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


def reconstruction_grid(
    train: np.ndarray,
    recon: np.ndarray,
    score: np.ndarray,
    shape: tuple[int, int] | None,
    title: str = "",
    max_pairs: int = 24,
) -> plt.Figure:
    """Training samples (top row) above their best reconstructions (bottom row), best score first.

    train, recon: (n, d) matched pairs (already rescaled); score: (n,) higher is better (SSIM or corr).
    Tabular rows are drawn as padded squares.
    """
    order = np.argsort(-score)[:max_pairs]
    k = len(order)
    fig, axes = plt.subplots(2, k, figsize=(0.9 * k + 0.5, 2.2), squeeze=False)
    for j, i in enumerate(order):
        for row, src in enumerate((train, recon)):
            ax = axes[row, j]
            ax.imshow(_as_image(src[i], shape), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[1, j].set_xlabel(f"{score[i]:.2f}", fontsize=7)
    axes[0, 0].set_ylabel("train", fontsize=8)
    axes[1, 0].set_ylabel("recon", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


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
    fig, ax = plt.subplots(figsize=(5, 3.6))
    for sign, colour, name in ((-1, "tab:blue", "class 0 (y=-1)"), (1, "tab:orange", "class 1 (y=+1)")):
        sel = y == sign
        ax.scatter(margins[sel], distance[sel], s=14, c=colour, label=name, alpha=0.8)
    ax.axvline(1.5, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("normalised margin y f(x) / min margin")
    ax.set_ylabel("ncc_dist to nearest reconstruction")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
