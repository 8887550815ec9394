"""The study of one `bench tune` stage: options checked, plan, sampler and pruner, study and parent run.

`tune` runs (or resumes, or joins) the study of each requested stage; trials.py runs its trials and
summary.py writes its summary on the parent run.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from typing import Any

from bench.errors import BenchInputError
from bench.experiment import resolve_config
from bench.registry import Task
from bench.tune.common import (
    OBJECTIVES,
    PRUNERS,
    SAMPLERS,
    STAGES,
    Plan,
    StageResult,
    TuneError,
    TuneOptions,
)
from bench.tune.space import Dim, Stage, check_batchable, check_space, stage_space
from bench.tune.storage import open_storage
from bench.tune.summary import summarise
from bench.tune.trials import TrialRunner

_ATTR_FINGERPRINT = "bench.fingerprint"
_ATTR_PARENT = "bench.mlflow_parent_run_id"


def tune(opts: TuneOptions, echo: Callable[[str], None] = print) -> list[StageResult]:
    """Run (or resume, or join) the study of each requested stage; returns one result per stage.

    Raises BenchInputError on bad options (before any work), TuneError when a stage cannot go on.
    """
    from bench.tasks import get_task

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


def _plan_stage(
    task: Task, opts: TuneOptions, stage: Stage, overrides: dict[str, str], series_value: Any, seed: int
) -> Plan:
    cfg = resolve_config(task, opts.profile, overrides, series_value, seed)
    space = stage_space(stage, opts.space, set(overrides))
    check_space(cfg, space, stage)
    if stage == "attack" and opts.batch > 1:
        check_batchable(space)
    if opts.study is None:
        name = f"{task.name}-{opts.profile}-{stage}"
    else:
        name = f"{opts.study}-{stage}" if opts.stage == "both" else opts.study
    from bench.work import series_label

    fingerprint = {
        "task": task.name,
        "stage": stage,
        "profile": opts.profile,
        "seed": seed,
        "series_value": str(series_label(series_value)) if series_value is not None else None,
        "set": {  # the classifier stage does not depend on the attack's or the evaluation's settings
            k: str(v)
            for k, v in sorted(overrides.items())
            if (stage == "attack" or not k.startswith(("attack.", "eval.")))
            and k not in ("device", "threads")  # where it runs, not what it searches
            and not k.startswith("log.")
        },
        "space": {k: d.describe() for k, d in sorted(space.items())},
        "objective": opts.objective if stage == "attack" else "train_loss",
    }
    return Plan(stage, name, cfg, dict(overrides), series_value, space, fingerprint)


def _make_sampler(opts: TuneOptions, space: dict[str, Dim]) -> Any:
    import optuna

    if opts.sampler == "random":
        return optuna.samplers.RandomSampler(seed=opts.seed)
    if opts.sampler == "grid":
        return optuna.samplers.GridSampler({k: d.grid() for k, d in space.items()}, seed=opts.seed)
    # Optuna 5: multivariate TPE with the constant liar, which keeps the pending trials of a batch (or
    # of other workers) apart.
    return optuna.samplers.TPESampler(seed=opts.seed)


def _make_pruner(opts: TuneOptions, plan: Plan) -> Any:
    import optuna

    if opts.pruner == "none":
        return optuna.pruners.NopPruner()
    # Skip the first quarter of a run: at step 0 the monitor only measures the random initialisation.
    warmup = plan.cfg.attack.steps // 4 if plan.stage == "attack" else plan.cfg.train.max_epochs // 4
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=warmup)


def _run_stage(task: Task, opts: TuneOptions, plan: Plan, echo: Callable[[str], None]) -> StageResult:
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
        runner = TrialRunner(task, opts, plan, study, tracker, exp_id, parent.run_id, n_target, echo)
        if plan.stage == "attack" and parent_id is None:
            runner.log_classifier(parent)
        runner.run_workers()
        result = summarise(task, opts, plan, study, parent, storage_desc, exp_id, n_target)
    if runner.fatal is not None:
        raise TuneError(runner.fatal)
    return result


def metric_name(plan: Plan) -> str:
    """The study's objective by name (`study.set_metric_names`, shown by optuna-dashboard): the classifier
    stage's `train_loss`; the attack stage's `error` (the task's primary metric against the training data,
    `--objective oracle`) or `kkt_fit_final` (the KKT residual, `--objective kkt`)."""
    objective = plan.fingerprint["objective"]
    if objective == "oracle":
        return f"error ({plan.cfg.eval.primary}, oracle)"
    if objective == "kkt":
        return "kkt_fit_final (KKT residual)"
    return str(objective)


def _open_study(storage: Any, plan: Plan, sampler: Any, pruner: Any) -> tuple[Any, bool]:
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
    if created or study.metric_names is None:  # the dashboard shows this name, not "Objective 0"
        study.set_metric_names([metric_name(plan)])
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
