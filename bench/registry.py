"""The types a task is declared with, and lookup by name. Imports no task module.

A `Task` names its data (a dataclass whose `load(seed)` returns a `bench.data.base.Dataset`), the
overrides it applies to the shared configs, its series axis (a dotted config key, e.g. `data.blob_size`,
swept over the values of the chosen profile), its trend axis (`trend_key`: what the trends are computed
against) and its profiles (`smoke`, `quick`, `paper`).

Task modules declare `TASKS = (Task(...), ...)`; `bench.tasks` builds the table from the built-in modules
(listed there explicitly) and from a user's task directory (`bench.tasks.user`). Task modules import only
light modules at import time so that `bench list` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchInputError

PROFILES = ("smoke", "quick", "paper")


@dataclass(frozen=True)
class Profile:
    """Overrides for one scale of a task, the series values at that scale, and the default seed count.

    A series value is either a plain value for the task's `series_key`, or a dict of dotted overrides
    (a grid point such as {"reduce.name": "pca", "data.selection": "dissimilar"}).
    """

    overrides: dict[str, Any] = field(default_factory=dict)
    series: tuple[Any, ...] = ()
    seeds: int = 1


def budget_overrides(overrides: dict[str, Any], factor: int = 2) -> dict[str, Any]:
    """A profile's budget check: the same settings with `factor` times the attack steps (and the stop
    window, so a plateau is judged over the same share of the run). `bench report` re-judges a claim with
    these runs in place of the points they repeat; a verdict that changes is inconclusive."""
    out = dict(overrides) | {"attack.steps": factor * overrides["attack.steps"]}
    if "attack.stop_window" in overrides:
        out["attack.stop_window"] = factor * overrides["attack.stop_window"]
    return out


@dataclass(frozen=True)
class Task:
    """One benchmark task: a name, its data dataclass, config defaults, series axis and profiles.

    `origin`: where the declaration came from ("" for a built-in task, the file of a user task).
    """

    name: str
    summary: str
    data: Any
    profiles: dict[str, Profile]
    defaults: dict[str, Any] = field(default_factory=dict)
    series_key: str | None = None
    series_label: str = ""
    family: str = ""
    # Per (run, setting): extra metrics from the finished experiment, e.g. a baseline classifier's accuracy.
    # Called as post(result, setting_result) -> {name: value}; logged with the child and in the table.
    post: Callable[[Any, Any], dict[str, float]] | None = None
    # On the parent: extra artifacts from the finished series table, report(table) -> {file name: text}.
    report: Callable[[Any], dict[str, str]] | None = None
    origin: str = ""
    # The x of the trend statistics on the parent run and of `bench report`'s trend claims: a dotted
    # config key (the series key, or a key of a grid or a --sweep, e.g. `data.blob_size`) or a per-run
    # column of the series table averaged per series point (e.g. `class_var/ratio`). None: the series key.
    trend_key: str | None = None

    @property
    def trend_axis(self) -> str | None:
        """The declared trend axis: `trend_key`, else `series_key` (None: no trend)."""
        return self.trend_key or self.series_key


def check_task(task: Any, where: str) -> Task:
    """Return `task` if it is a well-formed `Task`, else raise BenchInputError naming `where`."""
    if not isinstance(task, Task):
        raise BenchInputError(
            f"{where}: {task!r} is not a bench.registry.Task; fix: declare TASKS = (Task(...), ...)"
        )
    missing = [p for p in PROFILES if p not in task.profiles]
    if missing:
        raise BenchInputError(
            f"{where}: task '{task.name}' lacks profiles {missing}; fix: give it Profile(...) for each of "
            f"{', '.join(PROFILES)}"
        )
    bad = [p for p, v in task.profiles.items() if not isinstance(v, Profile)]
    if bad:
        raise BenchInputError(
            f"{where}: task '{task.name}' profiles {bad} are not Profile(...); fix: wrap them"
        )
    if not dataclasses.is_dataclass(task.data) or not callable(getattr(task.data, "load", None)):
        raise BenchInputError(
            f"{where}: task '{task.name}' data must be a dataclass instance with a load(seed) method; "
            "fix: see docs/tasks.md"
        )
    return task


def build_table(groups: Iterable[tuple[str, Iterable[Task]]]) -> dict[str, Task]:
    """The task table, by name, from (where, tasks) groups; a name declared twice is an error."""
    table: dict[str, tuple[str, Task]] = {}
    for where, tasks in groups:
        for task in tasks:
            check_task(task, where)
            if task.name in table:
                raise BenchInputError(
                    f"{where}: task '{task.name}' is already declared in {table[task.name][0]}; "
                    "fix: rename one of them"
                )
            table[task.name] = (where, task)
    return {name: table[name][1] for name in sorted(table)}


def lookup(table: dict[str, Task], name: str) -> Task:
    """The task called `name` in `table`, or BenchInputError listing the names."""
    if name not in table:
        raise BenchInputError(
            f"unknown task '{name}': run 'bench list' to see the tasks ({', '.join(table)}); "
            "fix: use one of those names"
        )
    return table[name]
