"""What bench prints: task descriptions (`bench list -v`, `bench run --help`), the summary table, progress."""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import pandas as pd
from typer.testing import CliRunner

from bench import console
from bench.cli import app
from bench.tasks import get_task

runner = CliRunner()


def _profile_line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if re.match(rf"\s+{name}\s+\d+ seeds?\s", line))


def test_list_v_task_shows_profiles_series_seeds_and_every_key_with_its_default() -> None:
    out = runner.invoke(app, ["list", "-v", "blobs-rect"])
    assert out.exit_code == 0, out.output
    task = get_task("blobs-rect")
    for name, prof in task.profiles.items():
        line = _profile_line(out.output, name)
        assert f" {prof.seeds} seed" in line
        if prof.series and not isinstance(prof.series[0], dict):
            assert "series: " + ", ".join(map(str, prof.series)) in line
    assert "series axis: data.blob_size" in out.output
    keys = dict(re.findall(r"^\s{4}([a-z_]+(?:\.[a-z_]+)*)\s+(\S+)\s", out.output, re.M))
    assert keys["data.shape"] == "rect" and keys["data.blob_size"] == "1"
    assert keys["attack.lr"] == "0.03" and keys["model.depth"] == "3" and keys["seed"] == "0"
    smoke = task.profiles["smoke"].overrides
    assert f"model.width={smoke['model.width']}" in out.output  # the smoke profile's overrides


def test_list_v_shows_a_task_changed_default_and_keys_that_need_setting() -> None:
    faces = runner.invoke(app, ["list", "-v", "faces-pair"]).output
    assert re.search(r"attack\.lr\s+0\.003\s", faces)  # faces-pair's own default, not the shared 0.01
    genetic = runner.invoke(app, ["list", "-v", "genetic-deg"])
    assert genetic.exit_code == 0, genetic.output  # described although data.path is unset
    assert re.search(r"data\.reduce\.name\s+deg\s", genetic.output)
    assert "data.selection" in genetic.output


def test_list_v_without_names_describes_every_task_then_the_shared_keys_once() -> None:
    out = runner.invoke(app, ["list", "-v"])
    assert out.exit_code == 0, out.output
    from bench.tasks import all_tasks

    for name in all_tasks():
        assert re.search(rf"^{re.escape(name)}: ", out.output, re.M), name
    assert out.output.count("shared config keys") == 1
    assert re.search(r"^\s+attack\.steps\s+1000\s", out.output, re.M)


def test_list_v_unknown_task_exits_2() -> None:
    out = runner.invoke(app, ["list", "-v", "no-such-task"])
    assert out.exit_code == 2 and "unknown task 'no-such-task'" in out.output


def test_run_help_lists_shared_keys_and_points_to_list_v() -> None:
    out = runner.invoke(app, ["run", "--help"], terminal_width=140)
    assert out.exit_code == 0
    assert "attack.lr=0.03" in out.output and "model.depth=3" in out.output
    assert "bench list -v TASK" in out.output


@dataclass
class _Inner:
    k: int = 2


@dataclass
class _Outer:
    mode: Literal["x", "y"] = "y"
    inner: _Inner | None = None


def test_type_names_in_words() -> None:
    assert console.type_name(Literal["a", "b"]) == "a | b"
    assert console.type_name(int | None) == "int or none"
    assert console.type_name(tuple[int, ...]) == "ints, comma-separated"

    assert console.config_keys(_Outer(inner=_Inner())) == [("mode", "y", "x | y"), ("inner.k", 2, "int")]


def test_series_values_summarised_as_a_grid_only_when_they_are_one() -> None:
    grid = tuple({"a": a, "b": b} for a in (1, 2) for b in ("x", "y", "z"))
    assert console._series(grid) == "a = 1, 2 x b = x, y, z (6 points)"
    partial = grid[:5]
    assert console._series(partial).startswith("{a=1, b=x}, {a=1, b=y}")
    assert console._series(tuple(range(20))) == ", ".join(map(str, range(16))) + ", ... (20 points)"
    assert console._series(()) == "one point (no series)"


