"""Offline stand-ins (digits-pair, faces-pair): the CLI smoke runs log like medmnist-pair and beat the mean image."""

from __future__ import annotations

import numpy as np
import pytest
from mlflow_store import fresh_store
from typer.testing import CliRunner

from bench.cli import app
from bench.tracking import load_arrays

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fresh_store(tmp_path_factory.mktemp("store"))


@pytest.mark.parametrize(("task", "d"), [("digits-pair", 64), ("faces-pair", 625)])
def test_smoke_run_logs_and_beats_mean_image(task, d, store):
    from mlflow.tracking import MlflowClient

    res = RUNNER.invoke(
        app, ["run", task, "--profile", "smoke", "--tracking-uri", store, "--experiment", task]
    )
    assert res.exit_code == 0, res.output
    client = MlflowClient(store)
    exp = client.get_experiment_by_name(task)
    found = client.search_runs([exp.experiment_id])
    children = [r for r in found if r.data.tags["bench.kind"] == "child"]
    assert len(found) == 2 and len(children) == 1
    child = children[0]
    assert child.data.tags["bench.task"] == task and "offline stand-in" in child.data.tags["bench.source"]
    m = child.data.metrics
    # the attack recovers more than the mean image (on correlation, the measure of the matching)
    assert m["gain/mean/corr"] > 0, m
    for key in ("steadiness/dssim", "steadiness/l2", "collapse/class0", "collapse/class1", "class_var/ratio"):
        assert np.isfinite(m[key]), key
    arts = {a.path for a in client.list_artifacts(child.info.run_id)}
    assert {"reconstructions.png", "attack_curves.png", "arrays", "model"} <= arts
    train = load_arrays(client, child.info.run_id, "train")
    assert train["x"].shape == (10, d) and sorted(set(train["y"])) == [-1, 1]
    assert train["x"].min() >= 0.0 and train["x"].max() <= 1.0


@pytest.mark.parametrize(
    ("task", "sets", "needle"),
    [
        ("digits-pair", ["data.digit_a=3", "data.digit_b=3"], "data.digit_b"),
        ("digits-pair", ["data.digit_a=12"], "data.digit_a"),
        ("faces-pair", ["data.n_per_class=100"], "data.n_per_class"),
    ],
)
def test_bad_values_exit_2(task, sets, needle, store):
    args = [a for s in sets for a in ("--set", s)]
    res = RUNNER.invoke(app, ["run", task, "-p", "smoke", *args, "--tracking-uri", store])
    assert res.exit_code == 2 and needle in res.output


def test_datasets_are_seeded_disjoint_and_labelled():
    from bench.tasks.offline import DigitsPairData, FacesPairData

    ds = DigitsPairData(digit_a=7, digit_b=3, n_per_class=4, n_test_per_class=6).load(seed=1)
    assert ds.x_train.shape == (8, 64) and ds.image_shape == (8, 8)
    assert ds.y_train.tolist() == [-1] * 4 + [1] * 4 and len(ds.x_test) == 12
    train_rows = {r.tobytes() for r in ds.x_train}
    assert not train_rows & {r.tobytes() for r in ds.x_test}  # held-out images are not training images
    again = DigitsPairData(digit_a=7, digit_b=3, n_per_class=4, n_test_per_class=6).load(seed=1)
    np.testing.assert_array_equal(again.x_train, ds.x_train)

    from bench.data.offline import load_faces

    faces = FacesPairData(n_per_class=3, n_test_per_class=200).load(seed=0)
    images, labels = load_faces()
    face_rows = {r.tobytes() for r in images[labels == 1].reshape(-1, 625)}
    assert all(r.tobytes() in face_rows for r in faces.x_train[:3])  # class 0 (y = -1) are the faces
    assert not any(r.tobytes() in face_rows for r in faces.x_train[3:])
    assert len(faces.x_test) == 2 * 97  # the test draw takes what is left
