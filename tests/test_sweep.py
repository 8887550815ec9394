"""`bench run --sweep`: parsing, typed checks, the cross product with the series, tags, columns and trends."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import ConfigError
from bench.experiment import resolve_config
from bench.registry import Profile, Task
from bench.runner import plan
from bench.sweep import check_sweeps, expand, parse_sweeps, sweep_trends, swept_keys
from bench.tasks import get_task
from bench.tasks.blobs import BlobData

TINY = {
    "data.n_per_class": "2",
    "data.n_test_per_class": "4",
    "train.max_epochs": "300",
    "attack.steps": "10",
    "attack.eval_every": "10",
}


def test_parse_keeps_keys_and_values_in_order() -> None:
    got = parse_sweeps(["train.weight_decay=0, 1e-3", "model.width=50,200,400"])
    assert got == {"train.weight_decay": ("0", "1e-3"), "model.width": ("50", "200", "400")}
    assert parse_sweeps(None) == {}


@pytest.mark.parametrize(
    ("texts", "needle"),
    [
        (["model.width"], "KEY=V1,V2"),
        (["model.width="], "empty value"),
        (["model.width=50,,200"], "empty value"),
        (["model.width=50", "model.width=60"], "given twice"),
    ],
)
def test_bad_sweep_text_is_refused(texts: list[str], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        parse_sweeps(texts)


@pytest.mark.parametrize(
    ("sweeps", "overrides", "needle"),
    [
        ({"model.widht": ("50",)}, {}, "unknown config key 'model.widht'"),
        ({"model.width": ("50", "wide")}, {}, "expected int"),
        ({"model.width": ("0",)}, {}, "model.width"),
        ({"train.weight_decay": ("-1",)}, {}, "train.weight_decay"),
        ({"train.weight_decay": ("0.001", "1e-3")}, {}, "repeats a value"),
        ({"seed": ("1", "2")}, {}, "--seeds"),
        ({"model.width": ("50", "60")}, {"model.width": "70"}, "both --set and --sweep"),
    ],
)
def test_bad_keys_and_values_name_the_key(sweeps, overrides, needle: str) -> None:
    base = resolve_config(get_task("blobs-rect"), "smoke", overrides)
    with pytest.raises(ConfigError, match=needle):
        check_sweeps(base, sweeps, overrides)


def test_values_are_typed_by_the_config() -> None:
    base = resolve_config(get_task("blobs-rect"), "smoke")
    typed = check_sweeps(base, {"model.width": ("50", "2e2"), "model.bias": ("none", "first")})
    assert typed == {"model.width": (50, 200), "model.bias": ("none", "first")}


def test_expand_is_the_cross_product_first_key_slowest() -> None:
    assert expand({}) == [{}]
    assert expand({"a": (1, 2), "b": ("x", "y")}) == [
        {"a": 1, "b": "x"},
        {"a": 1, "b": "y"},
        {"a": 2, "b": "x"},
        {"a": 2, "b": "y"},
    ]


def test_plan_crosses_the_sweeps_with_the_series_and_seeds() -> None:
    task = get_task("blobs-rect")
    series = task.profiles["smoke"].series
    sweeps = {"train.weight_decay": ("0", "0.001"), "model.width": ("50", "200")}
    points = plan(task, "smoke", 2, {}, sweeps)
    assert len(points) == len(series) * 2 * 2 * 2
    seen = {(c.data.blob_size, c.train.weight_decay, c.model.width, c.seed) for _, _, c in points}
    assert seen == {(b, wd, w, s) for b in series for wd in (0.0, 0.001) for w in (50, 200) for s in (0, 1)}


def test_a_swept_series_key_replaces_the_series() -> None:
    points = plan(get_task("blobs-rect"), "smoke", 1, {}, {"data.blob_size": ("2", "3", "7")})
    assert [c.data.blob_size for _, _, c in points] == [2, 3, 7]


def test_pinning_the_series_key_on_a_grid_profile_keeps_the_grid() -> None:
    """`--set data.blob_size=100` on blobs-rect's defence grid (points of DP level x cell, no blob size):
    every grid point runs at blob size 100. It once collapsed the grid to one plain-training point."""
    task = get_task("blobs-rect")
    grid = task.profiles["defences"].series
    points = plan(task, "defences", 1, {"data.blob_size": "100"})
    assert len(points) == len(grid) > 1
    assert {c.data.blob_size for _, _, c in points} == {100}
    assert sum(c.train.dp for _, _, c in points) == sum(p["train.dp"] for p in grid)


def test_a_swept_grid_key_leaves_the_grid() -> None:
    grid = ({"data.blob_size": 1, "model.width": 10}, {"data.blob_size": 4, "model.width": 20})
    task = Task(
        "grid-toy", "toy", BlobData(), {p: Profile({}, series=grid) for p in ("smoke", "quick", "paper")}
    )
    points = plan(task, "smoke", 1, {}, {"model.width": ("30", "40")})
    got = sorted((c.data.blob_size, c.model.width) for _, _, c in points)
    assert got == [(1, 30), (1, 40), (4, 30), (4, 40)]


def test_sweep_trends_find_a_planted_trend_per_key_and_skip_categorical_axes() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for seed in range(5):
        for wd in (0.0, 1e-3, 1e-2):
            for width in (50, 200):
                err = 0.5 - 10 * wd + rng.normal(0, 0.001)  # falls with weight decay, flat in width
                rows.append(
                    {
                        "seed": seed,
                        "sweep.train.weight_decay": wd,
                        "sweep.model.width": width,
                        "sweep.model.bias": "none",
                        "error": err,
                        "membership/auc": 0.5 + wd,
                    }
                )
    table = pd.DataFrame(rows)
    trends = sweep_trends(table, ["train.weight_decay", "model.width", "model.bias"], n_boot=300)
    assert trends["trend/sweep/train.weight_decay/error/spearman_rho"] == -1.0
    assert trends["trend/sweep/train.weight_decay/error/slope_hi"] < 0
    assert trends["trend/sweep/train.weight_decay/membership/auc/spearman_rho"] == 1.0
    assert trends["trend/sweep/model.width/error/n_points"] == 2
    assert (
        trends["trend/sweep/model.width/error/diff_lo"] < 0 < trends["trend/sweep/model.width/error/diff_hi"]
    )
    assert not any("model.bias" in k or "memorised" in k for k in trends)  # categorical; absent metric
    assert swept_keys(table) == ["train.weight_decay", "model.width", "model.bias"]


def test_bad_sweep_exits_2_before_the_store_is_touched(tmp_path: Path) -> None:
    db = tmp_path / "never.db"
    out = CliRunner().invoke(
        app,
        [
            "run",
            "blobs-rect",
            "--profile",
            "smoke",
            "--sweep",
            "model.width=50,x",
            "--tracking-uri",
            f"sqlite:///{db}",
        ],
    )
    assert out.exit_code == 2, out.output
    assert "model.width" in out.output and "fix:" in out.output
    assert not db.exists()


def test_run_logs_a_child_per_point_with_sweep_tags_and_a_trend_per_key(tracking_uri: str) -> None:
    """The issue's acceptance command, at a tiny scale: 2 x 2 x (series) children, tagged, and trends."""
    args = ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri]
    args += ["--sweep", "train.weight_decay=0,0.001", "--sweep", "model.width=50,200"]
    for key, value in TINY.items():
        args += ["--set", f"{key}={value}"]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("blobs-rect")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("bench.kind") == "child"]
    (parent,) = [r for r in runs if r.data.tags.get("bench.kind") == "parent"]
    series = get_task("blobs-rect").profiles["smoke"].series
    points = {
        (
            r.data.tags["bench.series_value"],
            r.data.tags["bench.sweep.train.weight_decay"],
            r.data.tags["bench.sweep.model.width"],
        )
        for r in children
    }
    assert len(children) == len(points) == len(series) * 4
    assert {p[1:] for p in points} == {("0.0", "50"), ("0.0", "200"), ("0.001", "50"), ("0.001", "200")}
    for r in children:  # the tag is the value the child actually ran with
        assert r.data.params["model.width"] == r.data.tags["bench.sweep.model.width"]
        assert r.data.params["train.weight_decay"] == r.data.tags["bench.sweep.train.weight_decay"]
    table = pd.read_csv(
        client.download_artifacts(parent.info.run_id, "series.csv", str(Path(tracking_uri[10:]).parent))
    )
    assert {"sweep.train.weight_decay", "sweep.model.width"} <= set(table.columns)
    assert sorted(table["sweep.model.width"].unique()) == [50, 200]
    metrics = parent.data.metrics
    for key in ("train.weight_decay", "model.width"):
        assert metrics[f"trend/sweep/{key}/error/n_points"] == 2
        assert np.isfinite(metrics[f"trend/sweep/{key}/error/slope"])
    assert parent.data.params["sweep.model.width"] == "50,200"
