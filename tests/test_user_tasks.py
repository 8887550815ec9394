"""User task files: found in ./tasks, --tasks-dir or $BENCH_TASKS_DIR; the example runs; broken files exit 2."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from bench.cli import app
from bench.tasks import all_tasks, user

runner = CliRunner()
REPO_TASKS = Path(__file__).resolve().parents[1] / "tasks"

GOOD = """\
from dataclasses import dataclass

import numpy as np

from bench.data.base import Dataset
from bench.registry import Profile, Task


@dataclass
class Tiny:
    n: int = 3

    def load(self, seed: int) -> Dataset:
        rng = np.random.default_rng(seed)
        x = rng.random((2 * self.n, 4))
        y = np.repeat([-1.0, 1.0], self.n)
        return Dataset(x, y, x[:2], y[:2], None)


TASKS = (Task("{name}", "a tiny user task", Tiny(), {{p: Profile() for p in ("smoke", "quick", "paper")}}),)
"""


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """--tasks-dir sets $BENCH_TASKS_DIR in this process; monkeypatch puts it back after each test."""
    monkeypatch.delenv(user.ENV, raising=False)


def _dir(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "mytasks"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_directory_is_the_flag_then_the_environment_then_dot_tasks(tmp_path: Path, monkeypatch) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    monkeypatch.chdir(tmp_path)
    assert user.tasks_dir() is None  # no ./tasks here
    (tmp_path / "tasks").mkdir()
    assert user.tasks_dir() == (tmp_path / "tasks").resolve()
    monkeypatch.setenv(user.ENV, str(b))
    assert user.tasks_dir() == b.resolve()
    assert user.tasks_dir(a) == a.resolve()
    monkeypatch.setenv(user.ENV, str(tmp_path / "missing"))
    with pytest.raises(Exception, match=r"BENCH_TASKS_DIR .* is not a directory; fix: "):
        user.tasks_dir()


def test_user_tasks_join_the_table_and_helpers_starting_with_underscore_are_skipped(tmp_path: Path) -> None:
    folder = _dir(
        tmp_path,
        {"one.py": GOOD.format(name="user-one"), "_shared.py": "raise RuntimeError('not a task file')"},
    )
    out = runner.invoke(app, ["--tasks-dir", str(folder), "list"])
    assert out.exit_code == 0, out.output
    assert re.search(r"^user-one\s+a tiny user task$", out.output, re.M)
    assert re.search(r"^blobs-rect\s", out.output, re.M)  # built-in tasks stay
    task = all_tasks(folder)["user-one"]
    assert task.origin == str((folder / "one.py").resolve())
    assert task.data.load(0).x_train.shape == (6, 4)


def test_a_task_file_may_import_a_helper_beside_it(tmp_path: Path) -> None:
    text = GOOD.format(name="user-two").replace('"a tiny user task"', "_words.SUMMARY")
    folder = _dir(tmp_path, {"two.py": "import _words\n" + text, "_words.py": "SUMMARY = 'from a helper'\n"})
    assert all_tasks(folder)["user-two"].summary == "from a helper"


@pytest.mark.parametrize(
    ("text", "line", "needle"),
    [
        ("x = 1\ndef broken(:\n", 2, "syntax error"),
        ("import numpy\n\nvalue = 1 / 0\n", 3, "ZeroDivisionError"),
        ("from bench.registry import Task\n\nTASKS = (Task,)\n", 3, "is not a bench.registry.Task"),
        ("TASKS = 'blobs-rect'\n", 1, "TASKS must be a tuple of Task"),
        ("NOT_TASKS = ()\n", 1, "declares no TASKS"),
        (
            GOOD.replace('for p in ("smoke", "quick", "paper")', 'for p in ("smoke",)').format(name="x"),
            20,
            "lacks profiles ['quick', 'paper']",
        ),
        (GOOD.format(name="blobs-rect"), 20, "'blobs-rect' is already declared in bench.tasks"),
    ],
)
def test_a_broken_user_task_file_exits_2_naming_the_file_and_line(
    tmp_path: Path, text: str, line: int, needle: str
) -> None:
    folder = _dir(tmp_path, {"bad.py": text})
    for args in (["list"], ["run", "blobs-rect", "--profile", "smoke"]):
        out = runner.invoke(app, ["--tasks-dir", str(folder), *args])
        assert out.exit_code == 2, out.output
        assert f"{(folder / 'bad.py').resolve()}:{line}:" in out.output
        assert needle in out.output and "fix: " in out.output
        assert "Traceback" not in out.output


def test_tasks_dir_that_is_not_a_directory_exits_2(tmp_path: Path) -> None:
    out = runner.invoke(app, ["--tasks-dir", str(tmp_path / "nope"), "list"])
    assert out.exit_code == 2 and "is not a directory" in out.output


def test_the_repository_example_runs_end_to_end_at_smoke_scale(tracking_uri: str, monkeypatch) -> None:
    monkeypatch.setenv(user.ENV, str(REPO_TASKS))
    out = runner.invoke(app, ["run", "breast-cancer", "--profile", "smoke", "--tracking-uri", tracking_uri])
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name("breast-cancer")
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if r.data.tags.get("bench.kind") == "child"]
    assert sorted(r.data.tags["bench.series_value"] for r in children) == ["10", "5"]
    for r in children:
        assert r.info.status == "FINISHED"
        m = r.data.metrics
        assert 0 <= m["error"] == m["mae_mean"] < 1  # features live in [0, 1]
        assert m["test_accuracy"] > 0.6  # the classifier learned the two tumour classes
    names = {a.path for a in client.list_artifacts(children[0].info.run_id)}
    assert "reconstructions.png" in names
