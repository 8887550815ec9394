"""The command line: listing, running, and clear exit-2 errors for bad input."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app

runner = CliRunner()
TINY = [
    "--set",
    "data.n_per_class=3",
    "--set",
    "model.width=40",
    "--set",
    "attack.steps=20",
    "--set",
    "attack.eval_every=10",
]


def test_list_names_every_task() -> None:
    out = runner.invoke(app, ["list"])
    assert out.exit_code == 0
    assert "blobs-rect" in out.output and "blobs-walk" in out.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "no-such-task"], "unknown task 'no-such-task'"),
        (["run", "blobs-rect", "--set", "attack.lrr=1"], "unknown config key 'attack.lrr'"),
        (["run", "blobs-rect", "--set", "attack.lr=fast"], "expected float"),
        (["run", "blobs-rect", "--set", "attack.lr=-2"], "attack.lr"),
        (["run", "blobs-rect", "--set", "attack.lr"], "KEY=VALUE"),
        (["run", "blobs-rect", "--profile", "huge"], "unknown profile 'huge'"),
        (["run", "blobs-rect", "--population", "speed=3"], "--population"),
        (["run", "blobs-rect", "--tracking-uri", "/no/scheme/store"], "unusable tracking URI"),
        (["run", "blobs-rect", "--tracking-uri", "sqlite://relative.db"], "three slashes"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(args: list[str], needle: str) -> None:
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert needle in out.output
    assert "Traceback" not in out.output


def test_run_logs_parent_and_children(tracking_uri: str) -> None:
    out = runner.invoke(
        app, ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri, *TINY]
    )
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("blobs-rect")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("bench.kind") == "child"]
    parents = [r for r in runs if r.data.tags.get("bench.kind") == "parent"]
    assert len(parents) == 1 and len(children) == 2
    assert sorted(r.data.tags["bench.series_value"] for r in children) == ["1", "25"]
    for r in children:
        assert r.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert r.data.tags["bench.seed"] == "0" and r.data.tags["bench.task"] == "blobs-rect"
        assert r.info.status == "FINISHED"
        names = {a.path for a in client.list_artifacts(r.info.run_id, "arrays")}
        expected = ("train", "reconstruction", "heldout", "fresh", "margins")
        assert names == {f"arrays/{k}.npz" for k in expected}
        assert len(client.get_metric_history(r.info.run_id, "attack/kkt_fit")) == 20
    parent_files = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"series.csv", "error_vs_series.png", "error_vs_moran.png"} <= parent_files
    # the end of the output: the claims' verdicts in words, then where the runs are
    text = " ".join(out.output.split())
    assert "What these 2 runs say" in text and "error (ncc_dist) " in text
    assert "from 1 to 25 pixels, 1 seed: inconclusive: 1 seed, a verdict needs 3" in text
    pid = parents[0].info.run_id
    assert f"bench report --run {pid} --tracking-uri {tracking_uri} --out report" in out.output
    assert "trend/error" not in out.output  # the raw trend values: on the parent run, and behind -v


def test_population_gives_one_child_per_setting(tracking_uri: str) -> None:
    args = [
        "run",
        "blobs-rect",
        "--profile",
        "smoke",
        "--set",
        "data.blob_size=25",
        "--tracking-uri",
        tracking_uri,
    ]
    out = runner.invoke(app, [*args, *TINY, "--population", "lr=0.01,alpha=100", "--population", "lr=0.003"])
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("blobs-rect").experiment_id], "tags.`bench.kind` = 'child'"
    )
    assert sorted(r.data.params["setting.lr"] for r in runs) == ["0.003", "0.01"]


def test_a_failing_run_exits_1_and_is_marked_failed_with_its_curve(tracking_uri: str) -> None:
    args = ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri, *TINY]
    bad = ["--set", "train.lr=1e9", "--set", "train.log_every=1", "--set", "data.blob_size=25"]
    out = runner.invoke(app, [*args, *bad])
    assert out.exit_code == 1, out.output
    assert "run failed" in out.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("blobs-rect").experiment_id])
    assert runs and all(r.info.status == "FAILED" for r in runs), [
        (r.data.tags.get("bench.kind"), r.info.status) for r in runs
    ]
    child = next(r for r in runs if r.data.tags.get("bench.kind") == "child")
    assert len(client.get_metric_history(child.info.run_id, "train/loss")) >= 1


def test_an_unknown_tracking_uri_scheme_exits_2_naming_the_accepted_ones(tmp_path) -> None:
    out = runner.invoke(app, ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", "foo://bar"])
    assert out.exit_code == 2, out.output
    assert "unsupported tracking URI scheme 'foo'" in out.output
    assert "sqlite://" in out.output and "http://" in out.output and "Traceback" not in out.output
    for cmd in (["report", "--out", str(tmp_path)], ["summarise", "blobs-rect", "--group", "g"]):
        out = runner.invoke(app, [*cmd, "--tracking-uri", "foo://bar"])
        assert out.exit_code == 2 and "unsupported tracking URI scheme 'foo'" in out.output, out.output


@pytest.mark.parametrize("value", ["-3", "x"])
def test_a_bad_first_seed_exits_2_before_the_store_is_touched(value: str, tmp_path) -> None:
    store = tmp_path / "never.db"
    args = ["run", "blobs-rect", "--profile", "smoke", "--set", f"seed={value}"]
    out = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{store}"])
    assert out.exit_code == 2, out.output
    assert "'seed'" in out.output and "Traceback" not in out.output
    assert not store.exists()


def test_set_seed_is_the_first_seed(tracking_uri: str) -> None:
    """--set seed=3 --seeds 2 runs seeds 3 and 4 (it was accepted and ignored: the runs used 0, 1)."""
    args = [
        "run",
        "blobs-rect",
        "--profile",
        "smoke",
        "--seeds",
        "2",
        "--set",
        "seed=3",
        "--set",
        "data.blob_size=4",
    ]
    out = runner.invoke(app, [*args, *TINY, "--tracking-uri", tracking_uri])
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("blobs-rect")
    children = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'child'")
    assert sorted(int(r.data.tags["bench.seed"]) for r in children) == [3, 4]
    assert sorted(int(r.data.params["seed"]) for r in children) == [3, 4]
