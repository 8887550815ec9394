"""`bench tune`: hyperparameter search with Optuna, tracked in MLflow (see docs/tuning.md).

Two stages, as the paper needs them: `classifier` searches training settings for the lowest training
loss (the attack's premise: a network trained close to a KKT point); `attack` trains the classifier once
per process and searches attack settings for the best reconstruction. `both` runs the classifier stage,
then the attack stage on the best classifier config. Every stage is one Optuna study.

Objectives (minimised): classifier stage, the final training loss (test accuracy logged). Attack stage,
`oracle` = the run's `error` (the task's primary metric against the training data: a benchmark's
privilege) or `kkt` = `kkt_fit_final` (the KKT residual, what a real attacker can compute); both are
logged in every trial and their Spearman rank correlation over the study goes on the parent run.
Intermediate values (training loss every few epochs; the monitored error, or the attack loss for `kkt`,
every `attack.eval_every` steps) feed a median pruner. A diverged attack counts as pruned; a diverged
training scores log 2 (a classifier that learned nothing).

Storage: by default an Optuna JournalStorage file `optuna/<study>.journal` beside the SQLite tracking
store (`mlruns/optuna/...`), safe for several processes on one machine; or any Optuna RDB URL
(`postgresql+psycopg2://...` for several machines). Both have heartbeats: a trial whose worker stops
beating (killed) is failed and re-enqueued with the same parameters by the next worker that looks.

`n_trials` is the study's target: a worker runs trials until the study holds that many finished
(complete or pruned) trials, so rerunning a command resumes; failed trials do not count. MLflow: one
parent run per study (found again on resume through the study's user attribute), one child per trial.

`--batch P` (attack stage): a worker asks for P trials at once and runs their settings as one attack
population (`_TrialRunner._run_batch`); only the population keys (attack.lr, init_scale, lam_min,
alpha) may be searched. A pruned trial runs to the end of its batch and is told PRUNED.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bench.config import RunConfig, apply_overrides, to_dict
from bench.errors import BenchInputError
from bench.experiment import (
    ExperimentResult,
    Hooks,
    Prepared,
    SettingResult,
    attack_and_evaluate,
    prepare,
    resolve_config,
)
from bench.registry import Task
from bench.runner import log_setting

Stage = Literal["classifier", "attack"]
STAGES = ("classifier", "attack", "both")
OBJECTIVES = ("oracle", "kkt")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
MAX_RETRY = 3  # re-enqueues of a trial whose worker died
MAX_CONSECUTIVE_FAILURES = 3  # a worker gives up after this many failed trials in a row
_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # tags each trial's run with the process that ran it
_ATTR_FINGERPRINT = "bench.fingerprint"
_ATTR_PARENT = "bench.mlflow_parent_run_id"
_HEARTBEAT_KEY = "bench:heartbeat"


class TuneError(RuntimeError):
    """A study that could not go on (e.g. every trial fails): CLI exit code 1."""


# ----------------------------------------------------------------------------------------------------
# Search spaces


@dataclass(frozen=True)
class Dim:
    """One searched config key. kind: 'log' (log-uniform), 'float' (uniform), 'int' or 'cat'.

    `points`: how many values a continuous range contributes to `--sampler grid` (ends included).
    """

    kind: Literal["log", "float", "int", "cat"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    points: int = 3

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "cat":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log")

    def grid(self) -> list[Any]:
        """The values `--sampler grid` tries."""
        if self.kind == "cat":
            return list(self.choices)
        if self.kind == "int":
            return sorted({int(round(v)) for v in np.linspace(self.low, self.high, self.points)})
        space = np.geomspace if self.kind == "log" else np.linspace
        return [float(f"{v:.6g}") for v in space(self.low, self.high, self.points)]

    def describe(self) -> str:
        if self.kind == "cat":
            return "cat:" + ",".join(map(str, self.choices))
        return f"{self.kind}:{self.low:g}:{self.high:g}"


# Haim et al.'s sweep (random search): sigma log-uniform [1e-6, 0.1], lr log-uniform [1e-5, 1],
# lambda_min uniform [0.01, 0.5], alpha uniform [10, 500].
ATTACK_SPACE: dict[str, Dim] = {
    "attack.init_scale": Dim("log", 1e-6, 0.1),
    "attack.lr": Dim("log", 1e-5, 1.0),
    "attack.lam_min": Dim("float", 0.01, 0.5),
    "attack.alpha": Dim("float", 10.0, 500.0),
}
CLASSIFIER_SPACE: dict[str, Dim] = {
    "train.lr": Dim("log", 1e-2, 3.0),
    "train.init_scale": Dim("log", 1e-6, 1e-2),
    "model.width": Dim("cat", choices=(100, 250, 500, 1000)),
}


def parse_dim(key: str, text: str) -> Dim | None:
    """'log:1e-4:1', 'float:0.01:0.5', 'int:10:500', 'cat:100,500' (a range may end ':POINTS' for
    grid search), or 'off' (None: drop the key from the search)."""
    parts = text.strip().split(":")
    kind = parts[0].strip().lower()
    usage = (
        f"bad --space '{key}={text}': use KEY=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH "
        "(each optionally :GRID_POINTS), cat:A,B,C or off"
    )
    if kind == "off" and len(parts) == 1:
        return None
    if kind == "cat" and len(parts) == 2:
        choices = tuple(_number_or_text(c) for c in parts[1].split(",") if c.strip())
        if not choices:
            raise BenchInputError(usage)
        return Dim("cat", choices=choices)
    if kind not in ("log", "float", "int") or len(parts) not in (3, 4):
        raise BenchInputError(usage)
    try:
        low, high = float(parts[1]), float(parts[2])
        points = int(parts[3]) if len(parts) == 4 else 3
    except ValueError:
        raise BenchInputError(usage) from None
    if not low < high or (kind == "log" and low <= 0) or points < 2:
        raise BenchInputError(f"bad --space '{key}={text}': need LOW < HIGH (> 0 for log) and POINTS >= 2")
    return Dim(kind, low, high, points=points)  # type: ignore[arg-type]


def _number_or_text(text: str) -> Any:
    text = text.strip()
    for tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            pass
    return text


def parse_space(pairs: list[str] | None) -> dict[str, Dim | None]:
    """`--space KEY=SPEC` entries -> {key: Dim or None (= off)}."""
    from bench.config import parse_assignment

    out: dict[str, Dim | None] = {}
    for text in pairs or []:
        key, value = parse_assignment(text)
        out[key] = parse_dim(key, value)
    return out


def stage_space(stage: Stage, user: dict[str, Dim | None], pinned: set[str]) -> dict[str, Dim]:
    """The stage's default space, minus keys the user pinned with --set, with the user's --space entries
    for this stage (attack.* keys belong to the attack stage, all others to the classifier stage)."""
    default = ATTACK_SPACE if stage == "attack" else CLASSIFIER_SPACE
    space = {k: d for k, d in default.items() if k not in pinned}
    for key, dim in user.items():
        if (key.startswith("attack.")) != (stage == "attack"):
            continue
        if dim is None:
            space.pop(key, None)
        else:
            space[key] = dim
    return space


def check_space(cfg: RunConfig, space: dict[str, Dim], stage: Stage) -> None:
    """Every key must exist and accept its range's ends (raises BenchInputError naming the key)."""
    for key, dim in space.items():
        if stage == "attack" and not key.startswith(("attack.", "eval.")):
            raise BenchInputError(f"bad --space key '{key}' for the attack stage: use attack.* keys")
        if key.startswith("eval."):
            raise BenchInputError(f"bad --space key '{key}': eval.* defines the error and cannot be tuned")
        ends = dim.choices if dim.kind == "cat" else (dim.low, dim.high)
        for value in ends:
            apply_overrides(cfg, {key: value})
    if not space:
        raise BenchInputError(f"nothing to search in the {stage} stage: every key is pinned or off")


