"""Shared pytest fixtures for bench's tests: a fresh MLflow store per test, torch on one thread.

At the repository root so that every test directory (tests/, and tests a user writes beside their own
task files) shares them. The helper modules that build fixture data (mlflow_store, gdc_fixture,
medmnist_fixture) live in tests/ and are imported by bare name, so tests/ goes on sys.path here.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent / "tests"
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from mlflow_store import fresh_store  # noqa: E402


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """sqlite:///<tmp>/mlruns/mlflow.db, a fresh copy of the prepared store (see tests/mlflow_store.py)."""
    folder = tmp_path / "mlruns"
    folder.mkdir()
    return fresh_store(folder)


@pytest.fixture(autouse=True)
def _runs_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`bench run` in this process (--jobs 1) unless a test passes --jobs: its default (auto) would start
    worker processes, which do not see a test's monkeypatching. The tests of --jobs pass it."""
    monkeypatch.setenv("BENCH_JOBS", "1")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share a 2-core machine: one torch thread keeps them fast and their timings steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
