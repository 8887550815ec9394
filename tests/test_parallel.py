"""--jobs (worker processes), --shard/--group (slices of a series merged by group) and `bench summarise`."""

from __future__ import annotations

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app
from bench.errors import BenchInputError
from bench.parallel import group_table, parse_shard, shard_points
from bench.tracking import Tracker

runner = CliRunner()
# the smoke series (2 points), made small; one torch thread per run in both modes
SMALL = [
    "--profile",
    "smoke",
    "--set",
    "threads=1",
    "--set",
    "attack.steps=60",
    "--set",
    "attack.eval_every=20",
]
SMALL += ["--set", "data.n_per_class=3", "--set", "model.width=40", "--set", "train.max_epochs=500"]
METRICS_ONLY = [*SMALL, "--set", "log.arrays=false", "--set", "log.images=false"]


def _timing(column: str) -> bool:
    """Columns that measure time (train_s, attack_s, ...), which may differ between runs."""
    return column.endswith("_s") or "seconds" in column


def _run(*args: str) -> None:
    out = runner.invoke(app, list(args))
    assert out.exit_code == 0, out.output


def _parent(client: MlflowClient, experiment: str, extra: str = "") -> object:
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'parent'" + extra)
    assert len(runs) == 1
    return runs[0]


def _series(client: MlflowClient, run_id: str, tmp_path) -> pd.DataFrame:
    path = client.download_artifacts(run_id, "series.csv", str(tmp_path))
    table = pd.read_csv(path)
    return table[[c for c in table.columns if not _timing(c)]]


def test_jobs_auto_gives_the_series_of_jobs_1_at_one_thread(tracking_uri: str, tmp_path) -> None:
    """--jobs auto (the default: one worker per core, one thread each; here 2 workers on 2 cores)."""
    uri = ["--tracking-uri", tracking_uri]
    _run("run", "blobs-rect", *SMALL, *uri, "--experiment", "one", "--jobs", "1")
    unpinned = SMALL[:2] + SMALL[4:]  # threads left to --jobs auto
    assert SMALL[2:4] == ["--set", "threads=1"] and "threads=1" not in unpinned
    _run("run", "blobs-rect", *unpinned, *uri, "--experiment", "two", "--jobs", "auto")
    client = MlflowClient(tracking_uri)
    one, two = _parent(client, "one"), _parent(client, "two")
    t1, t2 = (
        _series(client, one.info.run_id, tmp_path / "1"),
        _series(client, two.info.run_id, tmp_path / "2"),
    )
    assert len(t1) == 2 and len(t1.columns) > 20
    pd.testing.assert_frame_equal(t1, t2)  # same rows, same order, same values
    children = client.search_runs([two.info.experiment_id], "tags.`bench.kind` = 'child'")
    assert len(children) == 2
    for r in children:  # logged by the workers into the one parent
        assert r.data.tags["mlflow.parentRunId"] == two.info.run_id
        assert r.info.status == "FINISHED" and r.data.params["threads"] == "1"
        assert r.data.tags["threads"] == "1" and r.data.tags["device"] == "cpu"  # provenance, as a plain run
        assert "bench.version" in r.data.tags and "torch.version" in r.data.tags


def test_a_failed_run_under_jobs_exits_1_with_every_run_ended(tracking_uri: str) -> None:
    args = ["run", "blobs-rect", *METRICS_ONLY, "--seeds", "2", "--jobs", "2", "--tracking-uri", tracking_uri]
    out = runner.invoke(app, [*args, "--set", "train.lr=1e9", "--set", "train.log_every=1"])
    assert out.exit_code == 1 and "run failed" in out.output, out.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("blobs-rect").experiment_id])
    parents = [r.info.status for r in runs if r.data.tags["bench.kind"] == "parent"]
    children = [r.info.status for r in runs if r.data.tags["bench.kind"] == "child"]
    assert parents == ["FAILED"] and "FAILED" in children
    assert "RUNNING" not in children  # runs in progress finish before the parent is marked FAILED


