"""The task table, built in one place: the built-in task modules listed below, then a user's task files.

Built-in tasks live in this package, one module per family, each declaring `TASKS = (Task(...), ...)`.
A user adds a task family without editing bench by putting a `*.py` file that declares `TASKS` in
`./tasks/` (the directory bench runs from), or in the directory named by `bench --tasks-dir DIR` or the
environment variable `BENCH_TASKS_DIR` (see `bench.tasks.user` and docs/tasks.md).
"""

from __future__ import annotations

from pathlib import Path

from bench.registry import Task, build_table, lookup
from bench.tasks import blobs, genetic, medmnist_pair, mnist, multiclass, offline, user

BUILTIN: tuple[Task, ...] = (
    blobs.TASKS + genetic.TASKS + medmnist_pair.TASKS + offline.TASKS + mnist.TASKS + multiclass.TASKS
)

_CACHE: dict[Path | None, dict[str, Task]] = {}


def all_tasks(tasks_dir: str | Path | None = None) -> dict[str, Task]:
    """Every task by name: the built-in ones and those of the user task directory (see `user.tasks_dir`).

    `tasks_dir`: a directory of user task files; None means $BENCH_TASKS_DIR, else ./tasks if it exists.
    A broken user file raises BenchInputError naming the file and line.
    """
    folder = user.tasks_dir(tasks_dir)
    if folder not in _CACHE:
        groups = [("bench.tasks", BUILTIN)]
        if folder is not None:
            groups += user.load_dir(folder)
        _CACHE[folder] = build_table(groups)
    return dict(_CACHE[folder])


def get_task(name: str, tasks_dir: str | Path | None = None) -> Task:
    """The task called `name` (BenchInputError listing the names if there is none)."""
    return lookup(all_tasks(tasks_dir), name)
