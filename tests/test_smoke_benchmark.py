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
        for key in ("dssim_mean", "corr_mean", "l2_mean", "ssim_gt_0.4/count"):
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


def _nearest_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Independent of bench: 1 - max Pearson correlation of each row of a with the rows of b."""
    return 1.0 - np.corrcoef(a, b)[: len(a), len(a) :].max(axis=1)


def test_memorisation_recomputed_from_the_logged_arrays(smoke) -> None:
    """memorised/frac and membership/auc from train.npz, reconstruction.npz, heldout.npz and fresh.npz
    by a short script that uses numpy only."""
    uri, summary = smoke
    client = MlflowClient(uri)
    for run_id in summary.child_run_ids:
        m = client.get_run(run_id).data.metrics
        arrays = {k: load_arrays(client, run_id, k) for k in ("train", "reconstruction", "heldout", "fresh")}
        mu = arrays["train"]["x"].mean(axis=0)  # everything centred by the training mean
        train, recon = arrays["train"]["x"] - mu, arrays["reconstruction"]["x"] - mu
        d_att = _nearest_dist(train, recon)
        d_fresh = _nearest_dist(train, arrays["heldout"]["x"] - mu)
        assert np.mean(d_att < d_fresh) == pytest.approx(m["memorised/frac"], abs=1e-12)
        d_neg = _nearest_dist(arrays["fresh"]["x"] - mu, recon)
        pairs = d_att[:, None] - d_neg[None, :]
        assert np.mean((pairs < 0) + 0.5 * (pairs == 0)) == pytest.approx(m["membership/auc"], abs=1e-12)
        assert len(arrays["heldout"]["x"]) == len(arrays["reconstruction"]["x"])  # as many as candidates
        assert len(arrays["fresh"]["x"]) == len(train)
        margins = load_arrays(client, run_id, "margins")["margin"]
        assert margins.min() == pytest.approx(1.0) and m["margin/frac_near"] == np.mean(margins <= 1.5)


def test_the_attack_beats_fresh_samples_and_chance(smoke) -> None:
    """Reconstructions match their training images better than fresh samples of the distribution do,
    and better than the attack's untrained candidates, scored the same way."""
    _, summary = smoke
    t = summary.table
    assert (t["train/converged"] == 1).all() and (t["data/heldout_overlap"] == 0).all()
    assert t["memorised/frac"].mean() > 0.9 and t["membership/auc"].mean() > 0.9
    # the untrained candidates (noise around the mean) know nothing of the training set: near chance
    assert t["baseline/random/memorised/frac"].mean() < 0.6
    assert t["baseline/random/membership/auc"].mean() < 0.75
    assert (t["gain/random/memorised"] > 0.3).all()
    assert (t["ncc_dist_mean"] < t["baseline/mean/ncc_dist_mean"]).all()
    assert (t["ncc_dist_mean"] < t["baseline/heldout/ncc_dist_mean"]).all()


def test_paper_n_at_blob_size_100_is_distinct_and_disjoint(tracking_uri) -> None:
    """The issue's case: n = 50 per class and blob size 100 (361 placements of a 10x10 square)."""
    sets = {
        "data.n_per_class": 50,
        "data.blob_size": 100,
        "model.width": 100,
        "attack.steps": 20,
        "attack.eval_every": 20,
    }
    summary = run_task(get_task("blobs-rect"), "smoke", seeds=1, overrides=sets, tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    (run_id,) = summary.child_run_ids
    m = client.get_run(run_id).data.metrics
    assert m["data/heldout_overlap"] == 0 and m["data/n_train_distinct"] == 100
    train = load_arrays(client, run_id, "train")["x"]
    held = np.concatenate([load_arrays(client, run_id, k)["x"] for k in ("heldout", "fresh")])
    assert len({r.tobytes() for r in train}) == 100
    assert not {r.tobytes() for r in train} & {r.tobytes() for r in held}
