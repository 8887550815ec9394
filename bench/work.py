"""One run's unit of work and its result, shared by the serial runner (`bench.runner`) and the worker
processes (`bench.parallel`): a (series point, seed) as child runs under a parent, and how one setting's
outcome is logged (`bench run` and `bench tune` alike). Imports neither runner nor parallel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from bench import signals
from bench.config import RunConfig, to_dict
from bench.defences import KEYS as DEFENCE_KEYS
from bench.experiment import ExperimentResult, Hooks, run_experiment
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
    reused: int = 0  # `--resume`: pairs finished earlier, whose rows were read back, not run again
    nothing_left: bool = False  # `--resume` found every pair finished: nothing was run or logged


# Seconds between sends of a child run's streamed curves (attack/loss, the monitor's values): live in the
# MLflow UI that often, and a run killed without warning loses at most that much of its curves
LIVE_S = 5.0

# The attack's float64 checks at its monitor points (bench.attack.reconstruct), logged as curves
CHECK_CURVES = ("attack/objective", "attack/fit_check", "attack/kkt_fit_layer")


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
    its child run ids. Called in turn by `bench.runner.run_task`, and by the workers of `bench.parallel`.

    `tags`: extra tags for the child runs (e.g. `bench.group`; `bench.sweep.<key>` also names the point
    and gives the row a column `sweep.<key>`)."""
    from bench.sweep import swept_from_tags

    swept = swept_from_tags(tags)
    series_value = series_label(value) if value is not None else _lookup(cfg, task.series_key)
    label = f"{_point(series_value, task.series_label or 'point')}seed={seed}"
    label += _swept_suffix(task, swept)
    hooks = progress(label, len(settings or [None])) if progress else Hooks()

    def rows_of(result: ExperimentResult) -> list[dict[str, Any]]:
        rows = []
        for p, sr in enumerate([result.pooled] if result.pooled else result.settings):
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
        return rows

    return _run_child(
        tracker, exp_id, parent_id, task, profile, cfg, series_value, settings, hooks, tags, rows_of
    )


# A child run's row of the series table, logged on it (`bench run --resume` reads the rows of finished runs)
ROW_ARTIFACT = "series_row.json"