def check_batchable(space: dict[str, Dim]) -> None:
    """`--batch > 1` runs trials as one attack population: only its per-setting keys may be searched."""
    from bench.attack.reconstruct import SETTING_KEYS

    for key in space:
        if key.removeprefix("attack.") not in SETTING_KEYS:
            allowed = ", ".join(f"attack.{k}" for k in SETTING_KEYS)
            raise BenchInputError(
                f"bad --batch with --space key '{key}': a batch shares everything but {allowed}; "
                f"use --batch 1, or pin it with --set {key}=VALUE"
            )


# ----------------------------------------------------------------------------------------------------
# Options and results


@dataclass
class TuneOptions:
    """What `bench tune` was asked (see the CLI for each option's meaning)."""

    task: str
    stage: str = "attack"
    n_trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study: str | None = None
    n_jobs: int = 1
    objective: str = "oracle"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    profile: str = "quick"
    overrides: dict[str, str] = field(default_factory=dict)
    space: dict[str, Dim | None] = field(default_factory=dict)
    tracking_uri: str | None = None
    experiment: str | None = None
    heartbeat: int = 10
    batch: int = 1


@dataclass
class StageResult:
    stage: str
    study: str
    storage: str  # password hidden
    parent_run_id: str
    experiment_id: str
    n_target: int
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # the best config as a `bench run` command line
    spearman: float | None = None  # rank correlation of kkt vs oracle (attack stage)

    @property
    def finished(self) -> bool:
        return self.n_complete + self.n_pruned >= self.n_target


# ----------------------------------------------------------------------------------------------------
# Storage


