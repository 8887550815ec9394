"""What `bench` prints on a terminal: progress bars, the run summary table, and task descriptions.

The command line (bench.cli) parses and calls the library; everything it shows a person is built here.
rich is imported inside the functions that draw, so `bench list` stays fast.
"""

from __future__ import annotations

import dataclasses
import textwrap
import types
import typing
from typing import Any, Literal

from bench.config import RunConfig, apply_overrides, to_dict
from bench.errors import ConfigError
from bench.overrides import _set
from bench.registry import Task

# Series-table columns shown by `bench run` and their headers; PRIMARY stands for the task's primary
# metric (eval.primary), and every header names its metric.
SUMMARY_COLS = {
    "series_value": "series",
    "seed": "seed",
    "train/converged": "train converged",
    "test_accuracy": "test accuracy",
    "PRIMARY": "attack PRIMARY",
    "baseline/mean/PRIMARY": "mean-image PRIMARY",
    "baseline/heldout/PRIMARY": "held-out PRIMARY",
    "class1/PRIMARY": "class-1 attack PRIMARY",
    "memorised/frac": "memorised frac",
    "baseline/random/memorised/frac": "random memorised frac",
    "membership/auc": "membership AUC",
    "attack/converged": "attack converged",
}
SHARED_SECTIONS = ("model", "train", "attack", "eval")