def row_json(row: dict[str, Any]) -> str:
    """One series-table row as JSON: numpy scalars as numbers, NaN as NaN, tuples as lists (`read_row`
    makes them tuples again: a row holds no lists of its own)."""
    import json

    def plain(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        raise TypeError(f"series row value {v!r} ({type(v).__name__}) is not JSON")

    return json.dumps(row, default=plain)


def read_row(text: str) -> dict[str, Any]:
    """The row `row_json` wrote, with the same values and types."""
    import json

    return {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}


def config_hash(task: Task, profile: str, cfg: RunConfig, settings: Sequence[dict[str, float]] | None) -> str:
    """What a child run computes, as a 16-hex-digit hash (tag `bench.config_hash`): the task and profile,
    the resolved config and the population settings. Where it runs (`device`, `threads`) and what it
    saves (`log.*`) are left out: a run on another machine, or with fewer images, counts as the same."""
    import hashlib
    import json

    keys = {
        k: v for k, v in to_dict(cfg).items() if k not in ("device", "threads") and not k.startswith("log.")
    }
    text = json.dumps([task.name, profile, keys, list(settings or [])], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def series_label(value: Any) -> Any:
    """A series point as logged: the value itself, or 'a/b' for a grid point {key: a, key2: b}; a tuple
    value is written as its items joined by commas (digit pair {classes_a: (4,), classes_b: (9,)}: '4/9')."""

    def text(v: Any) -> str:
        return ",".join(str(i) for i in v) if isinstance(v, (tuple, list)) else str(v)

    return "/".join(text(v) for v in value.values()) if isinstance(value, dict) else value


def _point(series_value: Any, key: str | None = None) -> str:
    """The series point as a name's prefix: 'data.blob_size=25 ' with `key`, '25 ' without, '' for a task
    without a series (its runs read 'mnist-parity seed=0')."""
    if series_value is None:
        return ""
    return f"{key}={series_value} " if key else f"{series_value} "


def _swept_suffix(task: Task, swept: dict[str, Any]) -> str:
    """The swept keys as a name's suffix, ' data.n_per_class=10'; a swept series key is left out, since
    it replaces the series and the name's prefix already gives it."""
    return "".join(f" {k}={v}" for k, v in swept.items() if k != task.series_key)


def _run_key(task: Task) -> str:
    """The key a run's name gives its series point: the series key, or the label of a grid series."""
    return task.series_key or task.series_label or "point"


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
    extra_tags: dict[str, Any] | None,
    rows_of: Callable[[ExperimentResult], list[dict[str, Any]]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """One (series point, seed): a child run per setting, curves streamed while it works; its rows of the
    series table (`rows_of`), each also logged on its run (`ROW_ARTIFACT`) before the runs end."""
    from bench import plots
    from bench.device import configure
    from bench.sweep import swept_from_tags
    from bench.tracking import warn_raw_data

    configure(cfg.device, cfg.threads)  # before the runs are created: their tags name device and threads
    pooled = cfg.attack.pool > 0
    if pooled and not settings:
        from bench.attack.protocol import draw_settings

        settings = draw_settings(cfg.attack.pool_dist, cfg.attack.pool, cfg.seed)
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
            name = f"{task.name} {_point(series_value, _run_key(task))}seed={cfg.seed}" + (
                f" setting={p}" if n_settings > 1 else ""
            )
            name += _swept_suffix(task, swept_from_tags(extra_tags))
            # a pool's members are logged, but the pooled set is the point's result (`bench.kind` child)
            kind = {"bench.kind": "pool_member"} if pooled else {}
            log = signals.enter_context(
                stack, tracker.run(exp_id, name, tags | {"bench.setting": p} | kind, parent_id)
            )
            log.params(to_dict(cfg) | {f"setting.{k}": v for k, v in (settings or [{}])[p].items()})
            logs.append(log)
        if pooled:
            name = f"{task.name} {_point(series_value, _run_key(task))}seed={cfg.seed} pooled"
            pool_log = signals.enter_context(
                stack, tracker.run(exp_id, name, tags | {"bench.setting": "pooled"}, parent_id)
            )
            pool_log.params(to_dict(cfg))

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
                log.flush(every_s=LIVE_S)

        hooks = Hooks(on_epoch, on_step, on_monitor, progress_hooks.on_phase)
        result = run_experiment(cfg, settings, hooks, task.post)
        data = result.data
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        for log, sr in zip(logs, result.settings, strict=True):
            # attack/loss went out step by step (on_step); the KKT fit curve goes with the results
            checks = tuple(k for k in sr.curves if k.startswith(CHECK_CURVES))
            log_setting(
                log,
                task,
                result,
                sr,
                f"{task.name} {_point(series_value)}seed {cfg.seed}",
                ("attack/kkt_fit", *checks),
            )
            log.tags({"bench.source": data.source})
            if cfg.log.arrays:
                warn_raw_data(tracker.uri, data.source)
                log.arrays("arrays/train", x=data.x_train, y=data.y_train)
                log.torch_state(state, "model/weights.pt")
            skip = ("attack/loss", "attack/kkt_fit", "attack/error")  # error repeats one of the others
            monitored = {k: v for k, v in sr.curves.items() if k not in skip and k not in checks}
            if monitored:
                fig = plots.curves(monitored, "distance to the nearest training sample")
                log.figure(fig, "attack_curves.png")
                plots.close(fig)
        if pooled:
            title = f"{task.name} {_point(series_value)}seed {cfg.seed}, {cfg.attack.pool_select}-pooled"
            log_setting(pool_log, task, result, result.pooled, title, ())
            pool_log.tags({"bench.source": data.source})
            logs.append(pool_log)
        rows = rows_of(result)
        for log, row in zip([pool_log] if pooled else logs, rows, strict=True):
            log.text(row_json(row), ROW_ARTIFACT)
    return rows, [log.run_id for log in logs]


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
        y = result.y_candidates if sr.y is None else sr.y
        log.arrays("arrays/reconstruction", x=sr.recon, y=y, lam=sr.lam)
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
            train_s,
            recon_s,
            sr.match_score,
            data.image_shape,
            title,
            max_pairs=cfg.log.grid_pairs,
            metric="NCC",
            best_only=cfg.log.grid_order == "best",
        )
        log.figure(fig, "reconstructions.png")
        plots.close(fig)
        if result.margins is not None and sr.distance is not None:
            fig = plots.margin_vs_distance(result.margins, sr.distance, data.y_train, title)
            log.figure(fig, "margin_vs_distance.png")
            plots.close(fig)