def _journal_storage_class() -> type:
    """JournalStorage with heartbeats (Optuna implements them for RDB storages only).

    A heartbeat is a trial system attribute holding the worker's wall-clock time; a RUNNING trial whose
    last beat (or start) is older than the grace period is stale. Clocks of the processes sharing the
    file must agree (one machine, or NFS hosts kept in sync).
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def __init__(self, backend: Any, interval: int, grace: int, callback: Callable) -> None:
            super().__init__(backend)
            self._interval, self._grace, self._callback = interval, grace, callback

        def record_heartbeat(self, trial_id: int) -> None:
            # (a trial another worker already failed as stale cannot be updated any more)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, KeyError):
                self.set_trial_system_attr(trial_id, _HEARTBEAT_KEY, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, stale = time.time(), []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(_HEARTBEAT_KEY)
                if beat is None and t.datetime_start is not None:
                    beat = t.datetime_start.timestamp()
                if beat is not None and now - beat > self._grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self) -> Callable | None:
            return self._callback

    return HeartbeatJournalStorage


def default_storage_path(study: str, tracking_uri: str | None) -> Path:
    """`optuna/<study>.journal` beside a SQLite tracking store, else under ./mlruns."""
    from bench.tracking import DEFAULT_DIR, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    base = Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else Path(DEFAULT_DIR)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study)
    return base.resolve() / "optuna" / f"{safe}.journal"


def open_storage(url: str | None, study: str, tracking_uri: str | None, heartbeat: int) -> tuple[Any, str]:
    """(Optuna storage with heartbeats and retry of stale trials, description with the password hidden).

    url: None (journal file, see default_storage_path), `journal:PATH` or a path ending in .journal,
    or an RDB URL (`sqlite:///f.db`, `postgresql+psycopg2://user:pw@host/db`, `mysql+pymysql://...`).
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    interval, grace = max(1, int(heartbeat)), 3 * max(1, int(heartbeat))
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = (
            default_storage_path(study, tracking_uri)
            if url is None
            else Path(url[len("journal:") :] if url.startswith("journal:") else url)
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BenchInputError(f"cannot create the folder of --storage '{path}': {e}") from None
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return _journal_storage_class()(backend, interval, grace, retry), f"journal:{path}"
    if "://" not in url:
        raise BenchInputError(
            f"bad --storage '{url}': use an Optuna RDB URL (postgresql+psycopg2://USER:PW@HOST/DB, "
            "sqlite:///FILE.db) or journal:PATH"
        )
    shown = _hide_password(url)
    for attempt in range(3):  # workers starting together on a new database race to create its tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=retry,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                )
            return storage, shown
        except Exception as e:
            if attempt == 2:
                msg = f"{type(e).__name__}: {_first_line(e)}"
                raise BenchInputError(f"cannot open --storage '{shown}': {msg}") from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


# ----------------------------------------------------------------------------------------------------
# The search


def tune(opts: TuneOptions, echo: Callable[[str], None] = print) -> list[StageResult]:
    """Run (or resume, or join) the study of each requested stage; returns one result per stage.

    Raises BenchInputError on bad options (before any work), TuneError when a stage cannot go on.
    """
    from bench.registry import get_task

    task = get_task(opts.task)
    _check_options(task, opts)
    overrides = dict(opts.overrides)
    if "seed" in overrides:
        raise BenchInputError("bad --set seed: bench tune uses seed 0, the first seed of `bench run`")
    seed = 0
    series_value = _series_point(task, opts.profile, overrides)
    stages: list[Stage] = ["classifier", "attack"] if opts.stage == "both" else [opts.stage]  # type: ignore[list-item]
    plans = {s: _plan_stage(task, opts, s, overrides, series_value, seed) for s in stages}  # validates all
    results: list[StageResult] = []
    for stage in stages:
        plan = plans[stage]
        if results:  # `both`: the attack stage starts from the best classifier config
            best = results[-1].best_params
            plan = _plan_stage(
                task, opts, stage, overrides | {k: str(v) for k, v in best.items()}, series_value, seed
            )
        result = _run_stage(task, opts, plan, echo)
        results.append(result)
        if not result.finished:
            break
    return results


def _check_options(task: Task, opts: TuneOptions) -> None:
    checks = (
        ("--stage", opts.stage, STAGES),
        ("--objective", opts.objective, OBJECTIVES),
        ("--sampler", opts.sampler, SAMPLERS),
        ("--pruner", opts.pruner, PRUNERS),
        ("--profile", opts.profile, tuple(task.profiles)),
    )
    for name, value, allowed in checks:
        if value not in allowed:
            raise BenchInputError(f"bad {name} '{value}': use one of {', '.join(allowed)}")
    for name, value in (
        ("--n-trials", opts.n_trials),
        ("--n-jobs", opts.n_jobs),
        ("--heartbeat", opts.heartbeat),
        ("--batch", opts.batch),
    ):
        if value < 1:
            raise BenchInputError(f"bad {name} {value}: must be >= 1")
    if opts.batch > 1 and opts.stage == "classifier":
        raise BenchInputError("bad --batch: it batches attack trials; use --stage attack or both")
    if opts.stage != "both":
        for key in opts.space:
            if key.startswith("attack.") != (opts.stage == "attack"):
                other = "attack" if key.startswith("attack.") else "classifier"
                raise BenchInputError(
                    f"bad --space key '{key}': it belongs to the {other} stage, not --stage {opts.stage}"
                )
    if opts.timeout is not None and opts.timeout <= 0:
        raise BenchInputError(f"bad --timeout {opts.timeout}: must be > 0 seconds")


def _series_point(task: Task, profile: str, overrides: dict[str, str]) -> Any:
    """One series point: the user's `--set SERIES_KEY=...` (None here), else the profile's last value."""
    series = task.profiles[profile].series
    if not task.series_key or task.series_key in overrides or not series:
        return None
    return series[-1]


@dataclass
class _Plan:
    stage: Stage
    study: str
    cfg: RunConfig
    overrides: dict[str, str]  # as given (+ best classifier settings for `both`), seed excluded
    series_value: Any
    space: dict[str, Dim]
    fingerprint: dict[str, Any]


def _plan_stage(
    task: Task, opts: TuneOptions, stage: Stage, overrides: dict[str, str], series_value: Any, seed: int
) -> _Plan:
    cfg = resolve_config(task, opts.profile, overrides, series_value, seed)
    space = stage_space(stage, opts.space, set(overrides))
    check_space(cfg, space, stage)
    if stage == "attack" and opts.batch > 1:
        check_batchable(space)
    if opts.study is None:
        name = f"{task.name}-{opts.profile}-{stage}"
    else:
        name = f"{opts.study}-{stage}" if opts.stage == "both" else opts.study
    from bench.runner import series_label

    fingerprint = {
        "task": task.name,
        "stage": stage,
        "profile": opts.profile,
        "seed": seed,
        "series_value": str(series_label(series_value)) if series_value is not None else None,
        "set": {  # the classifier stage does not depend on the attack's or the evaluation's settings
            k: str(v)
            for k, v in sorted(overrides.items())
            if stage == "attack" or not k.startswith(("attack.", "eval."))
        },
        "space": {k: d.describe() for k, d in sorted(space.items())},
        "objective": opts.objective if stage == "attack" else "train_loss",
    }
    return _Plan(stage, name, cfg, dict(overrides), series_value, space, fingerprint)


def _make_sampler(opts: TuneOptions, space: dict[str, Dim]) -> Any:
    import optuna

    if opts.sampler == "random":
        return optuna.samplers.RandomSampler(seed=opts.seed)
    if opts.sampler == "grid":
        return optuna.samplers.GridSampler({k: d.grid() for k, d in space.items()}, seed=opts.seed)
    # Optuna 5: multivariate TPE with the constant liar, which keeps the pending trials of a batch (or
    # of other workers) apart.
    return optuna.samplers.TPESampler(seed=opts.seed)


def _make_pruner(opts: TuneOptions, plan: _Plan) -> Any:
    import optuna

    if opts.pruner == "none":
        return optuna.pruners.NopPruner()
    # Skip the first quarter of a run: at step 0 the monitor only measures the random initialisation.
    warmup = plan.cfg.attack.steps // 4 if plan.stage == "attack" else plan.cfg.train.max_epochs // 4
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


def _run_stage(task: Task, opts: TuneOptions, plan: _Plan, echo: Callable[[str], None]) -> StageResult:
    import optuna

    from bench.tracking import Tracker

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    # --batch asks and tells trials itself, running their heartbeats as study.optimize does
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with")
    tracker = Tracker(opts.tracking_uri)
    exp_id = tracker.experiment(opts.experiment or task.name)
    storage, storage_desc = open_storage(opts.storage, plan.study, tracker.uri, opts.heartbeat)
    study, created = _open_study(storage, plan, _make_sampler(opts, plan.space), _make_pruner(opts, plan))
    n_target = opts.n_trials
    if opts.sampler == "grid":
        size = math.prod(len(d.grid()) for d in plan.space.values())
        if size < n_target:
            echo(f"note: the grid has {size} points: the study stops at {size} trials")
            n_target = size
    parent_tags = {
        "bench.task": task.name,
        "bench.profile": opts.profile,
        "bench.kind": "tune-parent",
        "bench.study": plan.study,
        "bench.stage": plan.stage,
    }
    parent_id = _parent_run_id(study, created, tracker, exp_id, parent_tags)
    echo(f"study '{plan.study}' ({plan.stage} stage) in {storage_desc}: target {n_target} finished trials")
    with tracker.run(exp_id, f"tune {plan.study}", parent_tags, resume_id=parent_id) as parent:
        if study.user_attrs.get(_ATTR_PARENT) != parent.run_id:
            study.set_user_attr(_ATTR_PARENT, parent.run_id)
        parent.params(_flat_params(plan.fingerprint))
        parent.tags(
            {"bench.storage": storage_desc, "bench.n_trials": n_target, "bench.sampler": opts.sampler}
            | {"bench.series_value": plan.fingerprint["series_value"]}
        )
        runner = _TrialRunner(task, opts, plan, study, tracker, exp_id, parent.run_id, n_target, echo)
        if plan.stage == "attack" and parent_id is None:
            runner.log_classifier(parent)
        runner.run_workers()
        result = _summarise(task, opts, plan, study, parent, storage_desc, exp_id, n_target)
    if runner.fatal is not None:
        raise TuneError(runner.fatal)
    return result


def _open_study(storage: Any, plan: _Plan, sampler: Any, pruner: Any) -> tuple[Any, bool]:
    """Create the study (this process is then its creator) or load it; check it searches the same thing."""
    import optuna

    try:
        study = optuna.create_study(
            storage=storage, study_name=plan.study, sampler=sampler, pruner=pruner, direction="minimize"
        )
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=plan.study, storage=storage, sampler=sampler, pruner=pruner)
        created = False
    fingerprint = json.loads(json.dumps(plan.fingerprint))
    if created:
        study.set_user_attr(_ATTR_FINGERPRINT, fingerprint)
        return study, True
    found = _wait_for_attr(study, _ATTR_FINGERPRINT, 30.0)
    if found is None:  # the creator died before writing it
        study.set_user_attr(_ATTR_FINGERPRINT, fingerprint)
    elif found != fingerprint:
        diff = sorted(k for k in fingerprint.keys() | found.keys() if fingerprint.get(k) != found.get(k))
        raise BenchInputError(
            f"study '{plan.study}' exists for another search (differs in {', '.join(diff)}): "
            "use --study NEW_NAME, or the options it was created with"
        )
    return study, False


