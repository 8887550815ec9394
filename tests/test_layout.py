"""The house rules that keep bench readable: no import cycle (counting imports inside functions), small
modules, one explicit task table."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import bench
from bench import tasks as task_pkg

ROOT = Path(bench.__file__).resolve().parent
MAX_LINES = 500


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path = ROOT) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement of a module, wherever it is: top level, inside if/try/with, under
    `if TYPE_CHECKING:`, and inside functions and methods (an import run late is still a dependency)."""
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """bench module -> the bench modules it imports anywhere in its text (relative imports resolved)."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set(), "d": {"a", "c"}}) is None


def test_graph_reads_absolute_relative_and_function_level_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "bench"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text(
        "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
        "    import bench.other\nclass C:\n    def f(self):\n        from ..top import x\n"
    )
    (pkg / "top.py").write_text(
        "import json\ntry:\n    from .sub import leaf\nexcept ImportError:\n    pass\n"
    )
    (pkg / "other.py").write_text("import bench.top as t\n")
    assert import_graph(_modules(pkg)) == {
        "bench": set(),
        "bench.sub": {"bench.sub.leaf"},
        "bench.sub.leaf": {"bench.other", "bench.top"},
        "bench.top": {"bench.sub", "bench.sub.leaf"},
        "bench.other": {"bench.top"},
    }


def test_checker_reports_a_cycle_made_by_an_import_inside_a_function(tmp_path: Path) -> None:
    """A planted package whose only cycle closes through a function-level import: it is reported."""
    pkg = tmp_path / "bench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "pool.py").write_text(
        "def work():\n    from bench.runner import run_point\n    return run_point\n"
    )
    (pkg / "runner.py").write_text("from bench import pool\n\ndef run_point():\n    return pool\n")
    (pkg / "leaf.py").write_text("import bench.pool\n")
    assert find_cycle(import_graph(_modules(pkg))) == ["bench.pool", "bench.runner", "bench.pool"]
    (pkg / "pool.py").write_text("def work():\n    return None\n")  # the cycle broken: none left
    assert find_cycle(import_graph(_modules(pkg))) is None


def test_no_import_cycle_among_bench_modules() -> None:
    graph = import_graph(_modules())
    assert "bench.registry" in graph["bench.tasks.blobs"]  # the parser sees bench's own imports
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_registry_imports_no_task_module_even_inside_functions() -> None:
    tree = ast.parse((ROOT / "registry.py").read_text())
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.startswith("bench.tasks")]


def test_no_module_under_bench_is_over_500_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    big = {name: n for name, n in sizes.items() if n > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines (split them): {big}"


def test_task_table_lists_every_task_module() -> None:
    """A task module added to bench/tasks/ but not listed in bench/tasks/__init__.py is caught here."""
    builtin = {id(t) for t in task_pkg.BUILTIN}
    declaring = []
    for path in sorted((ROOT / "tasks").glob("*.py")):
        module = importlib.import_module(_module_name(path))
        if path.stem != "__init__" and hasattr(module, "TASKS"):
            declaring.append(path.stem)
            missing = [t.name for t in module.TASKS if id(t) not in builtin]
            assert not missing, (
                f"bench/tasks/{path.name} declares {missing}, not listed in bench/tasks/__init__.py"
            )
    assert {"blobs", "genetic", "medmnist_pair", "offline"} <= set(declaring)
    assert len({t.name for t in task_pkg.BUILTIN}) == len(task_pkg.BUILTIN)


def test_bench_list_imports_neither_torch_nor_mlflow() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom bench.cli import app\n"
        "out = CliRunner().invoke(app, ['list'])\nassert out.exit_code == 0, out.output\n"
        "print(sorted(m for m in ('torch', 'mlflow', 'optuna', 'matplotlib') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
