"""MedMNIST pair tasks end to end (CLI, smoke profile, fake MedMNIST files) and their measures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from medmnist_fixture import write_medmnist_npz
from mlflow_store import fresh_store
from typer.testing import CliRunner

import bench.data.medmnist as mm
from bench.analysis.pair_variance import variance_vs_quality
from bench.cli import app
from bench.tracking import load_arrays

RUNNER = CliRunner()
FAKE = ["--set", "data.verify_checksum=false"]


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 when either is constant (the evaluation's convention)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return fresh_store(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("medmnist")
    for i, flag in enumerate(("breastmnist", "organcmnist", "pneumoniamnist")):
        write_medmnist_npz(folder, flag, n=(30, 4, 12), seed=i)
    return folder


@pytest.fixture(autouse=True)
def _fresh_md5_cache(monkeypatch):
    monkeypatch.setattr(mm, "_MD5_CACHE", {})


def bench(*args: str):
    return RUNNER.invoke(app, list(args))


def runs(uri: str, experiment: str):
    """(client, {"parent": [Run], "child": [Run]}) of one experiment, via MlflowClient.search_runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    found = client.search_runs([exp.experiment_id])
    by_kind: dict[str, list] = {"parent": [], "child": []}
    for run in found:
        by_kind[run.data.tags["bench.kind"]].append(run)
    return client, by_kind


# --- the measures, on hand-made inputs ---------------------------------------------------------------------


# steadiness, worsening and collapse on hand-made inputs: tests/test_analysis_curves.py


def test_variance_vs_quality_spearman_over_pairs():
    table = pd.DataFrame(
        {
            "series_value": ["a/b", "a/b", "c/d", "e/f", "g/h"],
            "seed": [0, 1, 0, 0, 0],
            "setting": 0,
            "class_var/ratio": [3.0, 3.2, 1.0, 2.0, 0.5],
            "ssim_mean": [0.5, 0.7, 0.2, 0.4, 0.1],
            "corr_mean": [0.1, 0.1, 0.9, 0.5, 0.95],
        }
    )
    per_pair, corr = variance_vs_quality(table)
    assert per_pair["series_value"].tolist() == ["a/b", "c/d", "e/f", "g/h"]
    assert per_pair["n_runs"].tolist() == [2, 1, 1, 1]
    assert per_pair["ssim_mean"].iloc[0] == pytest.approx(0.6)
    assert corr["setting0/ssim_mean"]["spearman_rho"] == pytest.approx(1.0)
    assert corr["setting0/corr_mean"]["spearman_rho"] == pytest.approx(-1.0)
    assert corr["setting0/ssim_mean"]["n_points"] == 4


def test_pair_data_class_subsets_and_splits(root):
    from bench.data.medmnist import load_medmnist
    from bench.tasks.medmnist_pair import MedMNISTPairData

    data = MedMNISTPairData(
        flag_a="organcmnist",
        flag_b="organcmnist",
        classes_a=(0, 1),
        classes_b=(5,),
        n_per_class=2,
        n_test_per_class=3,
        root=str(root),
        verify_checksum=False,
    )
    data.check()
    ds = data.load(seed=0)
    x, labels = load_medmnist("organcmnist", root=root, verify_checksum=False)
    xt, labels_t = load_medmnist("organcmnist", split="test", root=root, verify_checksum=False)

    def labels_of(rows, pool, pool_labels):
        flat = pool.reshape(len(pool), -1)
        return [int(pool_labels[np.flatnonzero((flat == r).all(1))[0]]) for r in rows]

    assert ds.x_train.shape == (4, 784) and ds.y_train.tolist() == [-1, -1, 1, 1]
    assert set(labels_of(ds.x_train[:2], x, labels)) <= {0, 1}
    assert labels_of(ds.x_train[2:], x, labels) == [5, 5]
    assert set(labels_of(ds.x_test[ds.y_test < 0], xt, labels_t)) <= {0, 1}  # from the test split
    assert {"class_var/ratio", "class_var/inter", "moran_i/class1"} <= set(ds.stats)
    np.testing.assert_array_equal(data.load(seed=0).x_train, ds.x_train)  # seeded


# --- the CLI -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sets", "needle"),
    [
        (["data.flag_a=nosuchmnist"], "data.flag_a"),
        (["data.flag_b=chestmnist"], "multi-label"),
        (["data.flag_b=breastmnist"], "disjoint"),
        (["data.size=128"], "data.size"),
        (["data.classes_a=0,7"], "data.classes_a"),
    ],
)
def test_bad_config_exits_2(sets, needle, store):
    args = [a for s in sets for a in ("--set", s)]
    res = bench("run", "medmnist-pair", "--profile", "smoke", *args, "--tracking-uri", store)
    assert res.exit_code == 2, res.output
    assert needle in res.output


def test_missing_file_exits_2_naming_path_and_url(tmp_path, store):
    res = bench(
        "run", "medmnist-pair", "-p", "smoke", "--set", f"data.root={tmp_path}", "--tracking-uri", store
    )
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split())
    assert str(tmp_path / "breastmnist.npz") in text.replace("\n", "")
    assert (
        "zenodo.org" in text and "750601b1f35ba3300ea97c75c52ff8f6" in text and "data.download=true" in text
    )


