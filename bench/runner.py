"""`bench run`: a task's series x seeds (x population settings), tracked in MLflow.

One parent run per invocation, one child run per (series point, seed, setting). The parent gets the
series table, the error-vs-series and error-vs-spatial-correlation plots and the trend statistics.
The runner depends on `bench.work` (one run's unit of work), `bench.parallel` (the pool, which depends on
`bench.work` too) and `bench.summary` (the parent's series summary); none of them imports the runner.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from bench import parallel
from bench.config import RunConfig
from bench.experiment import resolve_config
from bench.registry import Task
from bench.summary import log_series_summary
from bench.work import ProgressFactory, RunSummary, run_point, series_label

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
    jobs: int = 1,
    shard: tuple[int, int] | None = None,
    group: str | None = None,
) -> RunSummary:
    """Run and track a task; raises on the first failed child (which is marked FAILED, as is the parent).

    `sweeps`: {config key: values} crossed with the series (`--sweep`, see bench.sweep).
    `jobs`: runs in that many worker processes; `shard` (I, N) runs only slice I of N of the plan, and
    `group` tags the parent and children `bench.group` (see bench.parallel).
    Every config is resolved and checked (BenchInputError) before the store is touched or work starts."""
    from bench.device import configure
    from bench.sweep import sweep_tags, sweep_trends
    from bench.tracking import Tracker

    overrides = dict(overrides or {})
    sweeps = dict(sweeps or {})
    skipped: list[str] = []
    points = plan(task, profile, seeds, overrides, sweeps, skipped)
    group_tags = parallel.group_tags(group, shard)
    if shard is not None:
        points = parallel.shard_points(points, shard)
    if jobs > 1:
        points = parallel.with_threads(points, parallel.threads_per_job(jobs))
    if points:  # the device must exist (exit 2 otherwise) before the store is touched; threads for the tags
        configure(points[0][2].device, points[0][2].threads)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment(experiment or task.name)
    rows: list[dict[str, Any]] = []
    child_ids: list[str] = []
    parent_tags = {"bench.task": task.name, "bench.profile": profile, "bench.kind": "parent"} | group_tags
    with tracker.run(exp_id, f"{task.name}-{profile}", parent_tags) as parent:
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
        tagged = [(value, seed, cfg, sweep_tags(cfg, sweeps) | group_tags) for value, seed, cfg in points]
        if jobs > 1:
            show = progress is not None
            rows, child_ids = parallel.run_parallel(
                tracker, exp_id, parent.run_id, task, profile, tagged, settings, jobs, show
            )
        else:
            for value, seed, cfg, tags in tagged:
                point_rows, ids = run_point(
                    tracker, exp_id, parent.run_id, task, profile, value, seed, cfg, settings, progress, tags
                )
                child_ids.extend(ids)
                rows.extend(point_rows)
        table = pd.DataFrame(rows)
        if skipped:
            parent.text("\n".join(skipped) + "\n", "skipped.txt")
            parent.metrics({"runs/skipped_points": float(len(skipped))})
        trend = log_series_summary(parent, table, task)
        if sweeps:  # one trend per swept key, pooled over the series and the other keys
            trend_sweep = sweep_trends(table, sweeps)
            parent.metrics(trend_sweep)
            trend.update(trend_sweep)
    return RunSummary(parent.run_id, exp_id, table, trend, child_ids)