def _wait_for_attr(study: Any, key: str, seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = study.user_attrs.get(key)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def _parent_run_id(study: Any, created: bool, tracker: Any, exp_id: str, tags: dict[str, Any]) -> str | None:
    """The study's MLflow parent run to reopen, or None to create one (this process then records it)."""
    if created:
        return None
    run_id = _wait_for_attr(study, _ATTR_PARENT, 30.0)
    if run_id and tracker.run_exists(run_id, exp_id):
        return run_id
    return tracker.find_run(exp_id, {"bench.kind": "tune-parent", "bench.study": tags["bench.study"]})


def _flat_params(fingerprint: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in fingerprint.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
        else:
            out[k] = v
    return out


class _Surplus(Exception):
    """This trial was created after the study already had its target of trials (a race between workers)."""


class _TrialRunner:
    """Runs trials in `n_jobs` threads until the study holds `n_target` finished trials (or the timeout)."""

    def __init__(
        self,
        task: Task,
        opts: TuneOptions,
        plan: _Plan,
        study: Any,
        tracker: Any,
        exp_id: str,
        parent_id: str,
        n_target: int,
        echo: Callable[[str], None],
    ) -> None:
        self.task, self.opts, self.plan, self.study = task, opts, plan, study
        self.tracker, self.exp_id, self.parent_id, self.n_target, self.echo = (
            tracker,
            exp_id,
            parent_id,
            n_target,
            echo,
        )
        self.deadline = time.monotonic() + opts.timeout if opts.timeout else None
        self.fatal: str | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._prepared: Prepared | None = None

    # -- the classifier shared by every attack trial of this process
    def prepared(self) -> Prepared:
        with self._lock:
            if self._prepared is None:
                self.echo("training the classifier once for this process ...")
                self._prepared = prepare(self.plan.cfg)
                m = self._prepared.train_metrics
                self.echo(
                    f"  train loss {m['train_loss']:.3g}, test accuracy {m.get('test_accuracy', float('nan')):.3g}"
                )
            return self._prepared

    def log_classifier(self, parent: Any) -> None:
        """Train the shared classifier now and log it on the (new) parent run."""
        prep = self.prepared()
        parent.metrics({f"classifier/{k}": v for k, v in prep.train_metrics.items()} | prep.data.stats)
        parent.curve("train/loss", *prep.train_curve)
        parent.arrays("arrays/train", x=prep.data.x_train, y=prep.data.y_train)
        parent.torch_state(
            {k: v.detach().cpu() for k, v in prep.model.state_dict().items()}, "model/weights.pt"
        )

    # -- the worker loop
    def run_workers(self) -> None:
        if self.opts.n_jobs > 1:  # share the cores between the trial threads
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.opts.n_jobs))
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.opts.n_jobs - 1)]
        for t in threads:
            t.start()
        self._work()
        for t in threads:
            t.join()

    def _counts(self) -> dict[str, int]:
        from optuna.trial import TrialState

        counts = {s: 0 for s in ("done", "running", "waiting")}
        for t in self.study.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                counts["done"] += 1
            elif t.state == TrialState.RUNNING:
                counts["running"] += 1
            elif t.state == TrialState.WAITING:
                counts["waiting"] += 1
        return counts

    def _work(self) -> None:
        import optuna

        poll = min(2.0, float(self.opts.heartbeat))
        batched = self.plan.stage == "attack" and self.opts.batch > 1
        while self.fatal is None:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return
            optuna.storages.fail_stale_trials(self.study)
            c = self._counts()
            if c["done"] >= self.n_target:
                return
            if c["done"] + c["running"] >= self.n_target and c["waiting"] == 0:
                time.sleep(poll)  # the last trials run elsewhere; if their worker dies, we retry them
                continue
            if batched:  # no more trials than the study still needs (at least one: a waiting retry)
                self._run_batch(min(self.opts.batch, max(1, self.n_target - c["done"] - c["running"])))
            else:
                self.study.optimize(self._objective, n_trials=1, catch=(Exception,), callbacks=[self._after])

    def _after(self, study: Any, trial: Any) -> None:
        """`study.optimize` callback: print the trial's outcome, count failures in a row."""
        if trial.user_attrs.get("bench.surplus"):
            return
        self._echo_outcome(study, trial)
        self._count_failures([trial])

    def _echo_outcome(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL:
            reason = _fail_reason(trial)
            self.echo(f"trial {trial.number} FAILED: {reason.strip().splitlines()[-1] if reason else ''}")
            return
        try:
            best = f" (best {study.best_value:.4g} at trial {study.best_trial.number})"
        except ValueError:
            best = ""
        value = "" if trial.value is None else f" value {trial.value:.4g}"
        self.echo(f"trial {trial.number} {trial.state.name}{value}{best}")

    def _count_failures(self, trials: list[Any]) -> None:
        """One attempt (a trial, or a batch) failed when all its trials failed; give up after
        MAX_CONSECUTIVE_FAILURES failed attempts in a row."""
        from optuna.trial import TrialState

        with self._lock:
            if not all(t.state == TrialState.FAIL for t in trials):
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= MAX_CONSECUTIVE_FAILURES:
                unit = "batches" if self.plan.stage == "attack" and self.opts.batch > 1 else "trials"
                self.fatal = f"{self._failures} {unit} in a row failed; the last: {_fail_reason(trials[-1])}"

    # -- one trial
    def _objective(self, trial: Any) -> float:
        import optuna

        self._check_surplus(trial)
        setup = self._setup(trial)
        pruned: BaseException | None = None
        value = float("nan")
        try:
            with self._child_run(trial, setup) as log:
                try:
                    run = self._classifier_trial if self.plan.stage == "classifier" else self._attack_trial
                    value = run(trial, setup.cfg, log)
                    log.metrics({"objective": value})
                    log.tags({"bench.trial_state": "COMPLETE"})
                except optuna.TrialPruned as e:
                    pruned = e
                    log.tags({"bench.trial_state": "PRUNED", "bench.pruned_because": str(e)})
        except KeyboardInterrupt:
            # Optuna fails an interrupted trial without retry: enqueue its parameters again ourselves.
            self.study.enqueue_trial(setup.params, user_attrs={"bench.trial_number": setup.origin})
            raise
        if pruned is not None:
            raise pruned
        return value

    def _setup(self, trial: Any) -> _TrialSetup:
        """Suggest the trial's parameters; close the dead run of the trial it retries, if any."""
        params = {k: d.suggest(trial, k) for k, d in self.plan.space.items()}
        first = trial.user_attrs.get("bench.trial_number")
        old_run = trial.user_attrs.get("bench.mlflow_run_id")
        if old_run:  # a retry: the dead worker's child run stays RUNNING; close it
            self.tracker.mark(old_run, "FAILED", {"bench.retried_as_trial": trial.number})
        if first is None:
            trial.set_user_attr("bench.trial_number", trial.number)
        cfg = apply_overrides(self.plan.cfg, params)
        tags = {
            "bench.task": self.task.name,
            "bench.profile": self.opts.profile,
            "bench.kind": "tune-trial",
            "bench.study": self.plan.study,
            "bench.stage": self.plan.stage,
            "bench.trial": trial.number,
            "bench.seed": cfg.seed,
            "bench.worker": _WORKER,
        }
        if first is not None:
            tags["bench.retry_of_trial"] = first
        if self.plan.fingerprint["series_value"] is not None:
            tags["bench.series_value"] = self.plan.fingerprint["series_value"]
        return _TrialSetup(params, cfg, tags, trial.number if first is None else first)

    @contextlib.contextmanager
    def _child_run(self, trial: Any, setup: _TrialSetup) -> Any:
        """The trial's MLflow child run (FAILED if the block raises), with its config as params."""
        with self.tracker.run(self.exp_id, f"trial {trial.number}", setup.tags, self.parent_id) as log:
            trial.set_user_attr("bench.mlflow_run_id", log.run_id)
            log.params(to_dict(setup.cfg) | {f"trial.{k}": v for k, v in setup.params.items()})
            yield log

    def _check_surplus(self, trial: Any) -> None:
        from optuna.trial import TrialState

        alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        before = [
            t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number and t.state in alive
        ]
        if len(before) >= self.n_target:
            trial.set_user_attr("bench.surplus", True)
            raise _Surplus(f"the study already had {self.n_target} trials when this one started; nothing ran")

    def _classifier_trial(self, trial: Any, cfg: RunConfig, log: Any) -> float:
        import optuna

        every = cfg.train.log_every * max(1, round(cfg.train.max_epochs / 50 / cfg.train.log_every))

        def on_epoch(epoch: int, loss: float) -> None:
            log.metric("train/loss", loss, epoch)
            if epoch % every == 0 and math.isfinite(loss):
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"training loss {loss:.3g} at epoch {epoch}")

        try:
            prep = prepare(cfg, Hooks(on_epoch=on_epoch))
        except FloatingPointError as e:
            log.tags({"bench.diverged": str(e)})
            trial.set_user_attr("diverged", True)
            return math.log(2.0)  # no better than a classifier that learned nothing
        m = prep.train_metrics
        log.metrics(m | prep.data.stats | prep.timings)
        for key in ("test_accuracy", "train_accuracy", "train_epochs"):
            if key in m:
                trial.set_user_attr(key, m[key])
        return float(m["train_loss"])

    def _attack_trial(self, trial: Any, cfg: RunConfig, log: Any) -> float:
        import optuna

        last_loss = np.full(1, np.nan)

        def on_step(step: int, losses: np.ndarray) -> None:
            last_loss[:] = losses

        def on_monitor(step: int, values: dict[str, np.ndarray]) -> None:
            why = self._monitor(trial, log, step, values, 0, last_loss)
            if why is not None:
                raise optuna.TrialPruned(why)

        result = attack_and_evaluate(
            self.prepared(), cfg, None, Hooks(on_step=on_step, on_monitor=on_monitor)
        )
        value = self._log_attack(trial, log, result, result.settings[0])
        if result.settings[0].metrics.get("diverged"):
            raise optuna.TrialPruned("the attack diverged (non-finite loss)")
        return value

    def _monitor(
        self,
        trial: Any,
        log: Any,
        step: int,
        values: dict[str, np.ndarray],
        p: int,
        last_loss: np.ndarray,
        report: bool = True,
    ) -> str | None:
        """Log setting p's monitor values (each (P,)) and report its intermediate objective: the monitored
        error, or for `kkt` the last attack loss (last_loss (P,)). Returns why to prune it, or None."""
        for key, vals in values.items():
            log.metric(key, vals[p], step)
        log.flush()
        if not report:
            return None
        # kkt: the last attack loss; oracle: the monitor's own value of the primary error (eval.primary)
        value = float((last_loss if self.opts.objective == "kkt" else values["attack/error"])[p])
        if step > 0 and math.isfinite(value):
            trial.report(value, step)
            if trial.should_prune():
                return f"{self.opts.objective} intermediate {value:.3g} at step {step}"
        return None

    def _log_attack(self, trial: Any, log: Any, result: ExperimentResult, sr: SettingResult) -> float:
        """Log one setting's outcome on its trial's run (`result.config`: the trial's config); its value."""
        curves = ("attack/loss", "attack/kkt_fit")
        log_setting(log, self.task, result, sr, self.task.name, curves, lock=_PLOT_LOCK)
        oracle, kkt = float(sr.metrics["error"]), float(sr.metrics["kkt_fit_final"])
        log.metrics({"objective/oracle": oracle, "objective/kkt": kkt})
        trial.set_user_attr("oracle", oracle)
        trial.set_user_attr("kkt", kkt)
        return oracle if self.opts.objective == "oracle" else kkt

    # -- a batch of attack trials (--batch P)
    def _run_batch(self, size: int) -> None:
        """Ask up to `size` trials, attack their settings as ONE population on the shared classifier, and
        tell each trial its own outcome (one MLflow child run each, as for a single trial).

        Pruning: a setting cannot leave the population early. A trial the pruner stops reports no more
        intermediate values, runs to the end with the others, is logged in full and is told PRUNED (its
        value: the last intermediate value it reported); so is a diverged one.
        """
        from optuna.storages._heartbeat import get_heartbeat_thread
        from optuna.trial import TrialState

        trials: list[Any] = []
        for _ in range(size):
            trial = self.study.ask()
            try:
                self._check_surplus(trial)
            except _Surplus:  # another worker took the last slots: nothing runs
                _tell(self.study, trial, None, TrialState.FAIL)
                break
            trials.append(trial)
        if not trials:
            return
        setups: list[_TrialSetup] = []
        try:
            setups = [self._setup(t) for t in trials]
            with contextlib.ExitStack() as beats:
                for t in trials:
                    beats.enter_context(get_heartbeat_thread(t._trial_id, self.study._storage))
                outcomes = self._attack_batch(trials, setups)
        except KeyboardInterrupt:  # as for one trial: fail them and enqueue their parameters again
            for setup in setups:
                self.study.enqueue_trial(setup.params, user_attrs={"bench.trial_number": setup.origin})
            for trial in trials:
                _tell(self.study, trial, None, TrialState.FAIL)
            raise
        except Exception as e:  # the population failed as a whole
            outcomes = [(TrialState.FAIL, None, f"{type(e).__name__}: {e}")] * len(trials)
        told = []
        for trial, (state, value, reason) in zip(trials, outcomes, strict=True):
            if reason:  # as Optuna's optimize() did, for _echo_outcome
                with contextlib.suppress(Exception):
                    self.study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)
            # (a trial another worker already failed as stale stays failed: its retry runs again)
            told.append(_tell(self.study, trial, value, state))
        for frozen in told:
            self._echo_outcome(self.study, frozen)
        self._count_failures(told)

    def _attack_batch(
        self, trials: list[Any], setups: list[_TrialSetup]
    ) -> list[tuple[Any, float | None, str]]:
        """Run the population of the trials' settings; (state, value, fail reason) per trial."""
        from optuna.trial import TrialState

        prep = self.prepared()
        size = len(trials)
        last_loss = np.full(size, np.nan)
        prune: list[str | None] = [None] * size  # why the pruner stopped each trial
        settings = [{k.removeprefix("attack."): v for k, v in s.params.items()} for s in setups]
        outcomes: list[tuple[Any, float | None, str]] = []
        with contextlib.ExitStack() as runs:
            logs = [runs.enter_context(self._child_run(t, s)) for t, s in zip(trials, setups, strict=True)]

            def on_step(step: int, losses: np.ndarray) -> None:
                last_loss[:] = losses

            def on_monitor(step: int, values: dict[str, np.ndarray]) -> None:
                for p, (trial, log) in enumerate(zip(trials, logs, strict=True)):
                    # a pruned trial reports no more: its value stays the last one it reported
                    why = self._monitor(trial, log, step, values, p, last_loss, report=prune[p] is None)
                    prune[p] = prune[p] or why

            result = attack_and_evaluate(
                prep, self.plan.cfg, settings, Hooks(on_step=on_step, on_monitor=on_monitor)
            )
            for p, (trial, log, setup) in enumerate(zip(trials, logs, setups, strict=True)):
                sr = result.settings[p]
                try:
                    value = self._log_attack(trial, log, replace(result, config=setup.cfg), sr)
                except Exception as e:
                    log.tags({"bench.trial_state": "FAIL"})
                    outcomes.append((TrialState.FAIL, None, f"{type(e).__name__}: {e}"))
                    continue
                if sr.metrics.get("diverged") and prune[p] is None:
                    prune[p] = "the attack diverged (non-finite loss)"
                if prune[p] is None:
                    log.metrics({"objective": value})
                    log.tags({"bench.trial_state": "COMPLETE"})
                    outcomes.append((TrialState.COMPLETE, value, ""))
                else:
                    log.tags({"bench.trial_state": "PRUNED", "bench.pruned_because": prune[p]})
                    outcomes.append((TrialState.PRUNED, None, ""))
        for log, (state, _, _) in zip(logs, outcomes, strict=True):
            if state == TrialState.FAIL:  # its run closed FINISHED with the others
                self.tracker.mark(log.run_id, "FAILED")
        return outcomes


