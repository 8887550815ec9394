"""`bench run`: a task's series x seeds (x population settings), tracked in MLflow.

One parent run per invocation, one child run per (series point, seed, setting). The parent gets the
series table, the error-vs-series and error-vs-spatial-correlation plots and the trend statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench.config import RunConfig, to_dict
from bench.defences import KEYS as DEFENCE_KEYS
from bench.experiment import ExperimentResult, Hooks, resolve_config, run_experiment
from bench.registry import Task

# Makes the progress hooks of one child run: (label, n_settings) -> Hooks
ProgressFactory = Callable[[str, int], Hooks]


@dataclass
class RunSummary:
    parent_run_id: str
    experiment_id: str
    table: pd.DataFrame
    trend: dict[str, float] = field(default_factory=dict)
    child_run_ids: list[str] = field(default_factory=list)


def plan(
    task: Task,
    profile: str,
    seeds: int | None,
    overrides: dict[str, Any],
    sweeps: dict[str, Sequence[Any]] | None = None,
    skipped: list[str] | None = None,
) -> list[tuple[Any, int, RunConfig]]:
    """Every (series value, seed, resolved config), all validated before any work starts.

    `sweeps` ({key: values}, `--sweep`): each point of their cross product is crossed with the series
    (a swept series key replaces the series, see bench.sweep); the swept values live in the configs."""
    from bench.sweep import check_sweeps, expand

    sweeps = check_sweeps(resolve_config(task, profile, overrides), sweeps or {}, overrides)
    pinned = {**overrides, **sweeps}  # keys whose values come from the user, not the series
    series: Sequence[Any] = task.profiles[profile].series or (None,)
    if task.series_key and task.series_key in pinned:
        series = (None,)  # the user pinned the axis: one point, their value
    elif any(isinstance(v, dict) for v in series):
        # grid points: keys the user pinned leave the grid (their value holds), duplicates go
        pruned = [{k: v for k, v in point.items() if k not in pinned} for point in series]
        series = [p for i, p in enumerate(pruned) if p and p not in pruned[:i]] or [None]
    n_seeds = seeds or task.profiles[profile].seeds
    if any(isinstance(v, dict) for v in series):  # a profile's grid may hold infeasible points: skip them
        series = _feasible(task, profile, overrides, series, skipped)
    points = [
        (value, seed, resolve_config(task, profile, overrides | point, value, seed))
        for value in series
        for point in expand(sweeps)
        for seed in range(n_seeds)
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
    from bench import parallel
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


def run_point(
    tracker: Any,
    exp_id: str,
    parent_id: str,
    task: Task,
    profile: str,
    value: Any,
    seed: int,
    cfg: RunConfig,
    settings: Sequence[dict[str, float]] | None = None,
    progress: ProgressFactory | None = None,
    tags: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """One (series point, seed) under the parent: its rows of the series table (one per setting) and
    its child run ids. Called in turn by `run_task`, and by the workers of `bench.parallel`.

    `tags`: extra tags for the child runs (e.g. `bench.group`; `bench.sweep.<key>` also names the point
    and gives the row a column `sweep.<key>`)."""
    from bench.sweep import swept_from_tags

    swept = swept_from_tags(tags)
    series_value = series_label(value) if value is not None else _lookup(cfg, task.series_key)
    label = f"{task.series_label or 'point'}={series_value} seed={seed}"
    label += "".join(f" {k}={v}" for k, v in swept.items())
    hooks = progress(label, len(settings or [None])) if progress else Hooks()
    result, ids = _run_child(
        tracker, exp_id, parent_id, task, profile, cfg, series_value, settings, hooks, tags
    )
    rows = []
    for p, sr in enumerate(result.settings):
        row = {"series_value": series_value, "seed": seed, "setting": p, "primary": cfg.eval.primary}
        row.update({f"sweep.{k}": v for k, v in swept.items()})
        row.update({f"grid.{k}": v for k, v in value.items()} if isinstance(value, dict) else {})
        if isinstance(value, dict) and any(k in value for k in DEFENCE_KEYS):  # keys pinned by --set too
            row.update({f"grid.{k}": _lookup(cfg, k) for k in DEFENCE_KEYS if k not in value})
        row.update(sr.setting)
        row.update(result.data.stats)
        row.update(result.train_metrics)
        row.update(sr.metrics)
        rows.append(row)
    return rows, ids


def series_label(value: Any) -> Any:
    """A series point as logged: the value itself, or 'a/b' for a grid point {key: a, key2: b}."""
    return "/".join(str(v) for v in value.values()) if isinstance(value, dict) else value


def _lookup(cfg: RunConfig, key: str | None) -> Any:
    if not key:
        return None
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def _run_child(
    tracker: Any,
    exp_id: str,
    parent_id: str,
    task: Task,
    profile: str,
    cfg: RunConfig,
    series_value: Any,
    settings: Sequence[dict[str, float]] | None,
    progress_hooks: Hooks,
    extra_tags: dict[str, Any] | None = None,
) -> tuple[ExperimentResult, list[str]]:
    """One (series point, seed): a child run per setting, curves streamed while it works."""
    from contextlib import ExitStack

    from bench import plots
    from bench.device import configure
    from bench.sweep import swept_from_tags
    from bench.tracking import warn_raw_data

    configure(cfg.device, cfg.threads)  # before the runs are created: their tags name device and threads
    n_settings = len(settings or [None])
    tags = {
        "bench.task": task.name,
        "bench.profile": profile,
        "bench.series_value": series_value,
        "bench.seed": cfg.seed,
        "bench.kind": "child",
    } | (extra_tags or {})
    with ExitStack() as stack:
        logs = []
        for p in range(n_settings):
            name = f"{task.name} {task.series_key or ''}={series_value} seed={cfg.seed}" + (
                f" setting={p}" if n_settings > 1 else ""
            )
            name += "".join(f" {k}={v}" for k, v in swept_from_tags(extra_tags).items())
            log = stack.enter_context(tracker.run(exp_id, name, tags | {"bench.setting": p}, parent_id))
            log.params(to_dict(cfg) | {f"setting.{k}": v for k, v in (settings or [{}])[p].items()})
            logs.append(log)

        def on_epoch(epoch: int, loss: float) -> None:
            for log in logs:
                log.metric("train/loss", loss, epoch)
            if progress_hooks.on_epoch:
                progress_hooks.on_epoch(epoch, loss)

        def on_step(step: int, losses: np.ndarray) -> None:
            for log, loss in zip(logs, losses, strict=True):
                log.metric("attack/loss", loss, step)
            if progress_hooks.on_step:
                progress_hooks.on_step(step, losses)

        def on_monitor(step: int, values: dict[str, np.ndarray]) -> None:
            for p, log in enumerate(logs):
                for key, vals in values.items():
                    log.metric(key, vals[p], step)
                log.flush()

        hooks = Hooks(on_epoch, on_step, on_monitor, progress_hooks.on_phase)
        result = run_experiment(cfg, settings, hooks, task.post)
        data = result.data
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        for log, sr in zip(logs, result.settings, strict=True):
            # attack/loss went out step by step (on_step); the KKT fit curve goes with the results
            log_setting(
                log, task, result, sr, f"{task.name} {series_value} seed {cfg.seed}", ("attack/kkt_fit",)
            )
            log.tags({"bench.source": data.source})
            if cfg.log.arrays:
                warn_raw_data(tracker.uri, data.source)
                log.arrays("arrays/train", x=data.x_train, y=data.y_train)
                log.torch_state(state, "model/weights.pt")
            skip = ("attack/loss", "attack/kkt_fit", "attack/error")  # error repeats one of the others
            monitored = {k: v for k, v in sr.curves.items() if k not in skip}
            if monitored:
                fig = plots.curves(monitored, "distance to the nearest training sample")
                log.figure(fig, "attack_curves.png")
                plots.close(fig)
    return result, [log.run_id for log in logs]


def log_setting(
    log: Any,
    task: Task,
    result: ExperimentResult,
    sr: Any,
    title: str,
    curves: Sequence[str],
    extra: dict[str, float] | None = None,
    lock: Any = None,
) -> None:
    """One setting's outcome on its run (`bench run` and `bench tune` alike): the task's `post` metrics,
    the named curves, the metrics, the reconstruction arrays (unless log.arrays=false), config.json and the
    reconstructions figure (unless log.images=false).

    `lock`: held while plotting when several threads log at once (matplotlib is not thread-safe).
    """
    from contextlib import nullcontext

    from bench import plots
    from bench.evaluate import rescale
    from bench.tracking import dump_json

    for key in curves:
        log.curve(key, *sr.curves[key])
    log.metrics(sr.metrics | result.train_metrics | result.data.stats | result.timings | (extra or {}))
    data, cfg = result.data, result.config
    if cfg.log.arrays:
        log.arrays("arrays/reconstruction", x=sr.recon, y=result.y_candidates, lam=sr.lam)
        held = result.heldout
        if held is not None:  # the exact samples behind the held-out baseline and the membership test
            scale = {"lo": np.asarray(data.lo, dtype=float), "hi": np.asarray(data.hi, dtype=float)}
            log.arrays("arrays/heldout", x=held.x, y=held.y, **scale)
            log.arrays("arrays/fresh", x=held.fresh_x, y=held.fresh_y)
        if result.margins is not None:
            log.arrays("arrays/margins", margin=result.margins)
    log.text(dump_json({"config": to_dict(cfg), "setting": sr.setting}), "config.json")
    if not cfg.log.images:
        return
    train_s = rescale(data.x_train, cfg.eval.rescale, data.lo, data.hi)
    recon_s = rescale(sr.recon, cfg.eval.rescale, data.lo, data.hi)[sr.match_index]
    with lock or nullcontext():
        fig = plots.reconstruction_grid(
            train_s, recon_s, sr.match_score, data.image_shape, title, metric="NCC"
        )
        log.figure(fig, "reconstructions.png")
        plots.close(fig)
        if result.margins is not None and sr.distance is not None:
            fig = plots.margin_vs_distance(result.margins, sr.distance, data.y_train, title)
            log.figure(fig, "margin_vs_distance.png")
            plots.close(fig)


# Metrics plotted against the series axis and Moran's I on the parent.
PLOTTED = ("error", "memorised/frac")
# Metrics whose trend the parent reports (when the table has them), besides the primary `error`.
TREND_METRICS = (
    "ncc_dist_mean",
    "dssim_mean",
    "l2_255_mean",
    "memorised/frac",
    "membership/auc",
    "gain/heldout/ncc_dist",
)


def log_series_summary(parent: Any, table: pd.DataFrame, task: Task) -> dict[str, float]:
    """Series table, trend statistics (seeds as the unit, bench.analysis.trends) and plots on the parent.

    Runs whose classifier or attack did not converge are left out of the trends and counted
    (`runs/total`, `runs/used`, `runs/unconverged_train`, `runs/unconverged_attack`). Trends are computed
    against the series axis and against the per-point mean Moran's I of class 1, for the primary metric
    (and its per-class values) and `TREND_METRICS`; for a grid with a blob-size key, per value of the
    other grid keys (e.g. per n). Keys: `trend/<metric>[_vs_moran][/<group>]/<stat>`.
    """
    from bench import plots
    from bench.analysis.defences import defence_table, is_defence_table
    from bench.analysis.defences import figure as defence_figure
    from bench.analysis.trends import seed_trend, usable

    trend: dict[str, float] = {}
    parent.text(table.to_csv(index=False), "series.csv")
    if task.report is not None:
        for name, text in task.report(table).items():
            parent.text(text, name)
    counts = {"runs/total": float(len(table))}
    for col, name in (("train/converged", "train"), ("attack/converged", "attack")):
        if col in table:
            counts[f"runs/unconverged_{name}"] = float((table[col] < 0.5).sum())
    used = usable(table)
    counts["runs/used"] = float(len(used))
    parent.metrics(counts)
    trend.update(counts)
    if is_defence_table(table):  # every run counts: under DP, an unconverged classifier is the defence
        parent.text(defence_table(table).to_csv(index=False), "defences.csv")
        fig = defence_figure(table, f"{task.name}: defences")
        if fig is not None:
            parent.figure(fig, "defences.png")
            plots.close(fig)
    x_col, groups = _trend_axis(used, task)
    if x_col is None:
        return trend
    primary = str(used["primary"].iloc[0]) if "primary" in used and len(used) else "error"
    metrics = [
        ("error", primary),
        *((f"class{c}/{primary}", f"class {c} {primary}") for c in (0, 1)),
        *((m, m) for m in TREND_METRICS if m != primary),
    ]
    for gname, sub in groups(used):
        suffix = f"/{gname}" if gname else ""
        xs = {"": x_col}
        if "moran_i/class1" in sub:
            moran = sub.groupby(x_col)["moran_i/class1"].transform("mean")
            sub = sub.assign(_moran=moran)
            xs["_vs_moran"] = "_moran"
        for ycol, label in metrics:
            if ycol not in sub:
                continue
            for tag, xc in xs.items():
                st = seed_trend(sub, xc, ycol)
                name = f"{ycol.replace('/', '_')}{tag}"
                trend.update({f"trend/{name}{suffix}/{k}": v for k, v in st.items()})
                if ycol not in PLOTTED:
                    continue
                xlabel = "Moran's I of class 1 (per-point mean)" if tag else (task.series_label or x_col)
                fig = plots.series_plot(
                    pd.to_numeric(sub[xc], errors="coerce").to_numpy(dtype=float),
                    pd.to_numeric(sub[ycol], errors="coerce").to_numpy(dtype=float),
                    xlabel,
                    label,
                    f"{task.name}{' ' + gname if gname else ''}: rho of means={st['spearman_rho']:.2f}",
                )
                fname = f"{ycol.replace('/', '_')}_vs_{'moran' if tag else 'series'}"
                parent.figure(fig, f"{fname}{'_' + gname.replace('=', '') if gname else ''}.png")
                plots.close(fig)
    parent.metrics({k: v for k, v in trend.items() if k.startswith("trend/")})
    return trend


def _trend_axis(table: pd.DataFrame, task: Task) -> tuple[str | None, Any]:
    """The numeric x column of the trends and a function splitting the table into groups (name, rows)."""
    grid_x = next((c for c in ("grid.data.blob_size", "sweep.data.blob_size") if c in table), None)
    if grid_x is not None:  # a grid or sweep over blob size: one trend per value of the other keys
        others = [c for c in table.columns if c.startswith(("grid.", "sweep.")) and c != grid_x]

        def by_other(t: pd.DataFrame) -> Any:
            if not others:
                return [("", t)]
            return [
                (
                    "_".join(
                        f"{c.split('.')[-1]}={v}"
                        for c, v in zip(others, key if isinstance(key, tuple) else (key,), strict=True)
                    ),
                    g,
                )
                for key, g in t.groupby(others)
            ]

        return grid_x, by_other
    if "series_value" not in table or table["series_value"].isna().all():
        return None, None
    x = pd.to_numeric(table["series_value"], errors="coerce")
    if x.isna().all():  # a categorical axis (e.g. patient selection): the table is the summary
        return None, None
    return "series_value", lambda t: [("", t)]