def test_bad_checksum_exits_2_naming_path(root, store):
    res = bench("run", "medmnist-pair", "-p", "smoke", "--set", f"data.root={root}", "--tracking-uri", store)
    assert res.exit_code == 2, res.output
    text = "".join(res.output.split())
    assert str(root / "breastmnist.npz").replace(" ", "") in text and "MD5" in text


def run_smoke(task: str, root, store, experiment: str):
    """`bench run TASK --profile smoke` on the fake files, into experiment `experiment` of `store`."""
    args = ["--set", f"data.root={root}", *FAKE, "--tracking-uri", store, "--experiment", experiment]
    return bench("run", task, "--profile", "smoke", *args)


def test_medmnist_pair_smoke_logs_figs_2_3_steadiness_and_collapse(root, store):
    res = run_smoke("medmnist-pair", root, store, "pair")
    assert res.exit_code == 0, res.output
    client, found = runs(store, "pair")
    assert len(found["parent"]) == 1 and len(found["child"]) == 1
    child = found["child"][0]
    tags, params = child.data.tags, child.data.params
    assert tags["bench.task"] == "medmnist-pair" and child.info.status == "FINISHED"
    assert tags["mlflow.parentRunId"] == found["parent"][0].info.run_id
    assert params["data.flag_a"] == "breastmnist" and params["data.flag_b"] == "organcmnist"
    assert "breastmnist" in tags["bench.source"] and "organcmnist" in tags["bench.source"]
    run_id = child.info.run_id
    arts = {a.path for a in client.list_artifacts(run_id)} | {
        a.path for a in client.list_artifacts(run_id, "arrays")
    }
    assert {
        "reconstructions.png",
        "attack_curves.png",
        "arrays/train.npz",
        "arrays/reconstruction.npz",
    } <= arts

    # fig 3: both curves over attack steps, and their steadiness recomputed by hand from those very curves
    # (step 0, the random initialisation, left out; range over total variation; share of steps going up)
    m = child.data.metrics
    for name in ("dssim", "l2"):
        hist = sorted(client.get_metric_history(run_id, f"attack/{name}_mean"), key=lambda h: h.step)
        assert [h.step for h in hist] == list(range(0, 301, 50))
        v = np.array([h.value for h in hist])[1:]
        steps = np.diff(v)
        assert m[f"steadiness/{name}"] == pytest.approx((v.max() - v.min()) / np.abs(steps).sum())
        assert m[f"worsening/{name}"] == pytest.approx((steps > 0).mean())
        assert 0 < m[f"steadiness/{name}"] <= 1

    # per-class scores, the inter-class variance, and collapse recomputed from the logged arrays
    for key in ("class0/dssim_mean", "class1/dssim_mean", "class_var/ratio", "moran_i/class0"):
        assert np.isfinite(m[key])
    # collapse recomputed with numpy alone: per-image min-max, match by correlation, distances to the mean
    train, rec = load_arrays(client, run_id, "train"), load_arrays(client, run_id, "reconstruction")

    def minmax(a):
        lo, hi = a.min(axis=1, keepdims=True), a.max(axis=1, keepdims=True)
        return (a - lo) / np.where(hi > lo, hi - lo, 1.0)

    t, r = minmax(train["x"]), minmax(rec["x"])
    idx = np.array([np.argmax([_ncc(a, b) for b in r]) for a in t])
    for cls, sign in ((0, -1), (1, 1)):
        own = train["y"] == sign
        mean = minmax(train["x"][own].mean(axis=0, keepdims=True))
        d_rec = np.linalg.norm(r[idx][own] - mean, axis=1).mean()
        expect = d_rec / np.linalg.norm(t[own] - mean, axis=1).mean()
        assert m[f"collapse/class{cls}"] == pytest.approx(expect, rel=1e-6)
        assert m[f"collapse/class{cls}"] > 0


def test_medmnist_pairs_smoke_correlates_variance_and_quality(root, store, tmp_path):
    res = run_smoke("medmnist-pairs", root, store, "pairs")
    assert res.exit_code == 0, res.output
    client, found = runs(store, "pairs")
    children = found["child"]
    labels = sorted(r.data.tags["bench.series_value"] for r in children)
    assert labels == ["breastmnist/organcmnist", "pneumoniamnist/organcmnist"]
    assert all(np.isfinite(r.data.metrics["class_var/ratio"]) for r in children)
    parent = found["parent"][0].info.run_id
    names = {a.path for a in client.list_artifacts(parent)}
    assert {"series.csv", "variance_vs_quality.csv", "variance_vs_quality.json"} <= names
    local = {
        n: client.download_artifacts(parent, n, str(tmp_path)) for n in names if n.endswith((".csv", ".json"))
    }
    series = pd.read_csv(local["series.csv"])
    assert {"class_var/ratio", "steadiness/dssim", "collapse/class0"} <= set(series.columns)
    per_pair = pd.read_csv(local["variance_vs_quality.csv"])
    assert len(per_pair) == 2
    doc = json.loads(Path(local["variance_vs_quality.json"]).read_text())
    rho = doc["correlations"]["setting0/ssim_mean"]["spearman_rho"]
    # two pairs: Spearman is +-1, with the sign of (variance difference) x (quality difference)
    dv = np.diff(per_pair["class_var/ratio"].to_numpy())[0]
    dq = np.diff(per_pair["ssim_mean"].to_numpy())[0]
    assert rho == pytest.approx(np.sign(dv * dq))
