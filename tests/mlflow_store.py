"""A fresh, empty MLflow SQLite store per test module, copied from one template made once per process.

Creating a SQLite store runs MLflow's table migrations (several seconds); copying the file takes
milliseconds. Use: `uri = fresh_store(tmp_path_factory.mktemp("store"))`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

_TEMPLATE: Path | None = None


def fresh_store(folder: Path) -> str:
    """Copy the template store into `folder` and return its tracking URI (sqlite:///.../mlflow.db)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        from mlflow.tracking import MlflowClient

        path = Path(tempfile.mkdtemp(prefix="bench-store-")) / "mlflow.db"
        MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()  # creates the tables
        _TEMPLATE = path
    dest = Path(folder) / "mlflow.db"
    shutil.copyfile(_TEMPLATE, dest)
    return f"sqlite:///{dest}"
