"""On-disk cache of an assembled GDC cohort: one ``.npz`` per (sample sheet, gene files, value column).

The key (:func:`cache_key`) changes when the sheet's bytes, the value column or any gene file's path, size
or modification time changes, so a stale cache is never read. A cache file that cannot be read (truncated,
not an ``.npz``, arrays missing) or whose arrays disagree in shape is reported, and the caller rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

CACHE_VERSION = "gdc-cache-v1"


def cache_key(sheet: Path, files: list[Path], value_column: str) -> str:
    """24 hex digits hashing the sheet's bytes, `value_column` and each gene file's path, size and mtime."""
    h = hashlib.sha256()
    h.update(CACHE_VERSION.encode())
    h.update(sheet.read_bytes())
    h.update(value_column.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def load_cache(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the cohort's `ExpressionData` fields, or None; a warning line when a cache file exists but is unusable).

    Fields: x (n, g) float64, y (n,) int64 in {0, 1}, genes (g names), samples (n ids), source, warnings.
    """
    if not path.is_file():
        return None, None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            data = {
                "x": z["x"].astype(np.float64),
                "y": z["y"].astype(np.int64),
                "genes": z["genes"].tolist(),
                "samples": z["samples"].tolist(),
                "source": str(meta["source"]),
                "warnings": [str(w) for w in meta["warnings"]],
            }
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        return None, f"{path}: corrupt cache ({type(e).__name__}: {first}); rebuilt it from the gene files"
    x, y, n, g = data["x"], data["y"], len(data["samples"]), len(data["genes"])
    if x.shape != (n, g) or y.shape != (n,) or not set(np.unique(y).tolist()) <= {0, 1}:
        return None, (
            f"{path}: inconsistent cache (x {x.shape}, y {y.shape} for {n} samples x {g} genes); "
            "rebuilt it from the gene files"
        )
    return data, None


def save_cache(path: Path, data: dict[str, Any]) -> str | None:
    """Write the cohort's fields (as `load_cache` returns them) atomically; a warning line if that fails."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        meta = json.dumps({"source": data["source"], "warnings": data["warnings"]})
        np.savez(
            tmp,
            x=data["x"],
            y=data["y"],
            genes=np.asarray(data["genes"], dtype=str),
            samples=np.asarray(data["samples"], dtype=str),
            meta=np.asarray(meta),
        )
        os.replace(tmp, path)
    except OSError as e:
        return f"could not write cache {path} ({e}); the next load will parse the files again"
    return None
