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


def _drawn(fig) -> tuple[np.ndarray, list[str], list[str]]:
    """The grid's one mosaic image, its titles ("best", "worst", ...) and its score labels."""
    (ax,) = fig.axes
    (image,) = ax.images
    texts = [t.get_text() for t in ax.texts]
    titles = [t for t in texts if t == "best" or t == "worst" or t.endswith(" best")]
    labels = [t for t in texts if t not in titles and t not in ("train", "recon")]
    return np.ma.filled(image.get_array(), np.nan), titles, labels


def test_pair_mosaic_places_train_above_recon_in_rows() -> None:
    pairs = [(np.full((4, 3), float(j)), np.full((4, 3), -float(j))) for j in range(5)]
    mosaic, origins = plots.pair_mosaic(pairs, per_row=2)
    assert len({left for _, left in origins}) == 2 and len({top for top, _ in origins}) == 3
    for j, (top, left) in enumerate(origins):
        assert (mosaic[top : top + 4, left : left + 3] == j).all()
        assert (mosaic[top + 5 : top + 9, left : left + 3] == -j).all()  # 1 px (0.1 ih, at least 1) apart
    assert np.isnan(mosaic).sum() == mosaic.size - 5 * 2 * 12  # the rest is blank


def test_twenty_pairs_lie_in_three_rows_of_at_most_eight_and_fit_the_mlflow_pane() -> None:
    train, recon, score = _pairs(20)
    fig = plots.reconstruction_grid(train, recon, score, (8, 8), "t", metric="NCC")
    try:
        width, height = fig.get_size_inches() * fig.dpi
        assert width <= 1000 and height <= 1000  # the old single strip was 1850 x 220 px
        mosaic, titles, labels = _drawn(fig)
        order = np.argsort(-score)
        expected, origins = plots.pair_mosaic(
            [(train[i].reshape(8, 8), recon[i].reshape(8, 8)) for i in order], 8
        )
        np.testing.assert_array_equal(mosaic, expected)
        assert len({left for _, left in origins}) == 8 and len({top for top, _ in origins}) == 3
        np.testing.assert_array_equal(mosaic[:8, :8], train[order[0]].reshape(8, 8))  # best at top left
        assert sorted(titles) == ["best", "worst"]
        assert len(labels) == 20
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
        mosaic, titles, labels = _drawn(fig)
        assert len(labels) == 24 and sorted(titles) == ["best", "worst"]
        best = mosaic[:6, :6].ravel()  # 6 x 6 squares, the best pair (lowest L2) first
        np.testing.assert_array_equal(best[:30], train[np.argmin(score), :30])
        assert (best[30:] == 0).all()
    finally:
        plots.close(fig)


def test_best_only_draws_the_best_pairs_and_names_the_last_by_rank() -> None:
    score = np.arange(30.0)
    assert plots.pair_order(score, 5, best_only=True).tolist() == [29, 28, 27, 26, 25]
    assert plots.pair_order(score, 40, best_only=True).tolist() == list(range(29, -1, -1))
    train, recon, score = _pairs(50)
    fig = plots.reconstruction_grid(train, recon, score, (8, 8), max_pairs=40, metric="NCC", best_only=True)
    try:
        _, titles, labels = _drawn(fig)
        assert len(labels) == 40  # 40 pairs of train and recon images
        assert "40 of 50 pairs, the best, ordered by NCC" in fig._suptitle.get_text()
        assert set(titles) == {"best", "#40 best"}
        assert f"NCC {np.sort(score)[-40]:.2f}" in labels  # the 40th best, not the worst
    finally:
        plots.close(fig)
