"""`bench run`: a task's series x seeds (x population settings), tracked in MLflow.

One parent run per invocation, one child run per (series point, seed, setting). The parent gets the
series table, the error-vs-series and error-vs-spatial-correlation plots and the trend statistics.
The runner depends on `bench.work` (one run's unit of work), `bench.parallel` (the pool, which depends on
`bench.work` too) and `bench.summary` (the parent's series summary); none of them imports the runner.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from bench import parallel
from bench.config import RunConfig
from bench.errors import BenchInputError
from bench.experiment import resolve_config
from bench.registry import Task
from bench.summary import log_series_summary
from bench.work import (
    ROW_ARTIFACT,
    ProgressFactory,
    RunSummary,
    config_hash,
    read_row,
    run_point,
    series_label,
)

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
    jobs = int(jobs)
    if points:  # the device must exist (exit 2 otherwise) before the store is touched; threads for the tags
        configure(points[0][2].device, points[0][2].threads)
    hashes = [config_hash(task, profile, cfg, settings) for _, _, cfg in points]
    plan_id = plan_hash(task, profile, hashes, group_tags)
    tracker = Tracker(tracking_uri, must_exist=resume, missing=", or drop --resume to start the series")
    name = experiment or task.name
    earlier = Earlier()
    exp_id = tracker.experiment_id(name)
    if exp_id is not None:
        earlier = find_earlier(tracker, exp_id, points, hashes, plan_id, settings, resume, say)
        if not resume and earlier.done:
            say(
                f"note: {len(earlier.done)} of these {len(points)} runs are already FINISHED in experiment "
                f"'{name}' of this store; --resume runs only the others (this run makes them all again)"
            )
            earlier = Earlier()
    if resume and not earlier.done and earlier.parent_id is None:
        say(f"note: no earlier runs of this series in experiment '{name}': running all {len(points)}")
    if resume and len(earlier.done) == len(points) and earlier.status in (None, "FINISHED"):
        table = pd.DataFrame([r for k in range(len(points)) for r in earlier.done[k][0]])
        ids = [i for k in range(len(points)) for i in earlier.done[k][1]]
        return RunSummary(earlier.parent_id or "", exp_id or "", table, {}, ids, nothing_left=True)
    exp_id = exp_id or tracker.experiment(name)
    parent_tags = {
        "bench.task": task.name,
        "bench.profile": profile,
        "bench.kind": "parent",
        "bench.plan_hash": plan_id,
    } | group_tags
    if earlier.parent_id:
        parent_tags["bench.resumed"] = "true"
    tagged = [
        (value, seed, cfg, sweep_tags(cfg, sweeps) | group_tags | {"bench.config_hash": h})
        for (value, seed, cfg), h in zip(points, hashes, strict=True)
    ]
    todo = [k for k in range(len(points)) if k not in earlier.done]
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
            if jobs > 1 and len(todo) > 1:
                out = parallel.run_parallel(
                    tracker,
                    exp_id,
                    parent.run_id,
                    task,
                    profile,
                    [tagged[k] for k in todo],
                    settings,
                    jobs,
                    progress is not None,
                )
                results.update(zip(todo, out, strict=True))
            else:
                for k in todo:
                    value, seed, cfg, tags = tagged[k]
                    results[k] = run_point(
                        tracker,
                        exp_id,
                        parent.run_id,
                        task,
                        profile,
                        value,
                        seed,
                        cfg,
                        settings,
                        progress,
                        tags,
                    )
            rows = [r for k in range(len(points)) for r in results[k][0]]
            child_ids = [i for k in range(len(points)) for i in results[k][1]]
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


def plan_hash(task: Task, profile: str, hashes: Sequence[str], group_tags: dict[str, str]) -> str:
    """A series as a 16-hex-digit hash (tag `bench.plan_hash` of its parent): the task, profile, group and
    shard, and the `config_hash` of every run in plan order. `--resume` reopens the parent of this hash."""
    import hashlib
    import json

    text = json.dumps([task.name, profile, sorted(group_tags.items()), list(hashes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Earlier:
    """What a store already holds of a series: `done` {plan index: (rows, child run ids)} of the pairs
    with FINISHED runs, the series' earlier parent (`parent_id`, its `status`) to reopen, if any."""

    done: dict[int, tuple[list[dict[str, Any]], list[str]]] = field(default_factory=dict)
    parent_id: str | None = None
    status: str | None = None


def find_earlier(
    tracker: Any,
    exp_id: str,
    points: Sequence[tuple[Any, int, RunConfig]],
    hashes: Sequence[str],
    plan_id: str,
    settings: Sequence[dict[str, float]] | None,
    resume: bool,
    say: Callable[[str], None],
) -> Earlier:
    """The earlier runs of a series in experiment `exp_id` (see `Earlier`). `resume`: first mark KILLED the
    RUNNING runs whose process is gone (Tracker.end_stale), then find the parent to reopen (BenchInputError
    when it still runs on this host) and read the rows of the finished pairs; without it, only which pairs
    are finished (no rows read)."""
    if resume:
        stale = tracker.end_stale(exp_id)
        if stale:
            say(
                f"marked KILLED {len(stale)} run(s) left RUNNING by a process that is gone (killed without warning)"
            )
    finished: dict[str, list[Any]] = {}
    for run in tracker.search(exp_id, "tags.`bench.kind` = 'child' and attributes.status = 'FINISHED'"):
        finished.setdefault(run.data.tags.get("bench.config_hash", ""), []).append(run)
    earlier = Earlier()
    if resume:
        parents = tracker.search(
            exp_id, f"tags.`bench.kind` = 'parent' and tags.`bench.plan_hash` = '{plan_id}'"
        )
        if parents:
            parent = parents[0]
            tags = parent.data.tags
            if parent.info.status == "RUNNING":
                where = f"pid {tags.get('bench.pid', '?')} on {tags.get('bench.host', '?')}"
                if tags.get("bench.host") == _host():
                    raise BenchInputError(
                        f"this series is still running: parent run {parent.info.run_id} ({where}); "
                        f"fix: wait for it, or stop it (kill {tags.get('bench.pid', 'PID')}) and resume"
                    )
                say(
                    f"note: resuming parent run {parent.info.run_id}, RUNNING by {where} (not checkable from here)"
                )
            earlier.parent_id, earlier.status = parent.info.run_id, parent.info.status
    for k, (h, (_, _, cfg)) in enumerate(zip(hashes, points, strict=True)):
        n_rows = 1 if cfg.attack.pool > 0 else len(settings or [None])
        by_parent: dict[str, list[Any]] = {}
        for run in finished.get(h, []):  # newest first
            by_parent.setdefault(run.data.tags.get("mlflow.parentRunId", ""), []).append(run)
        for parent_id in sorted(by_parent, key=lambda p: p != earlier.parent_id):  # the reopened one first
            runs = sorted(by_parent[parent_id], key=lambda r: _setting(r.data.tags))
            if len(runs) != n_rows:
                continue
            if not resume:
                earlier.done[k] = ([], [])
                break
            texts = [tracker.read_text(r.info.run_id, ROW_ARTIFACT) for r in runs]
            if None not in texts:
                earlier.done[k] = ([read_row(t) for t in texts], [r.info.run_id for r in runs])
                break
    return earlier


def _setting(tags: dict[str, str]) -> int:
    value = tags.get("bench.setting", "0")
    return int(value) if value.isdigit() else -1


def _host() -> str:
    import socket

    return socket.gethostname()
