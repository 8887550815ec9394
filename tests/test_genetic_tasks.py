"""Genetic tasks: GDC-format fixture through the CLI, fit/scaling policy, table 1, GSE7390 stand-in."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gdc_fixture import write_gdc_fixture
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app
from bench.experiment import resolve_config
from bench.tasks import get_task
from bench.tracking import load_arrays

runner = CliRunner()


def _ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two vectors; 0 when either is constant (the evaluation's convention)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / den) if den > 0 else 0.0


@pytest.fixture(scope="module")
def gdc_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32 samples (20 tumour, 12 normal) x 200 genes in the exact GDC download layout."""
    return write_gdc_fixture(tmp_path_factory.mktemp("gdc"), n_tumour=20, n_normal=12, n_genes=200).root


def _text(client: MlflowClient, run_id: str, name: str, tmp: Path) -> str:
    return Path(client.download_artifacts(run_id, name, str(tmp))).read_text()


def test_cli_genetic_pca_smoke_logs_table1_and_reproducible_metrics(
    gdc_dir: Path, tracking_uri: str, tmp_path: Path
) -> None:
    args = ["run", "genetic-pca", "--profile", "smoke", "--set", f"data.path={gdc_dir}"]
    out = runner.invoke(app, [*args, "--tracking-uri", tracking_uri])
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("genetic-pca")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if r.data.tags["bench.kind"] == "parent")
    children = [r for r in runs if r.data.tags["bench.kind"] == "child"]
    assert sorted(r.data.tags["bench.series_value"] for r in children) == ["dissimilar", "random"]

    t1 = pd.read_csv(io.StringIO(_text(client, parent.info.run_id, "table1.csv", tmp_path)))
    assert list(zip(t1.reducer, t1.selection, strict=True)) == [("pca", "random"), ("pca", "dissimilar")]
    assert (t1.n_seeds == 1).all() and t1.resnet_test_accuracy.between(0, 1).all()
    assert t1.mlp_train_error.between(0, 1).all() and (t1.mae_mean > 0).all()
    assert "| pca | dissimilar |" in _text(client, parent.info.run_id, "table1.md", tmp_path)

    child = children[0]
    m = child.data.metrics
    assert {
        "resnet/test_accuracy",
        "resnet/train_accuracy",
        "gene/mae_mean",
        "class_variance/inter_class",
    } <= set(m)
    assert m["error"] == m["mae_mean"] and m["reduce/dim"] == 16
    train = load_arrays(client, child.info.run_id, "train")
    recon = load_arrays(client, child.info.run_id, "reconstruction")
    assert train["x"].shape == (8, 16) and train["x"].min() == 0.0 and train["x"].max() == 1.0
    # mae_mean recomputed with numpy alone: clip to [0, 1], nearest reconstruction by Pearson correlation
    t, r = train["x"], np.clip(recon["x"], 0.0, 1.0)
    nearest = [int(np.argmax([_ncc(a, b) for b in r])) for a in t]
    assert np.mean([np.abs(a - r[j]).mean() for a, j in zip(t, nearest, strict=True)]) == pytest.approx(
        m["mae_mean"], rel=1e-9
    )
    row = t1.set_index("selection").loc[child.data.tags["bench.series_value"]]
    assert row.mae_mean == pytest.approx(m["mae_mean"])


def test_bad_path_exits_2_naming_it(tracking_uri: str, tmp_path: Path) -> None:
    missing = tmp_path / "no_such_download"
    args = ["run", "genetic-deg", "--profile", "smoke", "--set", f"data.path={missing}"]
    out = runner.invoke(app, [*args, "--tracking-uri", tracking_uri])
    assert out.exit_code == 2
    assert str(missing) in out.output and "Traceback" not in out.output


def test_unset_path_says_how_to_set_it() -> None:
    out = runner.invoke(app, ["run", "genetic-pca", "--profile", "smoke"])
    assert out.exit_code == 2
    assert "--set data.path=DIR" in out.output and "data.source=gse7390" in out.output


def test_impossible_pca_dim_exits_2_with_the_fix(gdc_dir: Path, tracking_uri: str) -> None:
    args = ["run", "genetic-pca", "--profile", "smoke", "--set", f"data.path={gdc_dir}"]
    args += ["--set", "data.reduce.dim=100", "--set", "data.selection=random", "--tracking-uri", tracking_uri]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert "--set data.reduce.dim=N with N <= 24" in out.output
    assert "data.reduce.on_too_few=pad" in out.output


def test_fit_and_scaling_policy(gdc_dir: Path) -> None:
    """Disjoint held-out patients, [0, 1] features fitted on training, DEG fitted on training only."""
    from scipy import stats

    task = get_task("genetic-deg")
    data = {}
    for sel in ("dissimilar", "similar"):
        cfg = resolve_config(task, "smoke", {"data.path": str(gdc_dir)}, sel, seed=1)
        data[sel] = cfg.data.load(cfg.seed)
    ds = data["dissimilar"]
    g_tr, g_te = ds.extras["genes_train"], ds.extras["genes_test"]
    assert not (g_tr[:, None, :] == g_te[None, :, :]).all(axis=2).any()  # no patient in both sets
    assert np.allclose(ds.x_train.min(axis=0), 0) and np.allclose(ds.x_train.max(axis=0), 1)
    assert ds.x_test.min() >= 0 and ds.x_test.max() <= 1
    assert list(ds.y_train) == [-1] * 4 + [1] * 4 and (ds.y_test == -1).sum() == (ds.y_test == 1).sum()
    # DEG on the training patients only: the 16 genes of smallest Welch t-test p-value among them
    deg = ds.extras["pipeline"].reducer
    p = stats.ttest_ind(g_tr[ds.y_train > 0], g_tr[ds.y_train < 0], equal_var=False).pvalue
    assert deg.selected_.tolist() == sorted(np.argsort(p, kind="stable")[:16].tolist())
    assert ds.stats["class_variance/inter_class"] > 0
    # same seed -> same balanced cohort and gene space; dissimilar pairs are further apart than similar ones
    inter = {k: v.stats["class_variance/inter_class"] for k, v in data.items()}
    assert data["similar"].stats["cohort/n_genes"] == ds.stats["cohort/n_genes"]
    assert inter["dissimilar"] > inter["similar"]


def test_pca_inverts_to_gene_space(gdc_dir: Path) -> None:
    task = get_task("genetic-pca")
    cfg = resolve_config(task, "smoke", {"data.path": str(gdc_dir), "data.reduce.dim": 23}, "random", 0)
    ds = cfg.data.load(0)
    pipe = ds.extras["pipeline"]
    back = pipe.to_genes(ds.x_train)
    assert back.shape == ds.extras["genes_train"].shape
    assert np.abs(back - ds.extras["genes_train"]).max() < 1e-6  # 23 components of 24 samples: exact


# table 1, gene-space scores and the square-image view on hand-made inputs: tests/test_analysis_genetic.py


def test_gse7390_stand_in_smoke(tracking_uri: str) -> None:
    args = ["run", "genetic-sdae", "--profile", "smoke", "--set", "data.source=gse7390"]
    args += ["--set", "data.selection=dissimilar", "--tracking-uri", tracking_uri]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("genetic-sdae")
    child = next(r for r in client.search_runs([exp.experiment_id]) if r.data.tags["bench.kind"] == "child")
    assert "stand-in: GSE7390" in child.data.tags["bench.source"]
    assert child.data.metrics["cohort/n_per_class"] == 64  # 64 ER-negative of 198 tumours
    assert child.data.metrics["cohort/n_genes"] == 76 and "gene/mae_mean" in child.data.metrics
