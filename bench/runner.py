"""`bench run`: a task's series x seeds (x population settings), tracked in MLflow.

One parent run per invocation, one child run per (series point, seed, setting). The parent gets the
series table, the error-vs-series and error-vs-spatial-correlation plots and the trend statistics.
The runner depends on `bench.work` (one run's unit of work), `bench.parallel` (the pool, which depends on
`bench.work` too) and `bench.summary` (the parent's series summary); none of them imports the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from bench import parallel
from bench.config import RunConfig
from bench.experiment import resolve_config
from bench.registry import Task
from bench.resume import look_back, plan_hash
from bench.summary import log_series_summary
from bench.work import ProgressFactory, RunSummary, config_hash, run_point, series_label

__all__ = ["plan", "run_task", "RunSummary", "run_point", "log_series_summary", "series_label"]


def plan(
    task: Task,
    profile: str,
    seeds: int | None,
    overrides: dict[str, Any],
    sweeps: dict[str, Sequence[Any]] | None = None,
    skipped: list[str] | None = None,
) -> list[tuple[Any, int, RunConfig]]:
    """Every (series value, seed, resolved config), all validated before any work starts. The seeds are
    `first_seed(overrides)` onwards, `seeds` of them (default: the profile's).

    `sweeps` ({key: values}, `--sweep`): each point of their cross product is crossed with the series
    (a swept series key replaces the series, see bench.sweep); the swept values live in the configs."""
    from bench.sweep import check_sweeps, expand

    sweeps = check_sweeps(resolve_config(task, profile, overrides), sweeps or {}, overrides)
    pinned = {**overrides, **sweeps}  # keys whose values come from the user, not the series
    series: Sequence[Any] = task.profiles[profile].series or (None,)
    if any(isinstance(v, dict) for v in series):
        # grid points: keys the user pinned leave the grid (their value holds), duplicates go; the task's
        # series key among them (`--set data.blob_size=100` on the defence grid keeps all its points)
        pruned = [{k: v for k, v in point.items() if k not in pinned} for point in series]
        series = [p for i, p in enumerate(pruned) if p and p not in pruned[:i]] or [None]
    elif task.series_key and task.series_key in pinned:
        series = (None,)  # the user pinned the axis: one point, their value
    n_seeds = seeds or task.profiles[profile].seeds
    first = first_seed(overrides)
    if any(isinstance(v, dict) for v in series):  # a profile's grid may hold infeasible points: skip them
        series = _feasible(task, profile, overrides, series, skipped)
    points = [
        (value, seed, resolve_config(task, profile, overrides | point, value, seed))
        for value in series
        for point in expand(sweeps)
        for seed in range(first, first + n_seeds)
    ]
    check_dp_points([cfg for _, _, cfg in points])
    return points


def check_dp_points(configs: Sequence[RunConfig]) -> None:
    """DP settings that need the training set size (train.dp_delta < 1/n, a reachable budget), checked
    before any training: the data of every distinct data config with train.dp on are loaded (seed of its
    first config) for n. ConfigError names the key and the fix."""
    from bench.train import check_dp

    sizes: dict[str, int] = {}
    checked: set[tuple[str, str]] = set()
    for cfg in configs:
        data_key, train_key = repr(cfg.data), repr(cfg.train)
        if not cfg.train.dp or (data_key, train_key) in checked:
            continue
        if data_key not in sizes:
            sizes[data_key] = len(cfg.data.load(cfg.seed).x_train)
        check_dp(cfg.train, sizes[data_key])
        checked.add((data_key, train_key))


def first_seed(overrides: dict[str, Any]) -> int:
    """The first seed of a run: `--set seed=K` (K >= 0) makes the seeds K, K+1, ..., K+n-1 (n from
    `--seeds` or the profile); 0 without it. ConfigError for anything but an integer >= 0."""
    from bench.config import coerce, require

    if "seed" not in overrides:
        return 0
    value = coerce(overrides["seed"], int, "seed")
    require(value >= 0, "seed", value, "an integer >= 0 (the first seed; --seeds N sets how many)")
    return value


def _feasible(
    task: Task, profile: str, overrides: dict[str, Any], series: Sequence[Any], skipped: list[str] | None
) -> list[Any]:
    """Grid points whose data can be drawn (bench.data.split.InfeasibleData), the others noted in
    `skipped` with the reason. Raises when no point is left."""
    from bench.data.split import InfeasibleData

    keep, reasons = [], []
    for value in series:
        try:
            resolve_config(task, profile, overrides, value, 0)
            keep.append(value)
        except InfeasibleData as err:
            reasons.append(f"{series_label(value)}: {err}")
    if not keep:
        raise InfeasibleData("every grid point is infeasible: " + "; ".join(reasons))
    if skipped is not None:
        skipped.extend(reasons)
    return keep


def run_task(
    task: Task,
    profile: str = "quick",
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    settings: Sequence[dict[str, float]] | None = None,
    progress: ProgressFactory | None = None,
    sweeps: dict[str, Sequence[Any]] | None = None,
    jobs: int | str = 1,
    shard: tuple[int, int] | None = None,
    group: str | None = None,
    resume: bool = False,
    echo: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run and track a task; raises on the first failed child (which is marked FAILED, as is the parent).

    `sweeps`: {config key: values} crossed with the series (`--sweep`, see bench.sweep).
    `jobs`: runs in that many worker processes ("auto": as many as the cores allow at one thread each,
    see bench.parallel.auto_jobs); `shard` (I, N) runs only slice I of N of the plan, and `group` tags
    the parent and children `bench.group` (see bench.parallel).
    `resume`: run only the (series point, seed) pairs without a FINISHED child run of the same
    `config_hash` in the experiment, under the series' earlier parent (same plan), reopened; the
    summary counts every pair once, the earlier ones from their logged rows. Nothing left to run:
    a summary with `nothing_left` set and no new parent. Without `resume`, `echo` gets a hint when the
    store already holds some of these runs finished.
    Interrupted (SIGINT/SIGTERM, bench.signals): the runs in progress and the parent end KILLED, and
    `Interrupted` is raised with `done`/`total` set.
    Every config is resolved and checked (BenchInputError) before the store is touched or work starts."""
    from bench.device import configure
    from bench.signals import Interrupted
    from bench.sweep import sweep_tags, sweep_trends
    from bench.tracking import Tracker

    say = echo or (lambda line: None)
    overrides = dict(overrides or {})
    sweeps = dict(sweeps or {})
    skipped: list[str] = []
    points = plan(task, profile, seeds, overrides, sweeps, skipped)
    group_tags = parallel.group_tags(group, shard)
    if shard is not None:
        points = parallel.shard_points(points, shard)
    if jobs == "auto":
        jobs, points = parallel.auto_jobs(points)
    elif int(jobs) > 1:
        points = parallel.with_threads(points, parallel.threads_per_job(int(jobs)))
    if points:  # the device must exist (exit 2 otherwise) before the store is touched; threads for the tags
        configure(points[0][2].device, points[0][2].threads)
    hashes = [config_hash(task, profile, cfg, settings) for _, _, cfg in points]
    plan_id = plan_hash(task, profile, hashes, group_tags)
    tracker = Tracker(tracking_uri, must_exist=resume, missing=", or drop --resume to start the series")
    name = experiment or task.name
    earlier = look_back(tracker, name, points, hashes, plan_id, settings, resume, say)
    if earlier.nothing_left(len(points)):
        rows, ids = _in_order(earlier.done, len(points))
        return RunSummary(
            earlier.parent_id or "", earlier.exp_id or "", pd.DataFrame(rows), {}, ids, nothing_left=True
        )
    exp_id = earlier.exp_id or tracker.experiment(name)
    parent_tags = {"bench.task": task.name, "bench.profile": profile, "bench.kind": "parent"}
    parent_tags |= {"bench.plan_hash": plan_id} | group_tags
    if earlier.parent_id:
        parent_tags["bench.resumed"] = "true"
    tagged = [
        (value, seed, cfg, sweep_tags(cfg, sweeps) | group_tags | {"bench.config_hash": h})
        for (value, seed, cfg), h in zip(points, hashes, strict=True)
    ]
    results = dict(earlier.done)
    try:
        with tracker.run(
            exp_id, f"{task.name}-{profile}", parent_tags, resume_id=earlier.parent_id
        ) as parent:
            parent.params(
                {
                    "task": task.name,
                    "profile": profile,
                    "seeds": len({p[1] for p in points}),
                    "series_key": task.series_key,
                }
                | {f"set.{k}": v for k, v in overrides.items()}
                | {f"population.{i}": s for i, s in enumerate(settings or [])}
                | {f"sweep.{k}": ",".join(map(str, v)) for k, v in sweeps.items()}
            )
            todo = {k: tagged[k] for k in range(len(points)) if k not in earlier.done}
            _run_points(
                tracker, exp_id, parent.run_id, task, profile, todo, settings, int(jobs), progress, results
            )
            rows, child_ids = _in_order(results, len(points))
            table = pd.DataFrame(rows)
            if skipped:
                parent.text("\n".join(skipped) + "\n", "skipped.txt")
                parent.metrics({"runs/skipped_points": float(len(skipped))})
            trend = log_series_summary(parent, table, task)
            if sweeps:  # one trend per swept key, pooled over the series and the other keys
                trend_sweep = sweep_trends(table, sweeps)
                parent.metrics(trend_sweep)
                trend.update(trend_sweep)
    except KeyboardInterrupt as err:  # the runs in progress and the parent are KILLED by now
        stopped = err if isinstance(err, Interrupted) else Interrupted(2)
        stopped.done = len(results) + (stopped.done or 0)  # the workers' finished runs, if they raised it
        stopped.total = len(points)
        raise stopped from None
    return RunSummary(parent.run_id, exp_id, table, trend, child_ids, reused=len(earlier.done))


def _run_points(
    tracker: Any,
    exp_id: str,
    parent_id: str,
    task: Task,
    profile: str,
    todo: dict[int, tuple[Any, int, RunConfig, dict[str, Any]]],
    settings: Sequence[dict[str, float]] | None,
    jobs: int,
    progress: ProgressFactory | None,
    results: dict[int, tuple[list[dict[str, Any]], list[str]]],
) -> None:
    """Run the points `todo` {plan index: (value, seed, config, child tags)} under the parent, in `jobs`
    worker processes or (one job, or one point) here; each one's (rows, child run ids) goes into
    `results` as it finishes, so that an interruption knows what finished."""
    if jobs > 1 and len(todo) > 1:
        out = parallel.run_parallel(
            tracker,
            exp_id,
            parent_id,
            task,
            profile,
            list(todo.values()),
            settings,
            jobs,
            progress is not None,
        )
        results.update(zip(todo, out, strict=True))
        return
    for k, (value, seed, cfg, tags) in todo.items():
        results[k] = run_point(
            tracker, exp_id, parent_id, task, profile, value, seed, cfg, settings, progress, tags
        )


def _in_order(results: dict[int, tuple[list[Any], list[str]]], n: int) -> tuple[list[Any], list[str]]:
    """The rows and the child run ids of points 0..n-1, in plan order."""
    return [r for k in range(n) for r in results[k][0]], [i for k in range(n) for i in results[k][1]]
