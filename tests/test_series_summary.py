"""The parent's series summary: seed-level trends per metric and per class, unconverged runs left out and
counted, and per-n trends on a grid of n x blob size."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
