"""`bench tune`: a tiny study end to end, resume after SIGKILL, several workers on one study.

The worker tests run real `bench tune` processes: on the embedded journal file and on a PostgreSQL
server (`BENCH_TEST_POSTGRES_URL`, started by `.ci/postgres.sh`; skipped without it, failed in CI).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.cli import app

TASK = "blobs-rect"
TINY = [
    "--profile", "smoke",
    "--set", "data.n_per_class=3",
    "--set", "data.n_test_per_class=4",
    "--set", "model.width=50",
    "--set", "attack.eval_every=10",
    "--heartbeat", "1",
]  # fmt: skip
BENCH = str(Path(sys.executable).parent / "bench")
# Worker processes share 2 cores with the test: one torch thread each (oversubscribed OpenMP crawls).
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _client(uri: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _runs(uri: str, **tags: str) -> list:
    client = _client(uri)
    exps = [e.experiment_id for e in client.search_experiments()]
    query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs(exps, query, max_results=1000)


def _study(storage: str | None, name: str, uri: str):
    import optuna

    from bench.tuning import default_storage_path

    if storage is None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(default_storage_path(name, uri))))
    return optuna.load_study(study_name=name, storage=storage)


def _check_no_lost_or_duplicated(study, uri: str, target: int) -> dict:
    """Finished trials = target; every trial ran once in MLflow (one child run each, under one parent)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    surplus = [t for t in trials if t.user_attrs.get("bench.surplus")]  # a lost race: nothing ran
    trials = [t for t in trials if t not in surplus]
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == target, [(t.number, t.state.name) for t in trials]
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    parents = _runs(uri, **{"bench.kind": "tune-parent", "bench.study": study.study_name})
    assert len(parents) == 1
    children = _runs(uri, **{"bench.kind": "tune-trial", "bench.study": study.study_name})
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    by_number: dict[int, list] = {}
    for c in children:
        by_number.setdefault(int(c.data.tags["bench.trial"]), []).append(c)
    assert sorted(by_number) == sorted(t.number for t in trials)  # one run per trial, none twice
    assert all(len(v) == 1 for v in by_number.values())
    for t in finished:
        run = by_number[t.number][0]
        assert run.info.run_id == t.user_attrs["bench.mlflow_run_id"]
        assert run.info.status == "FINISHED"
    return {"trials": trials, "finished": finished, "children": by_number, "parent": parents[0]}