@dataclass
class _TrialSetup:
    params: dict[str, Any]  # the suggested values, by dotted key
    cfg: RunConfig  # the study's config with params applied
    tags: dict[str, Any]  # of the trial's MLflow run
    origin: int  # the number of the trial this one retries, else its own


def _tell(study: Any, trial: Any, value: float | None, state: Any) -> Any:
    """`study.tell` for a trial asked outside `study.optimize`; returns the FrozenTrial.

    A trial another worker already failed as stale stays failed (its retry runs). GridSampler calls
    `study.stop()` once the grid is done, which Optuna refuses outside `optimize`: the trial is stored by
    then, and the worker loop stops by itself (the target is the grid's size).
    """
    try:
        return study.tell(trial, value, state=state, skip_if_finished=True)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise
        return study.get_trials(deepcopy=False)[trial.number]


def _fail_reason(trial: Any) -> str:
    return str(trial.system_attrs.get("fail_reason", "unknown error"))


_PLOT_LOCK = threading.Lock()  # pyplot is not thread-safe (--n-jobs > 1)


# ----------------------------------------------------------------------------------------------------
# The parent run's summary


def _summarise(
    task: Task,
    opts: TuneOptions,
    plan: _Plan,
    study: Any,
    parent: Any,
    storage_desc: str,
    exp_id: str,
    n_target: int,
) -> StageResult:
    """Trials table, best trial, importances, history and (attack) kkt-vs-oracle on the parent run."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    result = StageResult(
        stage=plan.stage,
        study=plan.study,
        storage=storage_desc,
        parent_run_id=parent.run_id,
        experiment_id=exp_id,
        n_target=n_target,
        n_complete=states.count(TrialState.COMPLETE),
        n_pruned=states.count(TrialState.PRUNED),
        n_failed=sum(
            1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("bench.surplus")
        ),
    )
    parent.metrics(
        {
            "trials/complete": result.n_complete,
            "trials/pruned": result.n_pruned,
            "trials/failed": result.n_failed,
        }
    )
    parent.text(_trials_table(trials).to_csv(index=False), "trials.csv")
    if result.n_complete == 0:
        return result
    best = study.best_trial
    result.best_value, result.best_trial, result.best_params = best.value, best.number, dict(best.params)
    result.command = best_command(task, opts.profile, plan, best.params)
    parent.metrics({"best/value": best.value, "best/trial": best.number})
    attrs = {k: v for k, v in best.user_attrs.items() if not k.startswith("bench.")}
    parent.metrics({f"best/{k}": float(v) for k, v in attrs.items() if isinstance(v, (int, float))})
    parent.tags(
        {"bench.best_trial": best.number, "bench.best_run_id": best.user_attrs.get("bench.mlflow_run_id")}
    )
    summary = {
        "study": plan.study,
        "stage": plan.stage,
        "objective": plan.fingerprint["objective"],
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_user_attrs": best.user_attrs,
        "command": result.command,
    }
    if plan.stage == "attack":
        result.spearman = _log_objective_tracking(parent, study)
        summary["spearman_kkt_vs_oracle"] = result.spearman
    from bench.tracking import dump_json

    parent.text(dump_json(summary), "best.json")
    parent.text(result.command + "\n", "best_command.txt")
    _log_study_plots(parent, study)
    return result


def _trials_table(trials: list[Any]) -> Any:
    import pandas as pd

    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name, "value": t.value}
        row |= {f"param.{k}": v for k, v in t.params.items()}
        row |= {k: v for k, v in t.user_attrs.items() if not isinstance(v, (dict, list))}
        row["retry_of"] = t.system_attrs.get("failed_trial")
        row["seconds"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return pd.DataFrame(rows)


def _log_objective_tracking(parent: Any, study: Any) -> float | None:
    """Spearman rank correlation of the attacker's objective (kkt) with the truth (oracle)."""
    from scipy import stats

    from bench import plots

    pairs = np.array(
        [
            (t.user_attrs["kkt"], t.user_attrs["oracle"])
            for t in study.get_trials(deepcopy=False)
            if "kkt" in t.user_attrs and "oracle" in t.user_attrs
        ],
        dtype=float,
    ).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    if len(pairs) < 3 or len(np.unique(pairs[:, 0])) < 2 or len(np.unique(pairs[:, 1])) < 2:
        return None
    rho, p = stats.spearmanr(pairs[:, 0], pairs[:, 1])
    parent.metrics({"objective/spearman_kkt_oracle": float(rho), "objective/spearman_p": float(p)})
    with _PLOT_LOCK:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.0))
        ax.scatter(pairs[:, 0], pairs[:, 1], s=18)
        if (pairs[:, 0] > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel("final KKT residual (the attacker's objective)")
        ax.set_ylabel("error against the training data (oracle)")
        ax.set_title(f"one point per trial: Spearman rho = {rho:.2f} (n = {len(pairs)})", fontsize=10)
        fig.tight_layout()
        parent.figure(fig, "kkt_vs_oracle.png")
        plots.close(fig)
    return float(rho)


def _log_study_plots(parent: Any, study: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    from bench import plots

    for name, make in (
        ("optimization_history.png", ovm.plot_optimization_history),
        ("param_importances.png", ovm.plot_param_importances),
    ):
        with _PLOT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make(study)
            except Exception:  # importances need >= 2 complete trials with varying parameters
                continue
            fig = ax.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            parent.figure(fig, name)
            plots.close(fig)


def best_command(task: Task, profile: str, plan: _Plan, params: dict[str, Any]) -> str:
    """A ready `bench run` command line for the best config (series point and seed included)."""
    sets = dict(plan.overrides)
    if plan.series_value is not None:
        if isinstance(plan.series_value, dict):
            sets.update({k: str(v) for k, v in plan.series_value.items()})
        elif task.series_key:
            sets[task.series_key] = str(plan.series_value)
    sets.update({k: repr(v) if isinstance(v, float) else str(v) for k, v in params.items()})
    parts = ["bench", "run", task.name, "--profile", profile, "--seeds", "1"]
    for k, v in sets.items():
        parts += ["--set", f"{k}={v}"]
    return shlex.join(parts)
