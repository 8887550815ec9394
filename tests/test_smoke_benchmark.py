"""Smoke benchmark: the `smoke` blob series end to end into a temporary store, asserting real outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow_store import fresh_store

from bench.evaluate import evaluate
from bench.experiment import resolve_config, run_experiment
from bench.runner import run_task
from bench.tasks import get_task
from bench.tracking import load_arrays


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    import torch

    torch.set_num_threads(1)
    uri = fresh_store(tmp_path_factory.mktemp("smoke"))
    return uri, run_task(get_task("blobs-rect"), "smoke", tracking_uri=uri)


def test_large_blobs_beat_the_mean_image(smoke) -> None:
    _, summary = smoke
    big = summary.table[summary.table["series_value"] == summary.table["series_value"].max()].iloc[0]
    assert big["train_accuracy"] == 1.0 and big["train_loss"] < 1e-3
    assert big["class1/dssim_mean"] < big["baseline/mean/class1/dssim_mean"]
    assert big["class1/corr_mean"] > big["baseline/mean/class1/corr_mean"] + 0.1
    assert (summary.table["gain/mean/corr"] > 0).all()


def test_logged_arrays_reproduce_logged_metrics(smoke) -> None:
    uri, summary = smoke
    client = MlflowClient(uri)
    task = get_task("blobs-rect")
    for run_id in summary.child_run_ids:
        run = client.get_run(run_id)
        train = load_arrays(client, run_id, "train")
        recon = load_arrays(client, run_id, "reconstruction")
        cfg = resolve_config(task, "smoke", series_value=int(run.data.tags["bench.series_value"]))
        ev = evaluate(train["x"], train["y"], recon["x"], {}, (28, 28), cfg.eval, 0.0, 1.0)
        for key in ("dssim_mean", "corr_mean", "l2_mean", "n_reconstructed"):
            assert ev.metrics[key] == pytest.approx(run.data.metrics[key], rel=1e-6), key
        assert recon["lam"].shape == recon["y"].shape == (len(recon["x"]),)
        assert set(np.unique(train["x"])) <= {0.0, 1.0}  # the data's own scale


def test_same_config_and_seed_give_the_same_metrics() -> None:
    task = get_task("blobs-walk")
    cfg = resolve_config(
        task, "smoke", {"data.n_per_class": 3, "model.width": 40, "attack.steps": 30}, 4, seed=2
    )
    a, b = run_experiment(cfg), run_experiment(cfg)
    assert a.settings[0].metrics == b.settings[0].metrics
    np.testing.assert_array_equal(a.settings[0].recon, b.settings[0].recon)