def test_tune_both_end_to_end(tracking_uri: str, tmp_path: Path) -> None:
    args = ["tune", TASK, "--stage", "both", "--n-trials", "2", "--seed", "0", *TINY]
    args += ["--set", "attack.steps=30", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "bench run blobs-rect --profile smoke --seeds 1" in res.output
    client = _client(tracking_uri)
    for stage in ("classifier", "attack"):
        study = _study(None, f"{TASK}-smoke-{stage}", tracking_uri)
        info = _check_no_lost_or_duplicated(study, tracking_uri, 2)
        parent = info["parent"]
        assert parent.data.tags["bench.stage"] == stage
        names = {a.path for a in client.list_artifacts(parent.info.run_id)}
        assert {"trials.csv", "best.json", "best_command.txt", "optimization_history.png"} <= names
        best = json.loads(
            Path(client.download_artifacts(parent.info.run_id, "best.json", str(tmp_path))).read_text()
        )
        assert best["best_value"] == pytest.approx(parent.data.metrics["best/value"])
        child = next(iter(info["children"].values()))[0]
        assert "trial.train.lr" in child.data.params or "trial.attack.lr" in child.data.params
        if stage == "classifier":
            assert "test_accuracy" in child.data.metrics and "train_loss" in child.data.metrics
        else:
            assert {"objective/oracle", "objective/kkt", "error", "kkt_fit_final"} <= set(child.data.metrics)
            assert len(client.get_metric_history(child.info.run_id, "attack/kkt_fit")) == 30
            assert len(client.get_metric_history(child.info.run_id, "attack/dssim_mean")) == 4
            files = {a.path for a in client.list_artifacts(child.info.run_id)}
            assert {"reconstructions.png", "config.json", "arrays"} <= files
            # the attack stage trained the best classifier of the classifier stage
            clf = _study(None, f"{TASK}-smoke-classifier", tracking_uri).best_params
            assert float(child.data.params["train.lr"]) == pytest.approx(clf["train.lr"])
    # Rerunning the same command resumes: nothing left to do, same parent runs, no new trials.
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "2/2 finished" in res.output
    assert len(_runs(tracking_uri, **{"bench.kind": "tune-parent"})) == 2
    assert len(_runs(tracking_uri, **{"bench.kind": "tune-trial"})) == 4
    # Another search under the same study name is refused before any work.
    res = CliRunner().invoke(app, [*args, "--set", "attack.lr=0.5", "--stage", "attack"])
    assert res.exit_code == 2 and "exists for another search" in res.output, res.output


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--space", "attack.lr=log:1:0.1"], "--space"),
        (["--space", "train.lr=log:0.1:1"], "classifier stage"),
        (["--space", "attack.nope=float:0:1"], "attack.nope"),
        (["--set", "seed=3"], "seed"),
        (["--objective", "truth"], "--objective"),
        (["--storage", "nowhere"], "--storage"),
    ],
)
def test_tune_bad_input_exits_2(tracking_uri: str, extra: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["tune", TASK, *TINY, "--tracking-uri", tracking_uri, *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_resume_after_sigkill(tracking_uri: str, tmp_path: Path) -> None:
    """A worker killed mid-trial: rerunning the command fails that trial (heartbeat) and retries it."""
    from optuna.trial import TrialState

    study_name = "killed"
    args = ["tune", TASK, "--stage", "attack", "--n-trials", "3", "--pruner", "none", "--study", study_name]
    args += [*TINY, "--set", "attack.steps=300", "--tracking-uri", tracking_uri]
    with open(tmp_path / "worker.log", "w") as out:
        proc = subprocess.Popen([BENCH, *args], stdout=out, stderr=subprocess.STDOUT, env=ENV)
    try:

        def mid_trial() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                states = [t.state for t in _study(None, study_name, tracking_uri).get_trials(deepcopy=False)]
            except Exception:  # not created yet
                return False
            return TrialState.COMPLETE in states and TrialState.RUNNING in states

        _wait_for(mid_trial, 60, "a running trial after a complete one")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    killed = [t for t in _study(None, study_name, tracking_uri).get_trials() if t.state == TrialState.RUNNING]
    assert len(killed) == 1

    res = CliRunner().invoke(app, args)  # the same command, again
    assert res.exit_code == 0, res.output
    study = _study(None, study_name, tracking_uri)
    info = _check_no_lost_or_duplicated(study, tracking_uri, 3)
    failed = [t for t in info["trials"] if t.state == TrialState.FAIL]
    assert [t.number for t in failed] == [killed[0].number]
    retries = [t for t in info["finished"] if t.system_attrs.get("failed_trial") == killed[0].number]
    assert len(retries) == 1 and retries[0].params == killed[0].params
    dead_run = info["children"][killed[0].number][0]
    assert dead_run.info.status == "FAILED"
    assert dead_run.data.tags["bench.retried_as_trial"] == str(retries[0].number)
    assert info["children"][retries[0].number][0].data.tags["bench.retry_of_trial"] == str(killed[0].number)


def _postgres_url() -> str:
    url = os.environ.get("BENCH_TEST_POSTGRES_URL")
    if not url:
        why = 'BENCH_TEST_POSTGRES_URL is not set (run `eval "$(.ci/postgres.sh)"` to start a server)'
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI must test the PostgreSQL storage: {why}")
        pytest.skip(why)
    return url


@pytest.mark.parametrize("backend", ["journal", "postgres"])
def test_workers_share_one_study(backend: str, tracking_uri: str, tmp_path: Path) -> None:
    """Two `bench tune` processes started together on one study: every trial runs once, none is lost."""
    storage = _postgres_url() if backend == "postgres" else None
    study_name = f"workers-{uuid.uuid4().hex[:8]}"
    args = ["tune", TASK, "--stage", "attack", "--n-trials", "6", "--study", study_name]
    args += [*TINY, "--set", "attack.steps=150", "--tracking-uri", tracking_uri]
    args += ["--storage", storage] if storage else []
    logs = [tmp_path / f"worker{i}.log" for i in range(2)]
    procs = []
    for log in logs:
        with open(log, "w") as out:
            procs.append(subprocess.Popen([BENCH, *args], stdout=out, stderr=subprocess.STDOUT, env=ENV))
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert codes == [0, 0], "\n".join(log.read_text() for log in logs)
    info = _check_no_lost_or_duplicated(_study(storage, study_name, tracking_uri), tracking_uri, 6)
    workers = {c[0].data.tags["bench.worker"] for c in info["children"].values()}
    assert len(workers) == 2  # both processes ran trials
