"""Shared fixtures: a fresh MLflow store per test (copied from one prepared store), torch on one thread."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def _prepared_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite MLflow store with its tables migrated (creating one costs seconds; copying, nothing)."""
    from mlflow.tracking import MlflowClient

    folder = tmp_path_factory.mktemp("store")
    db = folder / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_uri(tmp_path: Path, _prepared_store: Path) -> str:
    """sqlite:///<tmp>/mlruns/mlflow.db, a fresh copy of the prepared store."""
    target = tmp_path / "mlruns" / "mlflow.db"
    target.parent.mkdir()
    shutil.copy(_prepared_store, target)
    return f"sqlite:///{target}"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tests share a 2-core machine: one torch thread keeps them fast and their timings steady."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
