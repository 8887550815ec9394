"""`bench run` interrupted (SIGTERM, SIGINT, SIGKILL) and `bench run --resume`: the runs in progress and the
parent end KILLED, the finished ones are kept, and the resumed series is the uninterrupted one."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app
from bench.provenance import process_gone, process_tags
from bench.work import read_row, row_json

runner = CliRunner()
BENCH = str(Path(sys.executable).parent / "bench")
# the smoke series (blob sizes 1 and 25) at 2 seeds = 4 runs of ~1 s, one torch thread each, no images
SMALL = ["blobs-rect", "--profile", "smoke", "--seeds", "2", "--set", "threads=1"]
SMALL += ["--set", "attack.steps=60", "--set", "attack.eval_every=20", "--set", "data.n_per_class=3"]
SMALL += ["--set", "model.width=40", "--set", "train.max_epochs=500"]
SMALL += ["--set", "log.arrays=false", "--set", "log.images=false"]
# the interrupted runs last long enough (attack steps) to be caught in progress
SLOW = [*SMALL, "--set", "attack.steps=1500", "--set", "attack.eval_every=500"]


def _timing(column: str) -> bool:
    return column.endswith("_s") or "seconds" in column


def _runs(uri: str, kind: str, experiment: str = "blobs-rect") -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`bench.kind` = '{kind}'")


def _statuses(uri: str, kind: str) -> list[str]:
    return sorted(r.info.status for r in _runs(uri, kind))


def _series(uri: str, run_id: str, tmp_path: Path) -> pd.DataFrame:
    path = MlflowClient(uri).download_artifacts(run_id, "series.csv", str(tmp_path))
    table = pd.read_csv(path)
    return table[[c for c in table.columns if not _timing(c)]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """The uninterrupted SLOW series (serial, in this process) in a store of its own: its series table."""
    from mlflow_store import fresh_store

    folder = tmp_path_factory.mktemp("reference")
    uri = fresh_store(folder)
    out = runner.invoke(app, ["run", *SLOW, "--jobs", "1", "--tracking-uri", uri])
    assert out.exit_code == 0, out.output
    (parent,) = _runs(uri, "parent")
    assert len(_runs(uri, "child")) == 4
    return _series(uri, parent.info.run_id, folder / "table")


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen([BENCH, "run", *args], stdout=out, stderr=subprocess.STDOUT)


def _wait_for_finished_child(proc: subprocess.Popen, uri: str, log: Path, n: int = 1) -> None:
    """Until `n` child runs are FINISHED and another is RUNNING with curves logged (90 s at most)."""
    deadline = time.monotonic() + 90
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            runs = _runs(uri, "child")
        except Exception:  # the store is being created
            runs = []
        status = [r.info.status for r in runs]
        if status.count("FINISHED") >= n and any(r.info.status == "RUNNING" and r.data.metrics for r in runs):
            return
        if time.monotonic() > deadline:
            pytest.fail(f"no run in progress after {n} finished: {status}\n{log.read_text()}")
        time.sleep(0.1)


def _resume_command(log: Path) -> list[str]:
    """The command of the line 'interrupted by ...; resume with: bench run ...'."""
    lines = [ln for ln in log.read_text().splitlines() if ln.startswith("interrupted by")]
    assert len(lines) == 1, log.read_text()
    return shlex.split(lines[0].split("resume with: ", 1)[1])


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "jobs"), [(signal.SIGTERM, "2"), (signal.SIGINT, "1")])
def test_a_signal_mid_series_ends_runs_killed_and_the_resume_gives_the_uninterrupted_series(
    sig: int, jobs: str, reference: pd.DataFrame, tracking_uri: str, tmp_path: Path
) -> None:
    args = [*SLOW, "--jobs", jobs, "--tracking-uri", tracking_uri]
    log = tmp_path / "run.log"
    proc = _start(args, log)
    try:
        _wait_for_finished_child(proc, tracking_uri, log)
        proc.send_signal(sig)
        rc = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert rc == 128 + sig, log.read_text()
    line = next(ln for ln in log.read_text().splitlines() if ln.startswith("interrupted by"))
    assert re.search(rf"interrupted by {signal.Signals(sig).name}: \d of 4 runs finished", line), line
    assert "Traceback" not in log.read_text()
    parents, children = _statuses(tracking_uri, "parent"), _statuses(tracking_uri, "child")
    assert parents == ["KILLED"] and "RUNNING" not in children and "KILLED" in children, children
    killed = [r for r in _runs(tracking_uri, "child") if r.info.status == "KILLED"]
    # the run in progress keeps its curves; a worker may have made its next run just before the signal
    # reached it (the parent passes the signal on within ~0.1 s): KILLED with nothing logged, nothing lost
    assert any(r.data.metrics.get("train/loss") for r in killed), "a killed run keeps the curves it logged"
    assert all(r.data.metrics.get("train/loss") or not r.data.metrics for r in killed)
    n_done = children.count("FINISHED")

    command = _resume_command(log)
    assert command[-1] == "--resume" and command[1:-1] == ["run", *args]
    out = runner.invoke(app, command[1:])  # the printed command, as given
    assert out.exit_code == 0, out.output
    (parent,) = _runs(tracking_uri, "parent")  # the same parent, reopened and FINISHED
    assert parent.info.status == "FINISHED" and parent.data.tags["bench.resumed"] == "true"
    finished = [r for r in _runs(tracking_uri, "child") if r.info.status == "FINISHED"]
    assert len(finished) == 4  # as many as the uninterrupted series: the finished ones were not run again
    pairs = sorted((r.data.tags["bench.series_value"], r.data.tags["bench.seed"]) for r in finished)
    assert pairs == [("1", "0"), ("1", "1"), ("25", "0"), ("25", "1")]
    assert parent.data.metrics["runs/total"] == 4
    pd.testing.assert_frame_equal(_series(tracking_uri, parent.info.run_id, tmp_path / "res"), reference)
    assert n_done < 4

    # bench report counts every pair once
    report = runner.invoke(app, ["report", "--tracking-uri", tracking_uri, "--out", str(tmp_path / "r")])
    assert report.exit_code == 0 and "(4 runs)" in report.output, report.output


@pytest.mark.slow
def test_a_sigkilled_series_is_found_stale_and_resumed(
    reference: pd.DataFrame, tracking_uri: str, tmp_path: Path
) -> None:
    """`bench run --jobs 2` SIGKILLed: its workers see it gone, end their runs KILLED and exit; the parent,
    left RUNNING, is found stale by the resume, which completes the series."""
    args = [*SLOW, "--jobs", "2", "--tracking-uri", tracking_uri]
    log = tmp_path / "run.log"
    proc = _start(args, log)
    try:
        _wait_for_finished_child(proc, tracking_uri, log)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert _statuses(tracking_uri, "parent") == ["RUNNING"]  # nothing could mark it
    deadline = time.monotonic() + 30
    while any(
        not process_gone(r.data.tags) for r in _runs(tracking_uri, "child") if r.info.status == "RUNNING"
    ):
        assert time.monotonic() < deadline, "the orphaned workers did not end"
        time.sleep(0.2)
    assert "KILLED" in _statuses(tracking_uri, "child")  # marked by the workers themselves

    out = runner.invoke(app, ["run", *args, "--resume"])
    assert out.exit_code == 0, out.output
    assert re.search(r"marked KILLED \d run\(s\) left RUNNING by a process that is gone", out.output)
    (parent,) = _runs(tracking_uri, "parent")
    assert parent.info.status == "FINISHED"
    children = _statuses(tracking_uri, "child")
    assert children.count("FINISHED") == 4 and "RUNNING" not in children
    pd.testing.assert_frame_equal(_series(tracking_uri, parent.info.run_id, tmp_path / "res"), reference)


def test_resume_with_a_changed_set_runs_what_changed_and_nothing_else(
    tracking_uri: str, tmp_path: Path
) -> None:
    uri = ["--tracking-uri", tracking_uri, "--jobs", "1"]
    out = runner.invoke(app, ["run", *SMALL, *uri])
    assert out.exit_code == 0, out.output
    first = {r.info.run_id for r in _runs(tracking_uri, "child")}
    assert len(first) == 4

    again = runner.invoke(app, ["run", *SMALL, *uri, "--resume"])  # nothing left: no new parent
    assert again.exit_code == 0 and "all 4 runs of this series are already FINISHED" in again.output
    assert len(_runs(tracking_uri, "parent")) == 1
    # what a run saves and where it runs are not what it computes: still nothing to run
    same = ["--set", "log.images=true", "--set", "threads=2"]
    assert "already FINISHED" in runner.invoke(app, ["run", *SMALL, *same, *uri, "--resume"]).output

    # seeds 1 and 2: the seed-1 runs exist, only the seed-2 runs are new
    shifted = runner.invoke(app, ["run", *SMALL, "--set", "seed=1", *uri, "--resume"])
    assert shifted.exit_code == 0, shifted.output
    children = _runs(tracking_uri, "child")
    new = [r for r in children if r.info.run_id not in first]
    assert sorted(r.data.tags["bench.seed"] for r in new) == ["2", "2"]
    parent = next(r for r in _runs(tracking_uri, "parent") if r.data.params.get("set.seed") == "1")
    table = _series(tracking_uri, parent.info.run_id, tmp_path / "s")
    assert sorted(table["seed"]) == [1, 1, 2, 2]  # the summary counts the reused runs, once each

    # a changed attack: every run changes, all run again
    steps = runner.invoke(app, ["run", *SMALL, "--set", "attack.steps=40", *uri, "--resume"])
    assert steps.exit_code == 0, steps.output
    assert len(_runs(tracking_uri, "child")) == len(children) + 4


def test_a_plain_run_over_finished_runs_hints_at_resume(tracking_uri: str) -> None:
    args = ["run", *SMALL, "--seeds", "1", "--tracking-uri", tracking_uri, "--jobs", "1"]
    assert "--resume" not in runner.invoke(app, args).output
    out = runner.invoke(app, args)  # the same again: runs everything again, with a hint
    assert out.exit_code == 0
    assert "note: runs of this series are already FINISHED" in out.output and "--resume" in out.output
    assert len(_runs(tracking_uri, "child")) == 4


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--tracking-uri", "sqlite:////nonexistent/dir/mlflow.db"], "no tracking store at"),
        (["--shard", "1/2"], "--shard needs --group"),
        (["--jobs", "0"], "bad --jobs '0'"),
    ],
)
def test_bad_resume_exits_2_with_one_line(extra: list[str], needle: str, tracking_uri: str) -> None:
    args = ["run", *SMALL, "--resume", *extra]
    if "--tracking-uri" not in extra:
        args += ["--tracking-uri", tracking_uri]
    out = runner.invoke(app, args)
    assert out.exit_code == 2, out.output
    assert needle in out.output and len(out.output.strip().splitlines()) == 1, out.output


def test_a_run_whose_process_is_gone_is_told_apart() -> None:
    mine = process_tags()
    assert mine["bench.host"] == socket.gethostname() and mine["bench.pid"] == str(os.getpid())
    assert not process_gone(mine)
    assert not process_gone(mine | {"bench.host": "another-host"})  # cannot tell: never "gone"
    assert not process_gone({})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert process_gone(mine | {"bench.pid": str(dead.pid)})
    if "bench.pid_start" in mine:  # Linux: a pid taken by a later process is gone too
        assert process_gone(mine | {"bench.pid_start": str(int(mine["bench.pid_start"]) - 1)})


def test_a_series_row_reads_back_as_it_was() -> None:
    row = {"series_value": "4/9", "seed": 2, "grid.classes": (4,), "x": np.float64(0.1) / 3}
    row |= {"nan": float("nan"), "none": None, "n": np.int64(7), "f32": np.float32(0.5), "flag": True}
    back = read_row(row_json(row))
    assert list(back) == list(row) and back["grid.classes"] == (4,) and back["x"] == row["x"]
    assert np.isnan(back["nan"]) and back["none"] is None and back["n"] == 7 and back["f32"] == 0.5


def test_a_signal_while_a_run_is_made_is_held_until_the_run_can_be_marked_killed(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import signals
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment("held")
    create = tracker.client.create_run

    def create_then_sigterm(*args, **kwargs):
        run = create(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # arrives after MLflow made the run, before Tracker.run has it
        return run

    monkeypatch.setattr(tracker.client, "create_run", create_then_sigterm)
    with signals.handled(), pytest.raises(signals.Interrupted) as stopped, tracker.run(exp, "r", {}):
        pytest.fail("the block must not start after the signal")
    assert stopped.value.signum == signal.SIGTERM and stopped.value.exit_code == 143
    (run,) = tracker.client.search_runs([exp])
    assert run.info.status == "KILLED"  # not left RUNNING


@pytest.mark.parametrize("held", [True, False])
def test_a_signal_between_a_runs_creation_and_its_place_on_the_stack_ends_it_killed(
    held: bool, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM after `Tracker.run` made the run and yielded it, before the worker's ExitStack holds its
    end (`bench.signals.enter_context`): the run ends KILLED. `held=False` is a plain `enter_context`, as before:
    the same signal leaves the run RUNNING, which is what the test must be able to see."""
    from contextlib import ExitStack

    from bench import signals
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment(f"window-{held}")
    push = ExitStack._push_cm_exit

    def sigterm_then_push(self, cm, exit):  # the instant between __enter__ and the exit's registration
        signals._handler(signal.SIGTERM, None)  # the handler, run as the signal would run it here
        return push(self, cm, exit)

    monkeypatch.setattr(ExitStack, "_push_cm_exit", sigterm_then_push)
    with signals.handled(), pytest.raises(signals.Interrupted) as stopped, ExitStack() as stack:
        run = tracker.run(exp, "r", {})
        signals.enter_context(stack, run) if held else stack.enter_context(run)
        pytest.fail("the block must not go on after the signal")
    assert stopped.value.signum == signal.SIGTERM
    (made,) = tracker.client.search_runs([exp])
    assert made.info.status == ("KILLED" if held else "RUNNING")


