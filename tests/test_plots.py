"""The reconstruction grid: rows of at most 8 pairs, best first, best and worst labelled with the metric."""

from __future__ import annotations

import numpy as np

from bench import plots


def _pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = rng.random((n, 64))
    recon = np.clip(train + rng.normal(0, 1, (n, 64)) * np.linspace(0.05, 0.8, n)[:, None], 0, 1)
    score = rng.permutation(np.linspace(0.1, 0.95, n))
    return train, recon, score


def test_pair_order_best_first_in_either_direction_with_nan_last() -> None:
    score = np.array([0.2, np.nan, 0.9, 0.5])
    assert plots.pair_order(score, 10).tolist() == [2, 3, 0, 1]
    assert plots.pair_order(np.array([0.2, 0.9, 0.5]), 10, higher_is_better=False).tolist() == [0, 2, 1]


def test_pair_order_keeps_the_best_and_the_worst_when_there_are_too_many() -> None:
    score = np.arange(30.0)  # pair i scores i
    order = plots.pair_order(score, 5)
    assert order.tolist() == [29, 28, 27, 1, 0]


def test_twenty_pairs_lie_in_three_rows_of_at_most_eight_and_fit_the_mlflow_pane() -> None:
    train, recon, score = _pairs(20)
    fig = plots.reconstruction_grid(train, recon, score, (8, 8), "t", metric="NCC")
    try:
        width, height = fig.get_size_inches() * fig.dpi
        assert width <= 1000 and height <= 1000  # the old single strip was 1850 x 220 px
        drawn = [ax for ax in fig.axes if ax.images]
        assert len(drawn) == 40  # 20 train + 20 recon images
        lefts = sorted({round(ax.get_position().x0, 3) for ax in drawn})
        tops = sorted({round(ax.get_position().y0, 3) for ax in drawn}, reverse=True)
        assert len(lefts) == 8 and len(tops) == 6  # 8 columns; 3 rows of (train, recon)
        order = np.argsort(-score)
        first = max(drawn, key=lambda ax: (ax.get_position().y0, -ax.get_position().x0))
        np.testing.assert_array_equal(first.images[0].get_array(), train[order[0]].reshape(8, 8))
        titled = {ax.get_title(): ax for ax in drawn if ax.get_title()}
        assert set(titled) == {"best", "worst"}
        labels = [ax.get_xlabel() for ax in drawn if ax.get_xlabel()]
        assert f"NCC {score.max():.2f}" in labels and f"NCC {score.min():.2f}" in labels
        assert sum(label.startswith("NCC") for label in labels) == 2  # only best and worst name it
        assert "ordered by NCC (higher is better)" in fig._suptitle.get_text()
    finally:
        plots.close(fig)


def test_a_long_set_says_how_many_pairs_it_shows_and_tabular_rows_are_squares() -> None:
    train, recon, score = _pairs(40)
    fig = plots.reconstruction_grid(
        train[:, :30], recon[:, :30], score, None, metric="L2", higher_is_better=False
    )
    try:
        assert "24 of 40 pairs, ordered by L2 (lower is better)" in fig._suptitle.get_text()
        drawn = [ax for ax in fig.axes if ax.images]
        assert len(drawn) == 48 and drawn[0].images[0].get_array().shape == (6, 6)
        best = next(ax for ax in drawn if ax.get_title() == "best")
        lowest = np.argmin(score)
        np.testing.assert_array_equal(best.images[0].get_array().ravel()[:30], train[lowest, :30])
    finally:
        plots.close(fig)


def test_best_only_draws_the_best_pairs_and_names_the_last_by_rank() -> None:
    score = np.arange(30.0)
    assert plots.pair_order(score, 5, best_only=True).tolist() == [29, 28, 27, 26, 25]
    assert plots.pair_order(score, 40, best_only=True).tolist() == list(range(29, -1, -1))
    train, recon, score = _pairs(50)
    fig = plots.reconstruction_grid(train, recon, score, (8, 8), max_pairs=40, metric="NCC", best_only=True)
    try:
        drawn = [ax for ax in fig.axes if ax.images]
        assert len(drawn) == 80  # 40 train + 40 recon images
        assert "40 of 50 pairs, the best, ordered by NCC" in fig._suptitle.get_text()
        titles = {ax.get_title() for ax in drawn if ax.get_title()}
        assert titles == {"best", "#40 best"}
        labels = [ax.get_xlabel() for ax in drawn if ax.get_xlabel()]
        assert f"NCC {np.sort(score)[-40]:.2f}" in labels  # the 40th best, not the worst
    finally:
        plots.close(fig)
