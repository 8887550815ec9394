"""Load a ready samples x genes expression matrix (CSV, TSV, Parquet) with a label column.

The format is in `bench.data.gdc`'s module docstring; the result is a `bench.data.expression.ExpressionData`.
Error messages name the file, the line (1-based for CSV/TSV, line 1 = header) or row (0-based for
Parquet) and the column, and end with the fix. A gene column of numbers stored as text (a Parquet
object column, say) is read as numbers, with a warning naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.expression import ExpressionData
from bench.errors import BenchInputError

_MATRIX_LABELS = {
    "0": 0,
    "healthy": 0,
    "normal": 0,
    "1": 1,
    "cancer": 1,
    "tumor": 1,
    "tumour": 1,
}


def _read_table(path: Path) -> pd.DataFrame:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        try:
            return pd.read_parquet(path)
        except ImportError as e:
            raise BenchInputError(
                f"{path}: reading Parquet needs pyarrow; fix: pip install pyarrow, or save the matrix as CSV"
            ) from e
    for suffix, sep in ((".csv", ","), (".tsv", "\t"), (".txt", "\t")):
        if name.endswith((suffix, suffix + ".gz")):
            try:
                return pd.read_csv(path, sep=sep)
            except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
                raise BenchInputError(
                    f"{path}: cannot parse as {'CSV' if sep == ',' else 'TSV'} ({str(e).splitlines()[0]}); "
                    "fix: write a samples x genes table with a header row"
                ) from e
    raise BenchInputError(
        f"{path}: unknown matrix file type; fix: use .csv, .tsv, .txt (optionally .gz) or .parquet"
    )


def load_matrix_file(path: str | Path, *, label_column: str = "label") -> ExpressionData:
    """Load a samples x genes matrix with a label column (see the module docstring).

    Error messages give 1-based file lines for CSV/TSV (line 1 = header) and 0-based rows for Parquet.
    """
    path = Path(path)
    df = _read_table(path)
    is_text = not path.name.lower().endswith((".parquet", ".pq"))

    def where(i: int) -> str:
        return f"{path} line {i + 2}" if is_text else f"{path} row {i}"

    if df.shape[0] == 0:
        raise BenchInputError(f"{path}: no samples (no data rows); fix: write one row per sample")
    if label_column not in df.columns:
        shown = ", ".join(map(repr, list(df.columns[:6]))) + (", ..." if df.shape[1] > 6 else "")
        raise BenchInputError(
            f"{path} line 1 (header): no label column {label_column!r} (columns: {shown}); "
            f"fix: add a '{label_column}' column (0/1 or healthy/cancer) or pass label_column=..."
        )
    if "sample_id" in df.columns:
        samples = df["sample_id"].astype(str).tolist()
        df = df.drop(columns=["sample_id"])
    elif str(df.columns[0]) == "" or str(df.columns[0]).startswith("Unnamed: 0"):
        samples = df.iloc[:, 0].astype(str).tolist()
        df = df.iloc[:, 1:]
    elif not isinstance(df.index, pd.RangeIndex):
        samples = df.index.astype(str).tolist()
    else:
        samples = [f"row{i}" for i in range(len(df))]

    labels = df[label_column]
    y = np.empty(len(df), dtype=np.int64)
    for i, v in enumerate(labels.tolist()):
        key = str(v).strip().lower()
        if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v == v:
            key = str(int(v)) if float(v).is_integer() else key
        if key not in _MATRIX_LABELS:
            raise BenchInputError(
                f"{where(i)}: unknown {label_column!r} value {v!r}; fix: use 0/healthy/normal or "
                "1/cancer/tumor"
            )
        y[i] = _MATRIX_LABELS[key]

    feats = df.drop(columns=[label_column])
    if feats.shape[1] == 0:
        raise BenchInputError(
            f"{path}: no gene columns besides {label_column!r}; fix: add expression columns"
        )
    as_text: list[str] = []  # gene columns stored as text whose every value reads as a number
    for c in feats.columns:
        if not pd.api.types.is_numeric_dtype(feats[c]):
            num = pd.to_numeric(feats[c], errors="coerce")
            bad = np.flatnonzero(num.isna().to_numpy() & feats[c].notna().to_numpy())
            if bad.size:
                i = int(bad[0])
                raise BenchInputError(
                    f"{where(i)}: column {str(c)!r} has non-numeric value {feats[c].iloc[i]!r}; "
                    "fix: only numbers in gene columns (or name the id column 'sample_id')"
                )
            feats[c] = num
            as_text.append(str(c))
    x = feats.to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise BenchInputError(
            f"{where(i)}: column {str(feats.columns[j])!r} is {x[i, j]} (missing or infinite); "
            "fix: impute or drop this sample/gene before loading"
        )

    warnings: list[str] = []
    if as_text:
        more = f" and {len(as_text) - 5} more" if len(as_text) > 5 else ""
        warnings.append(
            f"{path}: column(s) {', '.join(map(repr, as_text[:5]))}{more} hold numbers stored as text; read "
            "them as numbers; fix: store gene columns as numbers (df[genes] = df[genes].astype(float))"
        )
    dup = pd.Index(samples).duplicated()
    if dup.any():
        first = int(np.flatnonzero(dup)[0])
        warnings.append(
            f"{where(first)}: duplicate sample id {samples[first]!r} ({int(dup.sum())} duplicate row(s) "
            "in all); kept the first of each"
        )
        keep = ~dup
        x, y = x[keep], y[keep]
        samples = [s for s, k in zip(samples, keep, strict=True) if k]
    return ExpressionData(
        x=x,
        y=y,
        genes=[str(c) for c in feats.columns],
        samples=samples,
        source=f"matrix file {path.name} ({x.shape[0]} samples x {x.shape[1]} features)",
        warnings=warnings,
    )