def test_a_signal_inside_a_store_write_is_raised_after_the_write(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM while SQLAlchemy commits a write (the params, as a worker starts a run): the write completes
    and the signal is raised right after it, outside SQLAlchemy (`bench.signals.HeldCalls`); the run ends
    KILLED with its params. Before, `Interrupted` rose inside the commit and the params were lost; in the
    series test under load the store then stayed locked ("database is locked" after 20 s) for both workers."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from bench import signals
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment("inside")
    fired = []

    def sigterm_in_commit(session) -> None:
        if not fired and any(type(o).__name__ == "SqlParam" for o in session.new):
            fired.append(True)
            signals._handler(signal.SIGTERM, None)  # the handler, run as the signal would run it here

    event.listen(Session, "before_commit", sigterm_in_commit)
    try:
        with signals.handled(), pytest.raises(signals.Interrupted), tracker.run(exp, "r", {}) as log:
            log.params({"a": 1, "b": 2})
            pytest.fail("the block must stop right after the write")
    finally:
        event.remove(Session, "before_commit", sigterm_in_commit)
    (run,) = tracker.client.search_runs([exp])
    assert fired and run.info.status == "KILLED"
    assert run.data.params == {"a": "1", "b": "2"}


@pytest.mark.parametrize("call", ["log_batch", "set_terminated"])
def test_a_signal_while_a_finished_run_is_marked_keeps_it_finished_and_stops_the_next(
    call: str, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM as the last curves are sent (`log_batch`) or the status written (`set_terminated`): the run,
    whose work is done, ends FINISHED with its curves, not left RUNNING; the next run is not made."""
    from bench import signals
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment("marked")
    real = getattr(tracker.client, call)

    def signal_then_call(*args, **kwargs):
        if kwargs.get("metrics") or "FINISHED" in args:  # the run's end, not its params
            signal.raise_signal(signal.SIGTERM)  # its handler runs before this returns
        return real(*args, **kwargs)

    monkeypatch.setattr(tracker.client, call, signal_then_call)
    with signals.handled():
        try:
            with tracker.run(exp, "done", {}) as log:
                log.metric("train/loss", 0.5, 3)
        except signals.Interrupted:
            pass  # (what came before: the run was left RUNNING, asserted against below)
        # read beside the tracker: its own next call to the store would raise the held signal
        (run,) = MlflowClient(tracking_uri).search_runs([exp])
        assert run.info.status == "FINISHED" and run.data.metrics == {"train/loss": 0.5}, run.info.status
        with pytest.raises(signals.Interrupted) as stopped, tracker.run(exp, "next", {}):
            pytest.fail("no run may start after the signal")
    assert stopped.value.signum == signal.SIGTERM
    assert len(tracker.client.search_runs([exp])) == 1


def test_a_signal_while_a_failed_run_is_marked_leaves_it_failed(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import signals
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment("failed")
    real = tracker.client.set_terminated

    def signal_then_mark(run_id: str, status: str) -> None:
        signal.raise_signal(signal.SIGTERM)
        real(run_id, status)

    monkeypatch.setattr(tracker.client, "set_terminated", signal_then_mark)
    with signals.handled(), pytest.raises(ValueError, match="bad"), tracker.run(exp, "r", {}):
        raise ValueError("bad")
    (run,) = tracker.client.search_runs([exp])
    assert run.info.status == "FAILED"


def test_summarise_marks_killed_the_runs_whose_process_is_gone(tracking_uri: str) -> None:
    client = MlflowClient(tracking_uri)
    exp = client.create_experiment("blobs-rect")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = client.create_run(exp, tags=process_tags() | {"bench.pid": str(dead.pid), "bench.kind": "child"})
    alive = client.create_run(exp, tags=process_tags() | {"bench.kind": "child"})  # this process
    elsewhere = client.create_run(exp, tags={"bench.host": "another-host", "bench.pid": str(dead.pid)})
    out = runner.invoke(app, ["summarise", "blobs-rect", "--group", "g", "--tracking-uri", tracking_uri])
    assert "marked KILLED 1 run(s) left RUNNING by a process that is gone" in out.output, out.output
    assert out.exit_code == 2  # the group itself has no runs
    status = [client.get_run(r.info.run_id).info.status for r in (gone, alive, elsewhere)]
    assert status == ["KILLED", "RUNNING", "RUNNING"]
    assert client.get_run(gone.info.run_id).data.tags["bench.ended_by"].startswith("its process was gone")


def test_a_signal_that_lands_in_a_finaliser_is_held_and_raised_at_the_next_checkpoint(capsys) -> None:
    """Python cannot pass an exception out of a finaliser (a weakref callback, __del__): a SIGTERM handled
    there printed "Exception ignored ... Traceback" and was lost. It is held instead, silently, and
    `raise_pending` raises it."""
    import gc

    from bench import signals

    class Finalised:
        def __del__(self) -> None:
            signals._handler(signal.SIGTERM, None)  # the handler, run as the signal would run it here

    with signals.handled():
        obj = Finalised()
        del obj
        gc.collect()
        assert "Exception ignored" not in capsys.readouterr().err
        with pytest.raises(signals.Interrupted) as err:
            signals.raise_pending()
        assert err.value.signum == signal.SIGTERM
