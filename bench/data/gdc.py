"""Load gene-expression data: a GDC download directory (STAR counts) or a ready samples x genes matrix.

Two inputs, chosen by :func:`load_expression` from the path:

* **Directory** as the GDC data-transfer client leaves it, plus the cart's sample sheet:
  ``DIR/gdc_sample_sheet*.tsv`` (or any top-level ``*.tsv`` whose header has ``File ID`` and ``File Name``)
  and one ``*.augmented_star_gene_counts.tsv`` per sample at ``DIR/<File ID>/<File Name>`` (or
  ``DIR/<File Name>``). Each gene file starts with ``# gene-model: GENCODE v36``, then the header
  ``gene_id gene_name gene_type unstranded ... tpm_unstranded fpkm_unstranded fpkm_uq_unstranded``, then
  four summary rows (``N_unmapped``, ``N_multimapping``, ``N_noFeature``, ``N_ambiguous``) that are
  dropped, then one row per gene keyed by its versioned Ensembl id (``ENSG00000000003.15``; ``_PAR_Y``
  ids are distinct genes and are kept). The column ``value_column`` (default ``tpm_unstranded``, TPM) is
  read. The assembled matrix is cached (see :func:`load_expression`).
* **Matrix file** (``.csv``, ``.tsv``/``.txt``, optionally ``.gz``; ``.parquet`` when pyarrow is installed):
  samples x genes, a label column (default ``label``: 0/1 or ``healthy``/``normal``/``cancer``/``tumor``),
  and optionally a ``sample_id`` column or an unnamed first (index) column.

Labels: 0 = healthy (normal tissue), 1 = cancer. For GDC input they come from the sample sheet's
``Sample Type`` (``Solid Tissue Normal`` -> 0; ``Primary Tumor``, ``Metastatic``, ``Recurrent Tumor``,
... -> 1); when that is blank or unknown, from the TCGA barcode in ``Sample ID`` (characters 14-15 of
``TCGA-A1-A0SB-01A``: 01-09 tumour, 10-19 normal; anything else, e.g. 20-29 controls, is an error).
A sample-sheet cell may list several comma-separated Sample IDs / Sample Types for one file (pooled
aliquots); the **first** one is used, and a warning says how many rows that affected.
Duplicate samples (the same Sample ID twice) keep the first file and add a warning.

All counts (samples, classes, genes) come from the data; nothing assumes the paper's cohort sizes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.errors import BenchInputError

__all__ = [
    "ExpressionData",
    "load_expression",
    "load_gdc_directory",
    "load_matrix_file",
    "read_star_counts",
    "label_from_sample",
    "find_sample_sheet",
]

SHEET_REQUIRED = ("File ID", "File Name", "Sample ID")
STAR_SUMMARY_ROWS = frozenset({"N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"})
_CACHE_VERSION = "gdc-cache-v1"

_NORMAL_TYPES = {
    "solid tissue normal",
    "blood derived normal",
    "bone marrow normal",
    "buccal cell normal",
    "ebv immortalized normal",
    "normal",
}
_CANCER_TYPES = {
    "primary tumor",
    "primary tumour",
    "metastatic",
    "recurrent tumor",
    "recurrent tumour",
    "additional - new primary",
    "additional metastatic",
    "primary blood derived cancer - peripheral blood",
    "primary blood derived cancer - bone marrow",
    "recurrent blood derived cancer - peripheral blood",
    "recurrent blood derived cancer - bone marrow",
    "tumor",
    "tumour",
}
_MATRIX_LABELS = {
    "0": 0,
    "healthy": 0,
    "normal": 0,
    "1": 1,
    "cancer": 1,
    "tumor": 1,
    "tumour": 1,
}
_BARCODE = re.compile(r"^TCGA-[A-Za-z0-9]{2}-[A-Za-z0-9]{4}-(\d{2})")


@dataclass
class ExpressionData:
    """An expression cohort.

    Attributes:
        x: (n_samples, n_genes) float64, e.g. TPM for GDC input (not log-transformed, not scaled).
        y: (n_samples,) int64 in {0, 1}; 1 = cancer, 0 = healthy.
        genes: n_genes feature names (versioned Ensembl ids for GDC input).
        samples: n_samples sample ids (TCGA sample barcodes for GDC input).
        source: short human description of where the data came from.
        warnings: things the loader fixed up silently (dropped duplicates, ...), one line each.
    """

    x: np.ndarray
    y: np.ndarray
    genes: list[str]
    samples: list[str]
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_genes(self) -> int:
        return int(self.x.shape[1])

    @property
    def class_counts(self) -> dict[int, int]:
        """``{0: n_healthy, 1: n_cancer}`` counted from ``y``."""
        return {0: int(np.sum(self.y == 0)), 1: int(np.sum(self.y == 1))}


def load_expression(
    path: str | Path,
    *,
    value_column: str = "tpm_unstranded",
    label_column: str = "label",
    cache_dir: Path | None = None,
) -> ExpressionData:
    """Load a GDC download directory or a samples x genes matrix file (see the module docstring).

    Args:
        path: a directory (GDC download + sample sheet) or a matrix file.
        value_column: column read from each STAR counts file (directory input only).
        label_column: label column of a matrix file (matrix input only).
        cache_dir: where the assembled directory matrix is cached; default ``DIR/.bench_cache/``.
            The cache key hashes the sample sheet, ``value_column`` and every gene file's size and
            mtime, so editing or replacing any of them re-parses.
    """
    p = Path(path)
    if p.is_dir():
        return load_gdc_directory(p, value_column=value_column, cache_dir=cache_dir)
    if p.is_file():
        return load_matrix_file(p, label_column=label_column)
    raise BenchInputError(
        f"{p}: no such file or directory; fix: pass a GDC download directory or a samples x genes matrix file"
    )


# --------------------------------------------------------------------------- GDC directory


def find_sample_sheet(directory: Path) -> Path:
    """Return the sample-sheet TSV at the top level of ``directory``."""
    candidates = []
    for f in sorted(directory.glob("*.tsv")):
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                header = fh.readline().rstrip("\r\n").split("\t")
        except OSError:
            continue
        if "File ID" in header and "File Name" in header:
            candidates.append(f)
    if len(candidates) > 1:
        named = [c for c in candidates if c.name.startswith("gdc_sample_sheet")]
        if len(named) == 1:
            return named[0]
        raise BenchInputError(
            f"{directory}: several sample sheets ({', '.join(c.name for c in candidates)}); "
            "fix: keep exactly one sample sheet TSV at the top level"
        )
    if not candidates:
        raise BenchInputError(
            f"{directory}: no sample sheet (a top-level *.tsv with columns 'File ID' and 'File Name'); "
            "fix: download the sample sheet from the GDC cart and save it in this directory"
        )
    return candidates[0]


def label_from_sample(sample_type: str, sample_id: str, *, where: str = "") -> int:
    """Label 0 (healthy) / 1 (cancer) from a GDC Sample Type, falling back to the TCGA barcode.

    ``where`` (e.g. ``"sheet.tsv line 5"``) prefixes the error message.
    """
    st = sample_type.strip().lower()
    if st in _NORMAL_TYPES:
        return 0
    if st in _CANCER_TYPES:
        return 1
    m = _BARCODE.match(sample_id.strip())
    if m:
        code = int(m.group(1))
        if 1 <= code <= 9:
            return 1
        if 10 <= code <= 19:
            return 0
        reason = f"barcode sample-type code {code:02d} is neither tumour (01-09) nor normal (10-19)"
    else:
        reason = "Sample ID is not a TCGA barcode (TCGA-XX-XXXX-NN...)"
    raise BenchInputError(
        f"{where}: cannot tell healthy from cancer for Sample ID {sample_id!r}, Sample Type {sample_type!r} "
        f"({reason}); fix: remove this row from the sample sheet or set its Sample Type to "
        "'Solid Tissue Normal' or 'Primary Tumor'"
    )


def _first(cell: str) -> str:
    return cell.split(",")[0].strip()


def _read_sheet(sheet: Path) -> pd.DataFrame:
    try:
        df = pd.read_csv(sheet, sep="\t", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchInputError(
            f"{sheet}: not a readable tab-separated sample sheet ({str(e).splitlines()[0]}); "
            "fix: re-download the sample sheet from the GDC cart"
        ) from e
    df.columns = [c.strip() for c in df.columns]
    missing = [c for c in SHEET_REQUIRED if c not in df.columns]
    if missing:
        raise BenchInputError(
            f"{sheet} line 1 (header): missing column(s) {', '.join(map(repr, missing))} "
            f"(has {', '.join(map(repr, df.columns))}); fix: use the GDC sample sheet, which has "
            f"{', '.join(map(repr, SHEET_REQUIRED))}"
        )
    if len(df) == 0:
        raise BenchInputError(
            f"{sheet}: the sample sheet lists no files; fix: add files to the GDC cart and re-download"
        )
    return df


def _resolve(directory: Path, file_id: str, file_name: str) -> Path | None:
    for cand in (directory / file_id / file_name, directory / file_name):
        if file_name and cand.is_file():
            return cand
    return None


def read_star_counts(path: Path, value_column: str = "tpm_unstranded") -> tuple[np.ndarray, np.ndarray]:
    """Parse one GDC ``*.augmented_star_gene_counts.tsv``.

    Returns:
        gene_ids: (n_genes,) str array of versioned Ensembl ids, file order, ``N_*`` summary rows dropped.
        values: (n_genes,) float64 values of ``value_column`` (TPM for ``tpm_unstranded``).
    """
    n_comment = 0
    header: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("#"):
                n_comment += 1
                continue
            header = line.rstrip("\r\n").split("\t")
            break
    header_line = n_comment + 1
    missing = [c for c in ("gene_id", value_column) if c not in header]
    if missing:
        raise BenchInputError(
            f"{path} line {header_line} (header): missing column(s) {', '.join(map(repr, missing))}; "
            "fix: use GDC STAR 'augmented_star_gene_counts' files, or set value_column to one of "
            f"{', '.join(h for h in header if h not in ('gene_id', 'gene_name', 'gene_type'))}"
        )
    try:
        df = pd.read_csv(
            path, sep="\t", skiprows=n_comment, usecols=["gene_id", value_column], dtype={"gene_id": str}
        )
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise BenchInputError(
            f"{path}: malformed gene file ({str(e).strip().splitlines()[-1]}; lines counted after "
            f"{n_comment} comment line(s)); fix: re-download this file from the GDC"
        ) from e
    first_data_line = header_line + 1
    ids = df["gene_id"].astype(str)
    keep = ~(ids.isin(STAR_SUMMARY_ROWS) | ids.str.startswith("N_")).to_numpy()
    col = df[value_column]
    if not pd.api.types.is_numeric_dtype(col):
        num = pd.to_numeric(col, errors="coerce")
        bad = np.flatnonzero(keep & num.isna().to_numpy() & col.notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise BenchInputError(
                f"{path} line {first_data_line + i}: gene {ids.iloc[i]!r} column {value_column!r} has "
                f"non-numeric value {col.iloc[i]!r}; fix: re-download this file from the GDC"
            )
        col = num
    values = col.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(keep & ~np.isfinite(values))
    if bad.size:
        i = int(bad[0])
        raise BenchInputError(
            f"{path} line {first_data_line + i}: gene {ids.iloc[i]!r} column {value_column!r} is "
            f"{'empty/NaN' if np.isnan(values[i]) else values[i]}; fix: re-download this file from the GDC "
            "or remove it from the sample sheet"
        )
    kept_ids = ids[keep]
    dup = kept_ids.duplicated().to_numpy()
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        i = int(np.flatnonzero(keep)[j])
        raise BenchInputError(
            f"{path} line {first_data_line + i}: duplicate gene id {kept_ids.iloc[j]!r}; "
            "fix: re-download this file from the GDC (each gene id must appear once)"
        )
    if not keep.any():
        raise BenchInputError(
            f"{path}: no gene rows after the header; fix: re-download this file from the GDC"
        )
    return kept_ids.to_numpy(dtype=str), values[keep]


def _cache_key(sheet: Path, files: list[Path], value_column: str) -> str:
    h = hashlib.sha256()
    h.update(_CACHE_VERSION.encode())
    h.update(sheet.read_bytes())
    h.update(value_column.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _load_cache(path: Path) -> ExpressionData | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            return ExpressionData(
                x=z["x"].astype(np.float64),
                y=z["y"].astype(np.int64),
                genes=z["genes"].tolist(),
                samples=z["samples"].tolist(),
                source=meta["source"],
                warnings=list(meta["warnings"]),
            )
    except (OSError, ValueError, KeyError):
        return None  # corrupt or foreign file: rebuild


def _save_cache(path: Path, data: ExpressionData) -> str | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}.npz")
        meta = json.dumps({"source": data.source, "warnings": data.warnings})
        np.savez(
            tmp,
            x=data.x,
            y=data.y,
            genes=np.asarray(data.genes, dtype=str),
            samples=np.asarray(data.samples, dtype=str),
            meta=np.asarray(meta),
        )
        os.replace(tmp, path)
    except OSError as e:
        return f"could not write cache {path} ({e}); the next load will parse the files again"
    return None


def load_gdc_directory(
    directory: str | Path, *, value_column: str = "tpm_unstranded", cache_dir: Path | None = None
) -> ExpressionData:
    """Assemble a GDC download directory into an :class:`ExpressionData` (see the module docstring).

    Rows follow the sample sheet's order (after dropping duplicate samples and non-expression rows).
    """
    directory = Path(directory)
    sheet = find_sample_sheet(directory)
    df = _read_sheet(sheet)
    warnings: list[str] = []

    rows: list[tuple[int, str, int, Path]] = []  # (sheet line, sample id, label, file)
    seen: dict[str, int] = {}
    n_dupes = n_multi = n_other = 0
    for i, rec in enumerate(df.to_dict("records")):
        line = i + 2
        where = f"{sheet} line {line}"
        dtype = rec.get("Data Type", "").strip()
        if dtype and dtype != "Gene Expression Quantification":
            n_other += 1
            continue
        sample_cell = rec["Sample ID"]
        if "," in sample_cell:
            n_multi += 1
        sample_id = _first(sample_cell)
        if not sample_id:
            raise BenchInputError(f"{where}: empty Sample ID; fix: fill it in or remove the row")
        if sample_id in seen:
            n_dupes += 1
            warnings.append(
                f"{where}: duplicate Sample ID {sample_id!r} (first at line {seen[sample_id]}); "
                "kept the first"
            )
            continue
        file_id, file_name = rec["File ID"].strip(), rec["File Name"].strip()
        f = _resolve(directory, file_id, file_name)
        if f is None:
            raise BenchInputError(
                f"{where}: file {file_name!r} not found at {directory / file_id / file_name} or "
                f"{directory / file_name}; fix: re-run the GDC download or remove the row from the sheet"
            )
        label = label_from_sample(_first(rec.get("Sample Type", "")), sample_id, where=where)
        seen[sample_id] = line
        rows.append((line, sample_id, label, f))
    if n_multi:
        warnings.append(
            f"{sheet}: {n_multi} row(s) list several comma-separated Sample IDs; used the first of each"
        )
    if n_other:
        warnings.append(
            f"{sheet}: skipped {n_other} row(s) whose Data Type is not Gene Expression Quantification"
        )
    if not rows:
        raise BenchInputError(
            f"{sheet}: no gene-expression files listed; fix: add STAR gene-count files to the GDC cart"
        )

    files = [r[3] for r in rows]
    cache_path = Path(cache_dir or directory / ".bench_cache") / (
        f"gdc_{_cache_key(sheet, files, value_column)}.npz"
    )
    cached = _load_cache(cache_path)
    if cached is not None:
        return cached

    genes: np.ndarray | None = None
    gene_pos: pd.Index | None = None
    x: np.ndarray | None = None
    for k, (_line, _sid, _lab, f) in enumerate(rows):
        ids, vals = read_star_counts(f, value_column)
        if genes is None:
            genes, gene_pos = ids, pd.Index(ids)
            x = np.empty((len(rows), len(ids)), dtype=np.float64)
        elif not np.array_equal(ids, genes):
            idx = gene_pos.get_indexer(ids)
            if len(ids) != len(genes) or (idx < 0).any():
                if (idx < 0).any():
                    detail = f"has gene {ids[idx < 0][0]!r} that the first file lacks"
                else:
                    missing = sorted(set(genes.tolist()) - set(ids.tolist()))
                    detail = f"lacks gene {missing[0]!r}" if missing else "has a different gene count"
                raise BenchInputError(
                    f"{f}: gene list differs from the first file {files[0]} ({detail}; {len(ids)} vs "
                    f"{len(genes)} genes); fix: use files from one GDC workflow/gene model, or remove this "
                    "file from the sample sheet"
                )
            reordered = np.empty_like(vals)
            reordered[idx] = vals
            vals = reordered
        x[k] = vals
    data = ExpressionData(
        x=x,
        y=np.asarray([r[2] for r in rows], dtype=np.int64),
        genes=genes.tolist(),
        samples=[r[1] for r in rows],
        source=f"GDC STAR counts ({value_column}), {len(rows)} files from {directory}",
        warnings=warnings,
    )
    err = _save_cache(cache_path, data)
    if err:
        data.warnings.append(err)
    return data


# --------------------------------------------------------------------------- matrix file


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
    for c in feats.columns:
        if not pd.api.types.is_numeric_dtype(feats[c]):
            num = pd.to_numeric(feats[c], errors="coerce")
            i = int(np.flatnonzero(num.isna().to_numpy() & feats[c].notna().to_numpy())[0])
            raise BenchInputError(
                f"{where(i)}: column {str(c)!r} has non-numeric value {feats[c].iloc[i]!r}; "
                "fix: only numbers in gene columns (or name the id column 'sample_id')"
            )
    x = feats.to_numpy(dtype=np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise BenchInputError(
            f"{where(i)}: column {str(feats.columns[j])!r} is {x[i, j]} (missing or infinite); "
            "fix: impute or drop this sample/gene before loading"
        )

    warnings: list[str] = []
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