def test_print_summary_shows_the_primary_metric_and_sweep_columns(capsys, tmp_path) -> None:
    table = pd.DataFrame(
        {
            "series_value": [1, 25],
            "seed": [0, 0],
            "sweep.train.lr": [0.5, 1.0],
            "dssim_mean": [0.123456, 0.5],
            "primary": ["dssim_mean", "dssim_mean"],
            "baseline/heldout/dssim_mean": [0.3, 0.4],
        }
    )
    trend = {"trend/error/slope": 0.25, "trend/dssim_mean/slope": 0.5, "runs/used": 2.0, "runs/total": 2.0}
    summary = SimpleNamespace(table=table, trend=trend, parent_run_id="P1", experiment_id="7")
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # no store there: the verdicts are not read back
    console.print_summary(get_task("blobs-rect"), summary, uri)
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "series" in line and "attack" in line)
    assert (
        header.index("series") < header.index("train.lr") < header.index("attack") < header.index("held-out")
    )
    # short headers, and the legend under the table names every metric column's metric
    legend = " ".join(out.split("\n\n")[-1].split())  # the lines under the table, unwrapped
    assert "attack: dssim_mean, the attack's candidates" in legend
    assert "held-out: baseline/heldout/dssim_mean" in legend
    assert "0.1235" in out and "primary metric dssim_mean" in out and "2 runs, 2 in the trends" in out
    assert "trend/error/slope" not in out  # the raw trends are on the parent run (and behind -v)
    assert not (tmp_path / "store").exists()  # reading back never creates a store
    assert "parent run P1 in experiment 7" in out
    assert "#/experiments/7?workflowType=machine_learning" in out  # the runs table, not the GenAI view
    assert f"bench report --run P1 --tracking-uri {uri} --out report" in out
    console.print_summary(get_task("blobs-rect"), summary, uri, verbose=True)
    out = capsys.readouterr().out
    assert "trend/error/slope = 0.25" in out and "trend/dssim_mean/slope" not in out
    assert "baseline/heldout/dssim_mean" in next(line for line in out.splitlines() if "train.lr" in line)


def test_the_series_table_fits_100_columns_without_cut_headers(capsys, tmp_path) -> None:
    """Every column of the blob tasks' table, with values as wide as 4 significant digits make them."""
    row = {k.replace("PRIMARY", "ncc_dist_mean"): 0.06667 for k in console.SUMMARY_COLS}
    row |= {"series_value": 100, "seed": 4, "primary": "ncc_dist_mean"}
    summary = SimpleNamespace(table=pd.DataFrame([row, row]), trend={}, parent_run_id="P", experiment_id="1")
    console.print_summary(get_task("blobs-rect"), summary, f"sqlite:///{tmp_path / 'none.db'}")
    out = capsys.readouterr().out
    table = out.split("series:")[0] if "series:" in out else out
    lines = [ln for ln in out.splitlines() if "0.06667" in ln or "seed" in ln]
    assert lines and all(len(ln) <= 100 for ln in lines), [len(ln) for ln in lines]
    assert "…" not in table
    for head, _ in console.SUMMARY_COLS.values():
        assert head.split()[0] in table


def test_progress_closes_a_phase_that_stopped_early() -> None:
    with console.Progress() as progress:
        hooks = progress.hooks("run 1", 1)
        hooks.on_phase("train", 100)
        hooks.on_epoch(40, 1e-3)  # target loss reached at epoch 40 of 100
        hooks.on_phase("attack", 30)
        for step in range(30):
            hooks.on_step(step, [0.5])
        bars = {t.description: t for t in progress._progress.tasks}
    assert bars["run 1 train"].total == 40 and bars["run 1 train"].finished
    assert bars["run 1 attack"].completed == 30 and bars["run 1 attack"].finished


def test_tune_results_name_the_study_the_best_trial_and_how_to_continue(capsys) -> None:
    result = SimpleNamespace(
        stage="attack",
        study="s1",
        n_complete=3,
        n_pruned=1,
        n_target=6,
        n_failed=2,
        parent_run_id="P",
        experiment_id="4",
        best_trial=2,
        best_value=0.1234567,
        best_params={"attack.lr": 0.01},
        spearman=0.5,
        finished=False,
        command="bench run blobs-rect --set attack.lr=0.01",
    )
    console.print_tune_results([result])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "attack study 's1': 4/6 finished (1 pruned, 2 failed); parent run P in experiment 4"
    assert "best trial 2: value 0.123457" in lines[1] and "rho" in lines[2] and "0.500" in lines[2]
    assert "not finished (timeout)" in lines[3]
    assert lines[-1] == "  bench run blobs-rect --set attack.lr=0.01"
