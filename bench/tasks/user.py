"""User task files: task families declared outside the package (like lm-evaluation-harness --include_path).

The directory is, first found: the `tasks_dir` argument (`bench --tasks-dir DIR`), the environment variable
`BENCH_TASKS_DIR`, or `./tasks` when it exists in the working directory. Every `*.py` file in it whose
name does not start with `_` is executed as its own module (`bench_user_tasks_<stem>`) and must declare
`TASKS = (Task(...), ...)`; files starting with `_` are skipped: they are helpers (while a task file runs,
its folder is on sys.path, so it may `import _common`). A file that fails to load raises BenchInputError
naming the file and line, which the command line reports with exit code 2.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import sys
import traceback
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from bench.errors import BenchInputError
from bench.registry import Task, check_task

ENV = "BENCH_TASKS_DIR"
DEFAULT = Path("tasks")
MODULE_PREFIX = "bench_user_tasks"


def tasks_dir(explicit: str | Path | None = None) -> Path | None:
    """The user task directory (absolute), or None when there is none to load.

    An explicit directory or $BENCH_TASKS_DIR that is not a directory is an error; a missing ./tasks is not.
    """
    for value, name in ((explicit, "--tasks-dir"), (os.environ.get(ENV) or None, ENV)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_dir():
                raise BenchInputError(
                    f"{name} '{value}' is not a directory; fix: point it at a folder of task files"
                )
            return path.resolve()
    return DEFAULT.resolve() if DEFAULT.is_dir() else None


def load_dir(folder: Path) -> list[tuple[str, Iterable[Task]]]:
    """(file, tasks) for every task file of `folder`, in name order."""
    files = [p for p in sorted(folder.glob("*.py")) if not p.name.startswith("_")]
    out = []
    for path in files:
        tasks = load_file(path)  # first: a broken file is reported by load_file, with its line
        out.append((f"{path.resolve()}:{_tasks_line(path)}", tasks))
    return out


def load_file(path: Path) -> tuple[Task, ...]:
    """Execute one user task file and return its TASKS, each with `origin` set to the file."""
    path = Path(path).resolve()
    name = f"{MODULE_PREFIX}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise BenchInputError(f"{path}: not a loadable Python file; fix: name it <something>.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and typing.get_type_hints look the module up by name
    sys.path.insert(0, str(path.parent))  # a task file may import the folder's _helpers.py
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        sys.modules.pop(name, None)
        raise BenchInputError(
            f"{e.filename or path}:{e.lineno}: syntax error in user task file: {e.msg}; fix: correct that line"
        ) from None
    except Exception as e:
        sys.modules.pop(name, None)
        line = _line_in(e, path)
        raise BenchInputError(
            f"{path}:{line}: user task file failed to load: {type(e).__name__}: {e}; fix: correct that "
            f"line, or move the file out of {path.parent} (files named _*.py are skipped)"
        ) from None
    finally:
        sys.path.remove(str(path.parent))
    tasks = getattr(module, "TASKS", None)
    line = _tasks_line(path)
    if tasks is None:
        raise BenchInputError(
            f"{path}:1: user task file declares no TASKS; fix: add TASKS = (Task(...),) or rename it _{path.name}"
        )
    if isinstance(tasks, Task) or not isinstance(tasks, (tuple, list)):
        raise BenchInputError(f"{path}:{line}: TASKS must be a tuple of Task; fix: TASKS = (Task(...),)")
    return tuple(replace(check_task(t, f"{path}:{line}"), origin=str(path)) for t in tasks)


def _line_in(err: BaseException, path: Path) -> int:
    """The line of `path` nearest the failure in the traceback (1 if the file is not on it)."""
    frames = [f for f in traceback.extract_tb(err.__traceback__) if Path(f.filename).resolve() == path]
    return frames[-1].lineno or 1 if frames else 1


def _tasks_line(path: Path) -> int:
    """The line where the file assigns TASKS (1 if none is found)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except SyntaxError:
        return 1
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
            isinstance(t, ast.Name) and t.id == "TASKS" for t in targets
        ):
            return node.lineno
    return 1
