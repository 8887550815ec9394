"""Gene-space scores, table 1 and the square-image view, against answers computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.analysis.genetic import as_square_images, gene_space_scores, square_side, table1, table1_markdown
from bench.data.base import Dataset
from bench.data.genetic import Pipeline
from bench.data.selection import MinMaxPerGene
from bench.reduce import make_reducer

SPAN = np.array([2.0, 4.0, 6.0])  # gene ranges: feature x in [0, 1] is gene value x * SPAN
X_TRAIN = np.array([[0.0, 1.0, 0.5], [1.0, 0.0, 0.0], [0.5, 0.5, 1.0], [0.25, 0.75, 0.0]])
X_TEST = np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.4]])


def _data(reducer: str = "none") -> Dataset:
    g_tr, g_te = X_TRAIN * SPAN, X_TEST * SPAN  # every gene's min 0 and max SPAN occur in training
    pipe = Pipeline(reducer, None, make_reducer("none").fit(g_tr), MinMaxPerGene().fit(g_tr), ["a", "b", "c"])
    y, y_te = np.array([-1.0, -1.0, 1.0, 1.0]), np.array([-1.0, 1.0])
    extras = {"pipeline": pipe, "genes_train": g_tr, "genes_test": g_te}
    return Dataset(X_TRAIN, y, X_TEST, y_te, None, 0.0, 1.0, {}, "", extras)


def test_gene_space_scores_by_hand() -> None:
    data = _data()
    # each patient's reconstruction at half its features: gene error 0.5 * |g|, row means of |g| are
    # 7/3, 2/3, 3, 7/6 (g = X_TRAIN * SPAN)
    out = gene_space_scores(data, 0.5 * X_TRAIN[[2, 0, 1, 3]], np.array([1, 2, 0, 3]))
    per_patient = 0.5 * np.array([7 / 3, 2 / 3, 3.0, 7 / 6])
    assert out["gene/mae_mean"] == pytest.approx(per_patient.mean())  # 21.5 / 24
    assert out["gene/mae_std"] == pytest.approx(per_patient.std())
    assert out["gene/floor_mae"] == pytest.approx(0.0, abs=1e-12)  # min-max and identity invert exactly
    # gene means (0.875, 2.25, 2.25): |g - mean| sums 3.375, 5.625, 4.125, 3.375 over 3 genes, 4 patients
    assert out["gene/baseline_mean_mae"] == pytest.approx(16.5 / 12)
    # nearest held-out by feature correlation: test 1, test 0, test 1, test 1 -> gene MAEs .4, .2, 2.0, 1.1
    assert out["gene/baseline_heldout_mae"] == pytest.approx(3.7 / 4)


def test_gene_space_scores_clip_reconstructions_and_skip_non_invertible() -> None:
    data = _data()
    # features below 0 clip to 0, i.e. gene value 0: the error is |g| itself
    out = gene_space_scores(data, X_TRAIN - 5.0, np.arange(4))
    assert out["gene/mae_mean"] == pytest.approx(21.5 / 12)
    assert gene_space_scores(_data("deg"), X_TRAIN, np.arange(4)) == {}
    data.extras.pop("pipeline")
    assert gene_space_scores(data, X_TRAIN, np.arange(4)) == {}


def _grid_table() -> pd.DataFrame:
    rows = []
    for red in ("sdae", "pca"):
        for sel in ("dissimilar", "random"):
            for seed in (0, 1):
                for setting, mae in ((0, 0.5), (1, 0.3)):  # the best setting per run is kept
                    rows.append(
                        {
                            "series_value": f"{red}/{sel}",
                            "seed": seed,
                            "setting": setting,
                            "mae_mean": mae + seed / 10,
                            "mae_std": 0.01,
                            "train_accuracy": 1.0,
                            "test_accuracy": 0.75,
                            "baseline/heldout/mae_mean": 0.6,
                            "resnet/test_accuracy": 0.9,
                        }  # fmt: skip
                    )
    return pd.DataFrame(rows)


def test_table1_from_grid_labels() -> None:
    t1 = table1(_grid_table())
    assert list(t1.reducer) == ["pca", "pca", "sdae", "sdae"]  # paper order, not input order
    assert list(t1.selection) == ["random", "dissimilar"] * 2
    # best setting per seed: 0.3 (seed 0) and 0.4 (seed 1): mean 0.35, population std over seeds 0.05
    assert t1.mae_mean.tolist() == pytest.approx([0.35] * 4) and (t1.n_seeds == 2).all()
    assert t1.mae_seed_std.tolist() == pytest.approx([0.05] * 4)
    assert t1.mlp_test_error.tolist() == pytest.approx([0.25] * 4) and (t1.mlp_train_error == 0).all()
    assert t1.gene_mae.isna().all() and t1.mean_mae.isna().all()  # columns absent from the table


def test_table1_single_reducer_and_markdown() -> None:
    table = _grid_table()
    table = table[table.series_value.str.startswith("pca/")].assign(
        series_value=lambda t: t.series_value.str.split("/").str[1]
    )
    t1 = table1(table, reducer="pca")
    assert list(zip(t1.reducer, t1.selection, strict=True)) == [("pca", "random"), ("pca", "dissimilar")]
    md = table1_markdown(t1).splitlines()
    assert md[2] == "| pca | random | 0.000 | 0.250 | 0.350 ± 0.010 | 0.600 | – | – | 0.900 | 2 |"


@pytest.mark.parametrize(("d", "side"), [(1, 1), (4, 2), (5, 3), (64, 8), (76, 9), (784, 28), (785, 29)])
def test_square_side(d: int, side: int) -> None:
    assert square_side(d) == side


def test_square_images_pad_with_zeros() -> None:
    x = np.arange(10.0).reshape(2, 5)
    img, side = as_square_images(x)
    assert side == 3 and img.shape == (2, 9)
    np.testing.assert_array_equal(img[:, :5], x)
    assert not img[:, 5:].any()
