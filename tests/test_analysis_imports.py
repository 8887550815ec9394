"""Layering: data modules load and return arrays; they import nothing from training, attack or analysis."""

from __future__ import annotations

import ast
from pathlib import Path

import bench

BENCH = Path(bench.__file__).parent
# Everything downstream of the data: models and their training, the attack, evaluation and analyses,
# the experiment and its logging, tuning and the CLI, and the task declarations that wire them together.
FORBIDDEN = (
    "bench.train",
    "bench.resnet",
    "bench.models",
    "bench.attack",
    "bench.evaluate",
    "bench.analysis",
    "bench.experiment",
    "bench.runner",
    "bench.tracking",
    "bench.tuning",
    "bench.tune",
    "bench.perf",
    "bench.plots",
    "bench.cli",
    "bench.console",
    "bench.tasks",
    "bench.registry",
    "bench.image_pairs",
)


def imported_modules(path: Path, package: str) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in a module of `package`, relative imports resolved."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
    return out


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def test_data_modules_import_nothing_downstream() -> None:
    files = sorted((BENCH / "data").rglob("*.py"))
    assert len(files) >= 5  # the walk found the data package
    bad = [
        f"{f.relative_to(BENCH.parent)}:{line} imports {name}"
        for f in files
        for line, name in imported_modules(f, ".".join(f.relative_to(BENCH.parent).parent.parts))
        if _forbidden(name)
    ]
    assert bad == []


def test_the_import_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    # a module read as if it were bench/data/x.py: both import styles must be caught
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from bench.resnet import train_resnet\n\nfrom ..evaluate import rescale\n")
    names = [n for _, n in imported_modules(fake, "bench.data")]
    assert "bench.resnet" in names and "bench.evaluate" in names
    assert _forbidden("bench.resnet") and _forbidden("bench.evaluate.rescale")
    assert not _forbidden("bench.reduce") and not _forbidden("bench.trainer_free")
