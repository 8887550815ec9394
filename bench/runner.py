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
    task: Task, profile: str, seeds: int | None, overrides: dict[str, Any]
) -> list[tuple[Any, int, RunConfig]]:
    """Every (series value, seed, resolved config), all validated before any work starts."""
    series: Sequence[Any] = task.profiles[profile].series or (None,)
    if task.series_key and task.series_key in overrides:
        series = (None,)  # the user pinned the axis: one point, their value
    elif any(isinstance(v, dict) for v in series):
        # grid points: keys the user pinned leave the grid (their value holds), duplicates go
        pruned = [{k: v for k, v in point.items() if k not in overrides} for point in series]
        series = [p for i, p in enumerate(pruned) if p and p not in pruned[:i]] or [None]
    n_seeds = seeds or task.profiles[profile].seeds
    return [
        (value, seed, resolve_config(task, profile, overrides, value, seed))
        for value in series
        for seed in range(n_seeds)
    ]


def run_task(
    task: Task,
    profile: str = "quick",
    seeds: int | None = None,
    overrides: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    settings: Sequence[dict[str, float]] | None = None,
    progress: ProgressFactory | None = None,
) -> RunSummary:
    """Run and track a task; raises on the first failed child (which is marked FAILED, as is the parent).

    Every config is resolved and checked (BenchInputError) before the store is touched or work starts."""
    from bench.tracking import Tracker

    overrides = dict(overrides or {})
    points = plan(task, profile, seeds, overrides)
    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment(experiment or task.name)
    rows: list[dict[str, Any]] = []
    child_ids: list[str] = []
    parent_tags = {"bench.task": task.name, "bench.profile": profile, "bench.kind": "parent"}
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
        )
        for value, seed, cfg in points:
            point_rows, ids = run_point(
                tracker, exp_id, parent.run_id, task, profile, value, seed, cfg, settings, progress
            )
            child_ids.extend(ids)
            rows.extend(point_rows)
        table = pd.DataFrame(rows)
        trend = log_series_summary(parent, table, task)
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

    `tags`: extra tags for the child runs (e.g. `bench.group`)."""
    series_value = series_label(value) if value is not None else _lookup(cfg, task.series_key)
    label = f"{task.series_label or 'point'}={series_value} seed={seed}"
    hooks = progress(label, len(settings or [None])) if progress else Hooks()
    result, ids = _run_child(
        tracker, exp_id, parent_id, task, profile, cfg, series_value, settings, hooks, tags
    )
    rows = []
    for p, sr in enumerate(result.settings):
        row = {"series_value": series_value, "seed": seed, "setting": p, "primary": cfg.eval.primary}
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
        result = run_experiment(cfg, settings, hooks)
        data = result.data
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        for log, sr in zip(logs, result.settings, strict=True):
            # attack/loss went out step by step (on_step); the KKT fit curve goes with the results
            log_setting(
                log, task, result, sr, f"{task.name} {series_value} seed {cfg.seed}", ("attack/kkt_fit",)
            )
            log.tags({"bench.source": data.source})
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
    the named curves, the metrics, the reconstruction arrays, config.json and the reconstructions figure.

    `lock`: held while plotting when several threads log at once (matplotlib is not thread-safe).
    """
    from contextlib import nullcontext

    from bench import plots
    from bench.evaluate import rescale
    from bench.tracking import dump_json

    if task.post is not None:
        sr.metrics.update(task.post(result, sr))
    for key in curves:
        log.curve(key, *sr.curves[key])
    log.metrics(sr.metrics | result.train_metrics | result.data.stats | result.timings | (extra or {}))
    data, cfg = result.data, result.config
    log.arrays("arrays/reconstruction", x=sr.recon, y=result.y_candidates, lam=sr.lam)
    log.text(dump_json({"config": to_dict(cfg), "setting": sr.setting}), "config.json")
    train_s = rescale(data.x_train, cfg.eval.rescale, data.lo, data.hi)
    recon_s = rescale(sr.recon, cfg.eval.rescale, data.lo, data.hi)[sr.match_index]
    with lock or nullcontext():
        fig = plots.reconstruction_grid(train_s, recon_s, sr.match_score, data.image_shape, title)
        log.figure(fig, "reconstructions.png")
        plots.close(fig)


def trend_statistics(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Spearman rho and p-value, and the least-squares slope, of y against x (NaN where undefined)."""
    from scipy import stats

    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(np.unique(x)) < 2:
        return {"spearman_rho": float("nan"), "spearman_p": float("nan"), "slope": float("nan")}
    rho, p = stats.spearmanr(x, y)
    slope = stats.linregress(x, y).slope
    return {"spearman_rho": float(rho), "spearman_p": float(p), "slope": float(slope)}


def log_series_summary(parent: Any, table: pd.DataFrame, task: Task) -> dict[str, float]:
    """Series table, plots and trend statistics on the parent run."""
    from bench import plots

    trend: dict[str, float] = {}
    csv = table.to_csv(index=False)
    parent.text(csv, "series.csv")
    if task.report is not None:
        for name, text in task.report(table).items():
            parent.text(text, name)
    if "series_value" not in table or table["series_value"].isna().all():
        return trend
    x = pd.to_numeric(table["series_value"], errors="coerce").to_numpy(dtype=float)
    if np.isnan(x).all():  # a categorical axis (e.g. patient selection): the table is the summary
        return trend
    axes = {task.series_label or task.series_key or "series": x}
    if "moran_i/class1" in table:
        axes["Moran's I of class 1 (spatial correlation)"] = table["moran_i/class1"].to_numpy(dtype=float)
    for ycol, ylabel in (("error", "error"), ("gain/heldout/dssim", "gain over held-out (DSSIM)")):
        if ycol not in table:
            continue
        y = table[ycol].to_numpy(dtype=float)
        for i, (xlabel, xs) in enumerate(axes.items()):
            stats_ = trend_statistics(xs, y)
            prefix = f"trend/{ycol.replace('/', '_')}" + ("" if i == 0 else "_vs_moran")
            trend.update({f"{prefix}/{k}": v for k, v in stats_.items()})
            fig = plots.series_plot(xs, y, xlabel, ylabel, f"{task.name}: rho={stats_['spearman_rho']:.2f}")
            parent.figure(fig, f"{ycol.replace('/', '_')}_vs_{'series' if i == 0 else 'moran'}.png")
            plots.close(fig)
    parent.metrics(trend)
    return trend
