"""Shared fixtures: a fresh MLflow store per test (copied from one prepared store), torch on one thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow_store import fresh_store


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    """sqlite:///<tmp>/mlruns/mlflow.db, a fresh copy of the prepared store (see mlflow_store.py)."""
    folder = tmp_path / "mlruns"
    folder.mkdir()
    return fresh_store(folder)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share a 2-core machine: one torch thread keeps them fast and their timings steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
