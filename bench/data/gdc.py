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
  read. The assembled matrix is cached (see :func:`load_expression` and `bench.data.gdc_cache`).
* **Matrix file** (read by `bench.data.matrix_file`: ``.csv``, ``.tsv``/``.txt``, optionally ``.gz``;
  ``.parquet`` when pyarrow is installed): samples x genes, a label column (default ``label``: 0/1 or ``healthy``/``normal``/``cancer``/``tumor``),
  and optionally a ``sample_id`` column or an unnamed first (index) column. Gene columns must be numbers
  (a column of numbers stored as text, as a Parquet object column may be, is read as numbers with a
  warning); a missing or infinite value is an error naming the row and column.

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

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bench.data.expression import ExpressionData
from bench.data.gdc_cache import cache_key, load_cache, save_cache
from bench.errors import BenchInputError

__all__ = [
    "ExpressionData",
    "load_expression",
    "load_gdc_directory",
    "read_star_counts",
    "label_from_sample",
    "find_sample_sheet",
]

SHEET_REQUIRED = ("File ID", "File Name", "Sample ID")
STAR_SUMMARY_ROWS = frozenset({"N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous"})

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

_BARCODE = re.compile(r"^TCGA-[A-Za-z0-9]{2}-[A-Za-z0-9]{4}-(\d{2})")


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
            mtime, so editing or replacing any of them re-parses. A corrupt or inconsistent cache file
            is rebuilt from the gene files, with a line in ``warnings`` naming it.
    """
    p = Path(path)
    if p.is_dir():
        return load_gdc_directory(p, value_column=value_column, cache_dir=cache_dir)
    if p.is_file():
        from bench.data.matrix_file import load_matrix_file

        return load_matrix_file(p, label_column=label_column)
    raise BenchInputError(
        f"{p}: no such file or directory; fix: pass a GDC download directory or a samples x genes matrix file"
    )


# --------------------------------------------------------------------------- GDC directory


def find_sample_sheet(directory: Path) -> Path:
    """Return the sample-sheet TSV at the top level of ``directory``."""
    candidates, unreadable = [], []
    for f in sorted(directory.glob("*.tsv")):
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                header = fh.readline().rstrip("\r\n").split("\t")
        except OSError as e:
            unreadable.append(f"{f.name} ({e.strerror or e})")
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
        cannot = f"; could not read {', '.join(unreadable)}" if unreadable else ""
        raise BenchInputError(
            f"{directory}: no sample sheet (a top-level *.tsv with columns 'File ID' and 'File Name'){cannot}; "
            "fix: download the sample sheet from the GDC cart and save it in this directory"
            + (" (or make it readable)" if unreadable else "")
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
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise BenchInputError(
            f"{_where_parse_failed(sheet, e)}: not a readable tab-separated sample sheet ({_reason(e)}); "
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


_FIELDS = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")


def _where_parse_failed(path: Path, err: Exception) -> str:
    """`path line N` when pandas names the line (its numbers count every line of the file), else `path`."""
    m = _FIELDS.search(str(err))
    return f"{path} line {m.group(2)}" if m else str(path)


def _reason(err: Exception) -> str:
    """One line saying why a file could not be read."""
    m = _FIELDS.search(str(err))
    if m:
        return f"{m.group(3)} tab-separated fields where the header has {m.group(1)}"
    if isinstance(err, UnicodeDecodeError):
        return f"not UTF-8 text: byte {err.object[err.start : err.start + 1]!r} at offset {err.start}"
    if isinstance(err, OSError):
        return f"cannot read: {err.strerror or err}"
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


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
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith("#"):
                    n_comment += 1
                    continue
                header = line.rstrip("\r\n").split("\t")
                break
    except OSError as e:
        raise BenchInputError(
            f"{path}: cannot read the gene file ({e.strerror or e}); fix: check its permissions or "
            "re-download it from the GDC"
        ) from e
    header_line = n_comment + 1
    if header in ([], [""]):
        raise BenchInputError(
            f"{path} line {header_line}: empty gene file (no header line"
            f"{f' after {n_comment} comment line(s)' if n_comment else ''}); fix: re-download this file from "
            "the GDC, or remove it from the sample sheet"
        )
    missing = [c for c in ("gene_id", value_column) if c not in header]
    if missing:
        raise BenchInputError(
            f"{path} line {header_line} (header): missing column(s) {', '.join(map(repr, missing))}; "
            "fix: use GDC STAR 'augmented_star_gene_counts' files, or set value_column to one of "
            f"{', '.join(h for h in header if h not in ('gene_id', 'gene_name', 'gene_type'))}"
        )
    try:
        # all columns, so that a row with more fields than the header is an error, not a silent shift
        df = pd.read_csv(path, sep="\t", skiprows=n_comment, dtype={"gene_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as e:
        raise BenchInputError(
            f"{_where_parse_failed(path, e)}: malformed gene file ({_reason(e)}); fix: re-download this file "
            "from the GDC, or remove it from the sample sheet"
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
    cache_path = (
        Path(cache_dir or directory / ".bench_cache") / f"gdc_{cache_key(sheet, files, value_column)}.npz"
    )
    cached, cache_note = load_cache(cache_path)
    if cached is not None:
        return ExpressionData(**cached)

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
                    detail = f"has gene {str(ids[idx < 0][0])!r} that the first file lacks"
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
    err = save_cache(cache_path, vars(data))
    data.warnings += [w for w in (cache_note, err) if w]  # after saving: the new cache does not repeat them
    return data
