"""The parent's series summary: seed-level trends per metric and per class, unconverged runs left out and
counted, and per-n trends on a grid of n x blob size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench.summary import log_series_summary
from bench.tasks import get_task


class _Parent:
    """Collects what the summary logs."""

    def __init__(self) -> None:
        self.logged: dict[str, float] = {}
        self.files: list[str] = []

    def metrics(self, values: dict[str, float]) -> None:
        self.logged.update(values)

    def text(self, text: str, name: str) -> None:
        self.files.append(name)

    def figure(self, fig, name: str) -> None:
        self.files.append(name)


def _rows(grid: bool) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for n in (10, 50) if grid else (None,):
        for size in (1, 4, 25, 100):
            for seed in range(5):
                err = 0.5 - 0.002 * size + (0.1 if n == 50 else 0.0) + rng.normal(0, 0.01)
                row = {"series_value": size if n is None else f"{n}/{size}", "seed": seed, "setting": 0}
                row |= {"primary": "ncc_dist_mean", "error": err, "ncc_dist_mean": err}
                row |= {"class1/ncc_dist_mean": err, "class0/ncc_dist_mean": 0.3 + rng.normal(0, 0.01)}
                row |= {"moran_i/class1": size / 100, "train/converged": 1.0, "memorised/frac": 0.9}
                if n is not None:
                    row |= {"grid.data.n_per_class": n, "grid.data.blob_size": size}
                rows.append(row)
    return pd.DataFrame(rows)


def test_trends_use_seeds_and_leave_out_unconverged_runs() -> None:
    table = _rows(grid=False)
    table.loc[0, "train/converged"] = 0.0
    table.loc[0, "error"] = 99.0  # an unconverged run's value must not move the trend
    parent = _Parent()
    trend = log_series_summary(parent, table, get_task("blobs-rect"))
    assert trend["runs/total"] == 20 and trend["runs/used"] == 19 and trend["runs/unconverged_train"] == 1
    assert trend["trend/error/spearman_rho"] == -1.0 and trend["trend/error/n_seeds"] == 5
    assert trend["trend/error/slope_hi"] < 0  # the planted fall, CI over seeds
    assert abs(trend["trend/class0_ncc_dist_mean/slope"]) < 5e-4  # the class that does not change
    assert trend["trend/error_vs_moran/spearman_rho"] == -1.0
    assert "series.csv" in parent.files and "error_vs_series.png" in parent.files


def test_grid_of_n_and_blob_size_gives_one_trend_per_n() -> None:
    trend = log_series_summary(_Parent(), _rows(grid=True), get_task("blobs-rect"))
    for n in (10, 50):
        assert trend[f"trend/error/n_per_class={n}/spearman_rho"] == -1.0
        assert trend[f"trend/error/n_per_class={n}/n_points"] == 4


def test_a_sweep_over_n_and_blob_size_gives_one_trend_per_n() -> None:
    table = _rows(grid=True).rename(columns=lambda c: c.replace("grid.", "sweep."))
    trend = log_series_summary(_Parent(), table.assign(series_value=None), get_task("blobs-rect"))
    assert trend["trend/error/n_per_class=10/spearman_rho"] == -1.0


def test_the_trend_axis_is_declared_by_the_task() -> None:
    assert {get_task(t).trend_axis for t in ("blobs-rect", "blobs-walk-shuffled")} == {"data.blob_size"}
    pairs = ("medmnist-pair", "medmnist-pairs", "digits-pair", "faces-pair")
    assert {get_task(t).trend_axis for t in pairs} == {"class_var/ratio"}
    assert get_task("genetic-pca").trend_axis == "data.selection"  # the series key, when none is declared


def _pair_rows() -> pd.DataFrame:
    """Three flag pairs x 4 seeds; each pair's class_var/ratio varies a little by seed around 1, 2, 3;
    the error falls with the pair's mean ratio."""
    rows = []
    for k, pair in enumerate(("a/b", "c/d", "e/f")):
        for seed in range(4):
            ratio = k + 1 + 0.05 * (seed - 1.5)
            err = 0.6 - 0.1 * (k + 1) + 0.005 * seed
            rows.append(
                {"series_value": pair, "seed": seed, "setting": 0, "primary": "dssim_mean"}
                | {"error": err, "dssim_mean": err, "class_var/ratio": ratio, "train/converged": 1.0}
            )
    return pd.DataFrame(rows)


def test_pair_series_trends_against_the_mean_variance_ratio_of_each_pair() -> None:
    parent = _Parent()
    trend = log_series_summary(parent, _pair_rows(), get_task("medmnist-pairs"))
    assert trend["trend/error/spearman_rho"] == -1.0 and trend["trend/error/n_points"] == 3
    assert trend["trend/error/slope"] == pytest.approx(-0.1)  # per unit of the per-pair mean ratio
    assert trend["trend/error/n_seeds"] == 4
    assert "error_vs_series.png" in parent.files
    one_pair = _pair_rows().query("series_value == 'a/b'")  # one point: no trend to compute
    assert not [
        k for k in log_series_summary(_Parent(), one_pair, get_task("medmnist-pairs")) if "trend/" in k
    ]


def test_a_sweep_is_the_axis_where_the_task_declares_none_that_varies() -> None:
    table = _pair_rows().query("series_value == 'a/b'").copy()
    table = pd.concat([table.assign(**{"sweep.model.width": w}) for w in (50, 200)], ignore_index=True)
    table["series_value"] = None
    table.loc[table["sweep.model.width"] == 200, "error"] += 0.1
    trend = log_series_summary(_Parent(), table, get_task("digits-pair"))
    assert trend["trend/error/n_points"] == 2
    assert trend["trend/error/slope"] == pytest.approx(0.1 / 150)