def test_jobs_sets_threads_to_the_cores_shared_out(tracking_uri: str) -> None:
    from bench.parallel import threads_per_job, with_threads
    from bench.runner import plan
    from bench.tasks import get_task

    points = plan(get_task("blobs-rect"), "smoke", 1, {})
    assert all(cfg.threads == 0 for _, _, cfg in points)
    assert [cfg.threads for _, _, cfg in with_threads(points, 3)] == [3, 3]
    pinned = plan(get_task("blobs-rect"), "smoke", 1, {"threads": "1"})
    assert [cfg.threads for _, _, cfg in with_threads(pinned, 3)] == [1, 1]  # the user's value holds
    assert threads_per_job(1) >= threads_per_job(2) >= 1


def test_shards_of_a_group_merge_into_the_unsharded_series(tracking_uri: str, tmp_path) -> None:
    uri = ["--tracking-uri", tracking_uri]
    _run("run", "blobs-rect", *METRICS_ONLY, "--seeds", "2", *uri, "--experiment", "whole")
    shard = [
        "run",
        "blobs-rect",
        *METRICS_ONLY,
        "--seeds",
        "2",
        *uri,
        "--experiment",
        "split",
        "--group",
        "g",
    ]
    _run(*shard, "--shard", "2/2")  # gets runs 1 and 3 of the plan: (1, seed 1), (25, seed 1)
    tracker = Tracker(tracking_uri)
    with pytest.raises(BenchInputError, match="lacks finished shards 1/2"):
        group_table(tracker, "split", "g")
    out = runner.invoke(app, ["summarise", "blobs-rect", "--group", "g", *uri, "--experiment", "split"])
    assert out.exit_code == 2 and "1/2" in out.output
    _run(*shard, "--shard", "1/2")

    client = MlflowClient(tracking_uri)
    split = client.get_experiment_by_name("split").experiment_id
    children = client.search_runs([split], "tags.`bench.kind` = 'child' and tags.`bench.group` = 'g'")
    pairs = sorted((r.data.tags["bench.series_value"], r.data.tags["bench.seed"]) for r in children)
    assert pairs == [("1", "0"), ("1", "1"), ("25", "0"), ("25", "1")]  # every run exactly once
    shards = {r.data.tags["bench.shard"] for r in client.search_runs([split], "tags.`bench.kind` = 'parent'")}
    assert shards == {"1/2", "2/2"}

    out = runner.invoke(app, ["summarise", "blobs-rect", "--group", "g", *uri, "--experiment", "split"])
    assert out.exit_code == 0, out.output
    assert "What these 4 runs say" in out.output  # the claims judged on both shards' children
    summary = client.search_runs([split], "tags.`bench.kind` = 'group'")
    assert len(summary) == 1 and summary[0].data.tags["bench.group"] == "g"
    whole = _parent(client, "whole")
    t_whole = _series(client, whole.info.run_id, tmp_path / "w")
    t_group = _series(client, summary[0].info.run_id, tmp_path / "g")
    pd.testing.assert_frame_equal(t_whole, t_group)  # the plan's order restored from the slices
    trend = {k: v for k, v in whole.data.metrics.items() if k.startswith("trend/")}
    assert trend and {k: summary[0].data.metrics[k] for k in trend} == trend


def test_parse_shard_and_slices() -> None:
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "2", "a/b", "2/0", ""):
        with pytest.raises(BenchInputError, match="fix:"):
            parse_shard(bad)
    points = [(k, 0, None) for k in range(7)]
    slices = [shard_points(points, (i, 3)) for i in (1, 2, 3)]
    assert [[p[0] for p in s] for s in slices] == [[0, 3, 6], [1, 4], [2, 5]]
    with pytest.raises(BenchInputError, match="at most 7 shards"):
        shard_points(points, (8, 8))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--shard", "1/2"], "--shard needs --group"),
        (["--shard", "3/2", "--group", "g"], "bad --shard '3/2'"),
        (["--group", "a b", "--shard", "1/2"], "bad --group 'a b'"),
    ],
)
def test_bad_shard_or_group_exits_2(args: list[str], needle: str, tracking_uri: str) -> None:
    out = runner.invoke(
        app, ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri, *args]
    )
    assert out.exit_code == 2, out.output
    assert needle in out.output and "Traceback" not in out.output
