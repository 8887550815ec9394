"""`bench tune`: a tiny study end to end; objectives, jobs, timeout, failures and storage URLs; resume
after SIGKILL; several workers on one study.

The worker tests run real `bench tune` processes (marked `slow`: `-m 'not slow'` leaves them out): on the
embedded journal file and on a PostgreSQL server (`BENCH_TEST_POSTGRES_URL`, started by `.ci/postgres.sh`;
skipped without it, failed in CI).
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
# Trials that log metrics and curves only (no arrays, no figures): for the tests that do not read them.
FAST = [*TINY, "--set", "log.arrays=false", "--set", "log.images=false"]
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

    from bench.tune import default_storage_path

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
        assert study.metric_names == [
            "train_loss" if stage == "classifier" else "error (ncc_dist_mean, oracle)"
        ]
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
    ("stage", "objective", "name"),
    [
        ("attack", "oracle", "error (ncc_dist_mean, oracle)"),
        ("attack", "kkt", "kkt_fit_final (KKT residual)"),
        ("classifier", "oracle", "train_loss"),
    ],
)
def test_a_created_study_names_its_objective(stage: str, objective: str, name: str) -> None:
    """optuna-dashboard shows the study's metric name instead of "Objective 0"; a study loaded again
    keeps it."""
    import optuna

    from bench.tasks import get_task
    from bench.tune.common import TuneOptions
    from bench.tune.study import _open_study, _plan_stage

    opts = TuneOptions(task=TASK, stage=stage, profile="smoke", objective=objective)
    plan = _plan_stage(get_task(TASK), opts, stage, {}, 25, 0)
    storage = optuna.storages.InMemoryStorage()
    study, created = _open_study(storage, plan, None, None)
    assert created and study.metric_names == [name]
    again, created = _open_study(storage, plan, None, None)
    assert not created and again.metric_names == [name]
    assert optuna.load_study(study_name=plan.study, storage=storage).metric_names == [name]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--space", "attack.lr=log:1:0.1"], "--space"),
        (["--space", "train.lr=log:0.1:1"], "classifier stage"),
        (["--space", "attack.nope=float:0:1"], "attack.nope"),
        (["--set", "seed=3"], "seed"),
        (["--objective", "truth"], "--objective"),
        (["--storage", "nowhere"], "--storage"),
        (["--batch", "2", "--space", "attack.optimizer=cat:adam,sgd"], "attack.optimizer"),
        (["--batch", "2", "--stage", "classifier"], "--batch"),
        (["--batch", "0"], "--batch"),
    ],
)
def test_tune_bad_input_exits_2(tracking_uri: str, extra: list[str], message: str) -> None:
    res = CliRunner().invoke(app, ["tune", TASK, *TINY, "--tracking-uri", tracking_uri, *extra])
    assert res.exit_code == 2, res.output
    assert message in res.output


def test_tune_batch(tracking_uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """--batch: trials asked P at a time, run as one attack population, told and logged one by one; each
    trial's result is the one its parameters give unbatched; a pruned trial finishes with its batch."""
    import numpy as np
    import optuna
    from optuna.trial import TrialState

    from bench.config import apply_overrides
    from bench.experiment import attack_and_evaluate, prepare, resolve_config
    from bench.tasks import get_task
    from bench.tune import study as tune_study

    class PruneTrial6(optuna.pruners.BasePruner):
        def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
            return trial.number == 6

    monkeypatch.setattr(tune_study, "_make_pruner", lambda opts, plan: PruneTrial6())
    args = ["tune", TASK, "--stage", "attack", "--batch", "3", "--sampler", "random", "--study", "batched"]
    # float64: a population is then bit-exact (float32 batched kernels round differently, ~1e-6)
    sets = ["attack.steps=30", "attack.dtype=float64"]
    args += [*TINY, "--set", sets[0], "--set", sets[1], "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, [*args, "--n-trials", "5", "--seed", "0"])
    assert res.exit_code == 0, res.output
    study = _study(None, "batched", tracking_uri)
    info = _check_no_lost_or_duplicated(study, tracking_uri, 5)
    assert [t.state for t in info["trials"]] == [TrialState.COMPLETE] * 5
    assert len({tuple(sorted(t.params.items())) for t in info["trials"]}) == 5
    # batches of 3 then 2 (min(P, remaining)): a batch's trials share one attack and its timing
    seconds = [info["children"][n][0].data.metrics["attack_s"] for n in range(5)]
    assert len({*seconds[:3]}) == 1 and len({*seconds[3:]}) == 1 and seconds[0] != seconds[3]
    for t in info["finished"]:
        run = info["children"][t.number][0]
        assert run.data.metrics["objective"] == pytest.approx(t.value)
        assert float(run.data.params["attack.lr"]) == pytest.approx(t.params["attack.lr"])
        assert len(_client(tracking_uri).get_metric_history(run.info.run_id, "attack/dssim_mean")) == 4
        assert sorted(t.intermediate_values) == [10, 20, 30]

    # Resume to 7 trials: one batch of 2, in which the pruner stops trial 6 at its first report.
    res = CliRunner().invoke(app, [*args, "--n-trials", "7", "--seed", "1"])
    assert res.exit_code == 0, res.output
    study = _study(None, "batched", tracking_uri)
    info = _check_no_lost_or_duplicated(study, tracking_uri, 7)
    pruned = info["trials"][6]
    assert [t.state for t in info["trials"][5:]] == [TrialState.COMPLETE, TrialState.PRUNED]
    assert pruned.intermediate_values == {10: pruned.value}  # it reported no more
    run = info["children"][6][0]
    assert run.data.tags["bench.trial_state"] == "PRUNED" and "objective" not in run.data.metrics
    assert run.data.metrics["objective/oracle"] == pytest.approx(pruned.user_attrs["oracle"])

    # Each trial's result is what its parameters give alone (the population path is exact).
    overrides = dict(a.split("=") for a in [*TINY, *sets] if "=" in a)
    cfg = resolve_config(get_task(TASK), "smoke", overrides, 25, 0)
    prep = prepare(cfg)
    for t in [info["trials"][n] for n in (0, 5, 6)]:  # from the batch of 3, the batch of 2
        alone = attack_and_evaluate(prep, apply_overrides(cfg, t.params)).settings[0]
        np.testing.assert_allclose(alone.metrics["error"], t.user_attrs["oracle"], rtol=1e-12)
        np.testing.assert_allclose(alone.metrics["kkt_fit_final"], t.user_attrs["kkt"], rtol=1e-12)


def test_tune_batch_grid(tracking_uri: str) -> None:
    """--batch with --sampler grid: the 4-point grid runs as batches of 3 and 1, each point once."""
    args = ["tune", TASK, "--stage", "attack", "--batch", "3", "--sampler", "grid", "--n-trials", "10"]
    args += ["--space", "attack.lr=cat:0.01,0.1", "--space", "attack.init_scale=cat:1e-4,1e-3"]
    args += ["--space", "attack.lam_min=off", "--space", "attack.alpha=off", "--study", "grid"]
    args += [*TINY, "--set", "attack.steps=10", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info = _check_no_lost_or_duplicated(_study(None, "grid", tracking_uri), tracking_uri, 4)
    assert len({tuple(sorted(t.params.items())) for t in info["finished"]}) == 4


def _wait_for(predicate, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.slow
def test_resume_after_sigkill(tracking_uri: str, tmp_path: Path) -> None:
    """A worker killed mid-trial: rerunning the command fails that trial (heartbeat) and retries it."""
    from optuna.trial import TrialState

    study_name = "killed"
    args = ["tune", TASK, "--stage", "attack", "--n-trials", "3", "--pruner", "none", "--study", study_name]
    args += [*TINY, "--set", "attack.steps=1000", "--tracking-uri", tracking_uri]
    with open(tmp_path / "worker.log", "w") as out:
        proc = subprocess.Popen([BENCH, *args], stdout=out, stderr=subprocess.STDOUT, env=ENV)
    try:

        def mid_trial() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()
            try:
                states = [t.state for t in _study(None, study_name, tracking_uri).get_trials(deepcopy=False)]
            except Exception:  # not created yet
                return False
            if not (TrialState.COMPLETE in states and TrialState.RUNNING in states):
                return False
            # kill only once the running trial's MLflow run exists (before that, there is nothing to mark)
            running = {str(i) for i, st in enumerate(states) if st == TrialState.RUNNING}
            runs = _runs(tracking_uri, **{"bench.kind": "tune-trial", "bench.study": study_name})
            return any(r.data.tags.get("bench.trial") in running for r in runs)

        _wait_for(mid_trial, 60, "a running trial (with its MLflow run) after a complete one")
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


@pytest.mark.slow
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
        codes = [p.wait(timeout=300) for p in procs]  # generous: a shared, loaded machine is slow
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert codes == [0, 0], "\n".join(log.read_text() for log in logs)
    info = _check_no_lost_or_duplicated(_study(storage, study_name, tracking_uri), tracking_uri, 6)
    workers = {c[0].data.tags["bench.worker"] for c in info["children"].values()}
    assert len(workers) == 2  # both processes ran trials


# ---------------------------------------------------------------------------- objectives, jobs, limits


def _history(uri: str, run_id: str, key: str) -> dict[int, float]:
    return {m.step: m.value for m in _client(uri).get_metric_history(run_id, key)}


def test_objective_kkt(tracking_uri: str) -> None:
    """--objective kkt: each trial's value is its final KKT residual (the last point of its own
    `attack/kkt_fit` curve), its intermediate values the attack loss, and the best trial the lowest."""
    from optuna.trial import TrialState

    args = ["tune", TASK, "--stage", "attack", "--objective", "kkt", "--n-trials", "3", "--study", "kkt"]
    args += ["--sampler", "random", "--seed", "0", *FAST, "--set", "attack.steps=30"]
    res = CliRunner().invoke(app, [*args, "--tracking-uri", tracking_uri])
    assert res.exit_code == 0, res.output
    info = _check_no_lost_or_duplicated(_study(None, "kkt", tracking_uri), tracking_uri, 3)
    assert info["parent"].data.params["objective"] == "kkt"
    values = {}
    for t in info["trials"]:
        assert t.state == TrialState.COMPLETE
        run_id = info["children"][t.number][0].info.run_id
        fit = _history(tracking_uri, run_id, "attack/kkt_fit")
        assert sorted(fit) == list(range(30))
        assert t.value == fit[29] and t.value != t.user_attrs["oracle"]
        # reported at each monitor step s: the loss of the step before it (the last one taken)
        loss = _history(tracking_uri, run_id, "attack/loss")
        assert t.intermediate_values == {s: loss[s - 1] for s in (10, 20, 30)}
        values[t.number] = t.value
    best = min(values, key=values.get)
    assert info["parent"].data.metrics["best/trial"] == best
    assert info["parent"].data.metrics["best/value"] == pytest.approx(values[best])
    assert "objective/spearman_kkt_oracle" in info["parent"].data.metrics


def test_n_jobs_2(tracking_uri: str) -> None:
    """--n-jobs 2: two threads of one process share the study and one classifier; trials overlap."""
    args = ["tune", TASK, "--stage", "attack", "--n-jobs", "2", "--n-trials", "4", "--study", "jobs"]
    args += [*TINY, "--set", "attack.steps=60", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("training the classifier once for this process") == 1
    info = _check_no_lost_or_duplicated(_study(None, "jobs", tracking_uri), tracking_uri, 4)
    assert len({c[0].data.tags["bench.worker"] for c in info["children"].values()}) == 1
    spans = [(t.datetime_start, t.datetime_complete) for t in info["finished"]]
    overlaps = [a for a in spans for b in spans if a is not b and a[0] < b[1] and b[0] < a[1]]
    assert overlaps, spans  # some trials ran at the same time


def test_timeout_stops_between_trials(tracking_uri: str) -> None:
    """--timeout: no trial starts after it; the running one finishes; rerunning continues the study."""
    from optuna.trial import TrialState

    args = ["tune", TASK, "--stage", "attack", "--n-trials", "50", "--study", "timed"]
    args += [*FAST, "--set", "attack.steps=30", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, [*args, "--timeout", "0.5"])
    assert res.exit_code == 0, res.output
    assert "not finished (timeout): rerun the same command to continue" in res.output
    # finished: complete, or pruned by the median pruner once 5 trials are in (a fast host gets there
    # within the timeout); never left running or failed
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    trials = _study(None, "timed", tracking_uri).get_trials()
    assert len(trials) < 50 and all(t.state in finished for t in trials), [t.state for t in trials]
    before = len(trials)
    res = CliRunner().invoke(app, [*args, "--timeout", "0.5"])
    assert res.exit_code == 0, res.output
    trials = _study(None, "timed", tracking_uri).get_trials()
    assert before < len(trials) < 50 and all(t.state in finished for t in trials), [t.state for t in trials]


@pytest.mark.parametrize("batch", [1, 2])
def test_gives_up_after_failures_in_a_row(
    batch: int, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempts (trials, or batches) that fail: a success resets the count; the third failure in a row
    ends the study with exit code 1, each failed trial's run FAILED."""
    from optuna.trial import TrialState

    from bench.tune import batch as tune_batch
    from bench.tune import trials as tune_trials
    from bench.tune.trials import MAX_CONSECUTIVE_FAILURES

    module = tune_trials if batch == 1 else tune_batch
    real, calls = module.attack_and_evaluate, []

    def flaky(*a, **kw):  # attempt 2 succeeds, every other one fails
        calls.append(1)
        if len(calls) == 3:
            return real(*a, **kw)
        raise RuntimeError(f"planted failure {len(calls)}")

    monkeypatch.setattr(module, "attack_and_evaluate", flaky)
    args = ["tune", TASK, "--stage", "attack", "--n-trials", "20", "--study", "failing"]
    args += ["--batch", str(batch), *FAST, "--set", "attack.steps=10", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 1, res.output
    unit = "trials" if batch == 1 else "batches"
    assert f"tune failed: {MAX_CONSECUTIVE_FAILURES} {unit} in a row failed" in res.output
    assert "planted failure 6" in res.output  # the last attempt's reason
    assert len(calls) == 2 + 1 + MAX_CONSECUTIVE_FAILURES
    trials = _study(None, "failing", tracking_uri).get_trials()
    states = [t.state for t in trials]
    expect = [TrialState.FAIL] * 2 + [TrialState.COMPLETE] + [TrialState.FAIL] * 3
    assert states == [s for s in expect for _ in range(batch)]
    runs = _runs(tracking_uri, **{"bench.kind": "tune-trial", "bench.study": "failing"})
    failed = {int(r.data.tags["bench.trial"]) for r in runs if r.info.status == "FAILED"}
    assert failed == {t.number for t in trials if t.state == TrialState.FAIL}


# ---------------------------------------------------------------------------- storage URLs


@pytest.mark.parametrize("kind", ["journal:", ".journal", "sqlite"])
def test_storage_urls(kind: str, tracking_uri: str, tmp_path: Path) -> None:
    """--storage journal:PATH, PATH.journal and sqlite:///FILE.db hold the study (not the default
    journal beside the tracking store); rerunning finds it there and has nothing left to do."""
    import optuna

    from bench.tune import default_storage_path

    path = tmp_path / "studies" / ("s.db" if kind == "sqlite" else "s.journal")
    url = {"journal:": f"journal:{path}", ".journal": str(path), "sqlite": f"sqlite:///{path}"}[kind]
    if kind == "sqlite":
        path.parent.mkdir()
    args = ["tune", TASK, "--stage", "attack", "--n-trials", "2", "--study", "stored", "--storage", url]
    args += [*FAST, "--set", "attack.steps=10", "--tracking-uri", tracking_uri]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    shown = url if kind == "sqlite" else f"journal:{path}"
    assert f"study 'stored' (attack stage) in {shown}:" in res.output
    assert path.is_file() and not default_storage_path("stored", tracking_uri).exists()
    if kind == "sqlite":
        storage: object = url
    else:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(path)))
    study = optuna.load_study(study_name="stored", storage=storage)
    _check_no_lost_or_duplicated(study, tracking_uri, 2)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0 and "2/2 finished" in res.output, res.output
    assert len(_runs(tracking_uri, **{"bench.kind": "tune-trial"})) == 2
