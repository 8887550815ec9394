"""Tasks are declared as data and registered by name.

A `Task` names its data (a dataclass whose `load(seed)` returns a `bench.data.base.Dataset`), the
overrides it applies to the shared configs, its series axis (a dotted config key, e.g. `data.blob_size`,
swept over the values of the chosen profile) and its profiles (`smoke`, `quick`, `paper`). Task modules
import only light modules at import time so that `bench list` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable
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


@dataclass(frozen=True)
class Task:
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


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task to the registry (names are unique)."""
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} registered twice")
    missing = set(PROFILES) - set(task.profiles)
    if missing:
        raise ValueError(f"task {task.name!r} lacks profiles {sorted(missing)}")
    _TASKS[task.name] = task
    return task


def all_tasks() -> dict[str, Task]:
    """Every registered task, by name (imports the task modules on first use)."""
    import bench.tasks  # noqa: F401  (registers on import)

    return dict(sorted(_TASKS.items()))


def get_task(name: str) -> Task:
    tasks = all_tasks()
    if name not in tasks:
        raise BenchInputError(
            f"unknown task '{name}': run 'bench list' to see the tasks ({', '.join(tasks)})"
        )
    return tasks[name]