def fmt(v: Any) -> str:
    """A table cell: '-' for None, 4 significant digits for floats, str() otherwise."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def print_summary(task: Task, summary: Any) -> None:
    """The series table of a finished `bench run` (one row per child run), trends and the parent run id.

    `summary`: bench.runner's summary (`table` a DataFrame, `trend` a dict, `parent_run_id`, `experiment_id`).
    """
    from rich.console import Console
    from rich.table import Table

    table = summary.table
    primary = str(table["primary"].iloc[0]) if "primary" in table else "error"
    cols = {k.replace("PRIMARY", primary): v.replace("PRIMARY", primary) for k, v in SUMMARY_COLS.items()}
    show = [c for c in cols if c in table]
    sweep_cols = [c for c in table if str(c).startswith("sweep.")]  # after the series column
    show[1:1] = sweep_cols
    cols |= {c: c.removeprefix("sweep.") for c in sweep_cols}
    rich_table = Table(title=f"{task.name}: one row per run (primary metric {primary}; see docs/metrics.md)")
    for c in show:
        rich_table.add_column(cols[c], justify="right")
    for _, row in table.iterrows():
        rich_table.add_row(*[fmt(row[c]) for c in show])
    console = Console(width=max(120, Console().width))
    console.print(rich_table)
    # the primary metric's trends and the run counts here; every other trend is on the parent run
    for k, v in summary.trend.items():
        primary_trend = k.startswith("trend/error") or (k.startswith("trend/sweep/") and "/error/" in k)
        if primary_trend or k.startswith("runs/"):
            console.print(f"{k} = {v:.4g}")
    console.print(f"parent run {summary.parent_run_id} in experiment {summary.experiment_id}")
    console.print(
        f"MLflow UI (mlflow ui --backend-store-uri ...): #/experiments/{summary.experiment_id}"
        "?workflowType=machine_learning, or click 'Model training' at the top of the sidebar"
    )


def print_tune_results(results: list[Any]) -> None:
    """What `bench tune` reports per study (bench.tune's results): progress, best trial, the best as a run."""
    for r in results:
        done = r.n_complete + r.n_pruned
        print(
            f"{r.stage} study '{r.study}': {done}/{r.n_target} finished ({r.n_pruned} pruned, "
            f"{r.n_failed} failed); parent run {r.parent_run_id} in experiment {r.experiment_id}"
        )
        if r.best_trial is not None:
            print(f"  best trial {r.best_trial}: value {r.best_value:.6g}  {r.best_params}")
        if r.spearman is not None:
            print(f"  Spearman rho (kkt residual vs oracle error) over the trials: {r.spearman:.3f}")
        if not r.finished:
            print("  not finished (timeout): rerun the same command to continue")
    if results and results[-1].command:
        print("best config as a run:")
        print(f"  {results[-1].command}")


def rich_bars() -> Any:
    """A rich Progress on stderr with bench's columns: description, bar, done/total, time, `info` field."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=Console(stderr=True),
        transient=False,
    )


class Progress:
    """Rich progress bars for training and reconstruction (to stderr; quiet when not a terminal)."""

    def __init__(self) -> None:
        self._progress = rich_bars()

    def __enter__(self) -> Progress:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._progress.stop()

    def hooks(self, label: str, n_settings: int) -> Any:
        """bench.experiment.Hooks drawing one bar per phase (training epochs, attack steps) of run `label`."""
        from bench.experiment import Hooks

        state: dict = {"bar": None, "total": 0}

        def on_phase(phase: str, total: int) -> None:
            if state["bar"] is not None:  # the last phase stopped early (target loss reached): close its bar
                done = next(t.completed for t in self._progress.tasks if t.id == state["bar"])
                self._progress.update(state["bar"], total=done, completed=done)
            state["total"] = total
            state["bar"] = self._progress.add_task(f"{label} {phase}", total=total, info="")

        def on_epoch(epoch: int, loss: float) -> None:
            self._progress.update(state["bar"], completed=epoch, info=f"loss {loss:.2e}")

        def on_step(step: int, losses: Any) -> None:
            if step % 10 == 0 or step == state["total"] - 1:
                self._progress.update(state["bar"], completed=step + 1, info=f"loss {min(losses):.3g}")

        return Hooks(on_epoch=on_epoch, on_step=on_step, on_phase=on_phase)


# --- task descriptions (`bench list -v`, `bench run --help`) ---------------------------------------------


def type_name(tp: Any) -> str:
    """A config field's type in words: 'rect | walk', 'int', 'float or none', 'ints, comma-separated'."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return " | ".join(map(str, args))
    if origin in (typing.Union, types.UnionType):
        names = [type_name(a) for a in args if a is not type(None)]
        return " or ".join(names) + (" or none" if type(None) in args else "")
    if origin in (tuple, list):
        return f"{type_name(args[0]) if args else 'value'}s, comma-separated"
    return getattr(tp, "__name__", str(tp))


def config_keys(node: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, value, type in words) for every leaf of a config dataclass tree."""
    out: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(type(node))
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if dataclasses.is_dataclass(value):
            out += config_keys(value, f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", value, type_name(hints.get(f.name, type(value)))))
    return out


def task_defaults(task: Task) -> RunConfig:
    """The task's configuration before any profile: shared defaults, then the task's own defaults.

    Not range-checked: some tasks need a key the user must set (e.g. the genetic tasks' data.path).
    """
    try:
        return apply_overrides(RunConfig(data=task.data), task.defaults)
    except ConfigError:
        cfg = RunConfig(data=dataclasses.replace(task.data))
        for key, value in task.defaults.items():
            _set(cfg, key, value)
        return cfg


def _series(values: tuple[Any, ...], limit: int = 16) -> str:
    """A profile's series values; a full grid of dict points as 'key = a, b x key2 = c, d (n points)'."""
    if not values:
        return "one point (no series)"
    if all(isinstance(v, dict) for v in values):
        axes: dict[str, list[Any]] = {}
        for point in values:
            for k, v in point.items():
                axes.setdefault(k, [])
                if v not in axes[k]:
                    axes[k].append(v)
        n_grid = 1
        for vals in axes.values():
            n_grid *= len(vals)
        if n_grid == len(values) and all(len(p) == len(axes) for p in values):
            grid = " x ".join(f"{k} = {', '.join(map(_value, vals))}" for k, vals in axes.items())
            return f"{grid} ({len(values)} points)"
    shown = ", ".join(_value(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} points)" if len(values) > limit else "")


def _value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (tuple, list)):
        return ",".join(map(_value, v)) if v else "(empty)"
    return fmt(v) if isinstance(v, float) else str(v)


def _wrap(text: str, first: str, width: int = 110) -> list[str]:
    return textwrap.wrap(text, width, initial_indent=first, subsequent_indent=" " * (len(first) + 2))


def _key_lines(keys: list[tuple[str, Any, str]], indent: str) -> list[str]:
    width = max((len(k) for k, _, _ in keys), default=0)
    vwidth = min(24, max((len(_value(v)) for _, v, _ in keys), default=0))
    return [f"{indent}{k:<{width}}  {_value(v):<{vwidth}}  {t}" for k, v, t in keys]


def describe_task(task: Task, all_keys: bool = True) -> list[str]:
    """Lines describing a task: summary, series axis, each profile (seeds, series, overrides), config keys.

    `all_keys`: list every key with this task's default; else only the data.* keys and the shared keys
    whose default this task changes (the shared ones are listed once by `shared_keys`).
    """
    lines = [f"{task.name}: {task.summary}"]
    if task.origin:
        lines.append(f"  declared in {task.origin}")
    gridded = any(isinstance(v, dict) for p in task.profiles.values() for v in p.series)
    axis = task.series_key or ("grid points (several keys per point)" if gridded else "none")
    lines.append(f"  series axis: {axis}" + (f" ({task.series_label})" if task.series_label else ""))
    lines.append("  profiles (--profile NAME; the series values are run for each seed):")
    for name, prof in task.profiles.items():
        seeds = f"{prof.seeds} seed{'s' if prof.seeds != 1 else ''}"
        lines += _wrap(f"series: {_series(prof.series)}", f"    {name:<6} {seeds:<8} ")
        if prof.overrides:
            sets = ", ".join(f"{k}={_value(v)}" for k, v in prof.overrides.items())
            lines += _wrap(f"sets: {sets}", " " * 20)
    cfg = task_defaults(task)
    keys = config_keys(cfg)
    if not all_keys:
        shared = dict(to_dict(RunConfig(data=task.data)))
        keys = [(k, v, t) for k, v, t in keys if k.startswith("data.") or shared.get(k) != v]
    lines.append("  config keys (--set KEY=VALUE), with this task's defaults before the profile:")
    lines += _key_lines(keys, "    ")
    return lines


def shared_keys() -> list[str]:
    """Lines listing the keys every task shares (model, train, attack, eval, seed) with their defaults."""
    keys = [k for k in config_keys(RunConfig(data=None)) if k[0] != "data"]
    return ["shared config keys (every task; --set KEY=VALUE):", *_key_lines(keys, "  ")]


def run_epilog() -> str:
    """The end of `bench run --help`: the shared keys with defaults, and where a task's own keys are listed."""
    keys = [k for k in config_keys(RunConfig(data=None)) if k[0] != "data"]
    sections: dict[str, list[str]] = {}
    for key, value, _ in keys:
        sections.setdefault(key.split(".")[0] if "." in key else "run", []).append(f"{key}={_value(value)}")
    body = "\n".join(line for items in sections.values() for line in textwrap.wrap("  ".join(items), 100))
    return (
        "Config keys for --set, with their shared defaults (a task may change some):\n\n"
        f"{body}\n\n"
        "A task's data.* keys, its defaults, profiles (series values, seed counts, overrides): "
        "bench list -v TASK"
    )
