"""GDC directory / matrix-file loading, caching and input validation."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from gdc_fixture import write_gdc_fixture

from bench.data import gdc
from bench.data.gdc import ExpressionData, load_expression
from bench.errors import BenchInputError


@pytest.fixture
def fx(tmp_path):
    return write_gdc_fixture(tmp_path / "gdc", n_tumour=18, n_normal=7, n_genes=150, seed=1, flat=2)


def _count_parses(monkeypatch) -> list[Path]:
    calls: list[Path] = []
    real = gdc.read_star_counts

    def counting(path, value_column="tpm_unstranded"):
        calls.append(Path(path))
        return real(path, value_column)

    monkeypatch.setattr(gdc, "read_star_counts", counting)
    return calls


def _rewrite(path: Path, fn) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(fn(lines)) + "\n")


def test_directory_shapes_labels_and_values(fx):
    d = load_expression(fx.root)
    assert isinstance(d, ExpressionData)
    assert d.x.shape == (25, 150) and d.x.dtype == np.float64
    assert d.y.dtype == np.int64 and d.class_counts == {0: 7, 1: 18}
    np.testing.assert_array_equal(d.y, fx.y)
    assert d.samples == fx.samples and d.genes == fx.genes
    assert "ENSG00000228572.7_PAR_Y" in d.genes
    assert not any(g.startswith("N_") for g in d.genes)
    # a known cell, read from the file text itself: line 7 = first gene (comment, header, 4 N_ rows)
    row = fx.files[3].read_text().splitlines()[6].split("\t")
    assert row[0] == fx.genes[0]
    assert d.x[3, 0] == float(row[6])
    np.testing.assert_array_equal(d.x, fx.tpm)
    assert d.warnings == []
    assert "GDC" in d.source


def test_other_value_column(fx):
    d = load_expression(fx.root, value_column="unstranded")
    assert d.x.shape == (25, 150)
    assert np.all(d.x == np.round(d.x))  # raw counts are integers


def test_cache_second_load_does_not_parse(fx, monkeypatch, tmp_path):
    calls = _count_parses(monkeypatch)
    first = load_expression(fx.root, cache_dir=tmp_path / "cache")
    assert len(calls) == 25
    second = load_expression(fx.root, cache_dir=tmp_path / "cache")
    assert len(calls) == 25  # served from cache
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)
    assert (first.genes, first.samples, first.source) == (second.genes, second.samples, second.source)
    # touching a gene file invalidates the cache
    st = fx.files[0].stat()
    os.utime(fx.files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    load_expression(fx.root, cache_dir=tmp_path / "cache")
    assert len(calls) == 50


def test_default_cache_dir(fx, monkeypatch):
    load_expression(fx.root)
    assert list((fx.root / ".bench_cache").glob("*.npz"))
    calls = _count_parses(monkeypatch)
    load_expression(fx.root)
    assert calls == []


def test_barcode_fallback_and_multi_sample_cells(fx):
    lines = fx.sheet_lines()
    cols = lines[0].split("\t")
    st, sid = cols.index("Sample Type"), cols.index("Sample ID")
    r1 = lines[1].split("\t")  # a tumour: blank Sample Type -> barcode -01A
    r1[st] = ""
    lines[1] = "\t".join(r1)
    last = lines[-1].split("\t")  # a normal listing two aliquots in one cell
    last[sid] = f"{last[sid]}, {last[sid][:-3]}-01A"
    last[st] = "Solid Tissue Normal, Primary Tumor"
    lines[-1] = "\t".join(last)
    fx.write_sheet_lines(lines)
    d = load_expression(fx.root)
    assert d.y[0] == 1 and d.y[-1] == 0
    assert d.samples[-1] == fx.samples[-1]
    assert any("comma-separated" in w for w in d.warnings)


def test_duplicate_sample_keeps_first(fx):
    lines = fx.sheet_lines()
    cols = lines[0].split("\t")
    sid = cols.index("Sample ID")
    r = lines[2].split("\t")
    r[sid] = fx.samples[0]
    lines[2] = "\t".join(r)
    fx.write_sheet_lines(lines)
    d = load_expression(fx.root)
    assert d.x.shape[0] == 24
    np.testing.assert_array_equal(d.x[1], fx.tpm[2 + 0])  # row 2 (file 1) dropped; next is file 2
    assert len(d.warnings) == 1 and "line 3" in d.warnings[0] and fx.samples[0] in d.warnings[0]


# ---------------------------------------------------------------------------- malformed input


def _err(path) -> str:
    with pytest.raises(BenchInputError) as e:
        load_expression(path)
    msg = str(e.value)
    assert "\n" not in msg and "fix" in msg
    return msg


def test_sheet_missing_column(fx):
    _rewrite(fx.sheet, lambda ls: [ls[0].replace("Sample ID", "Sample"), *ls[1:]])
    msg = _err(fx.root)
    assert fx.sheet.name in msg and "line 1" in msg and "Sample ID" in msg


def test_no_sample_sheet(fx):
    fx.sheet.unlink()
    msg = _err(fx.root)
    assert str(fx.root) in msg and "sample sheet" in msg


def test_empty_sheet(fx):
    _rewrite(fx.sheet, lambda ls: ls[:1])
    msg = _err(fx.root)
    assert fx.sheet.name in msg and "no files" in msg


def test_missing_file(fx):
    fx.files[4].unlink()
    msg = _err(fx.root)
    assert fx.sheet.name in msg and "line 6" in msg and fx.files[4].name in msg


def test_gene_file_missing_column(fx):
    _rewrite(fx.files[2], lambda ls: [ls[0], ls[1].replace("tpm_unstranded", "tpm"), *ls[2:]])
    msg = _err(fx.root)
    assert fx.files[2].name in msg and "line 2" in msg and "tpm_unstranded" in msg


@pytest.mark.parametrize("bad", ["abc", "NaN", ""])
def test_bad_value(fx, bad):
    def edit(ls):
        f = ls[10].split("\t")  # line 11 = gene index 4
        f[6] = bad
        ls[10] = "\t".join(f)
        return ls

    _rewrite(fx.files[3], edit)
    msg = _err(fx.root)
    assert fx.files[3].name in msg and "line 11" in msg and fx.genes[4] in msg and "tpm_unstranded" in msg


def test_duplicate_gene(fx):
    def edit(ls):
        f = ls[20].split("\t")
        f[0] = fx.genes[0]
        ls[20] = "\t".join(f)
        return ls

    _rewrite(fx.files[1], edit)
    msg = _err(fx.root)
    assert fx.files[1].name in msg and "line 21" in msg and fx.genes[0] in msg


def test_gene_lists_differ(fx):
    _rewrite(fx.files[5], lambda ls: ls[:-1])  # drop the last gene of one file
    msg = _err(fx.root)
    assert fx.files[5].name in msg and fx.files[0].name in msg and fx.genes[-1] in msg


def test_reordered_genes_are_aligned(fx):
    _rewrite(fx.files[5], lambda ls: ls[:6] + ls[6:][::-1])
    d = load_expression(fx.root)
    np.testing.assert_array_equal(d.x, fx.tpm)


def test_unknown_label_control_barcode(fx):
    lines = fx.sheet_lines()
    cols = lines[0].split("\t")
    r = lines[3].split("\t")
    r[cols.index("Sample Type")] = "Control Analyte"
    r[cols.index("Sample ID")] = r[cols.index("Sample ID")][:-3] + "20A"
    lines[3] = "\t".join(r)
    fx.write_sheet_lines(lines)
    msg = _err(fx.root)
    assert fx.sheet.name in msg and "line 4" in msg and "20" in msg


def test_missing_path(tmp_path):
    assert "no such file" in _err(tmp_path / "nope")


# ---------------------------------------------------------------------------- matrix files


def _matrix(n=12, g=6, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(rng.random((n, g)), columns=[f"G{i}" for i in range(g)])
    df.insert(0, "sample_id", [f"S{i}" for i in range(n)])
    df["label"] = ["cancer", "healthy", "tumor", "normal"] * (n // 4)
    return df


@pytest.mark.parametrize("suffix,sep", [(".csv", ","), (".tsv", "\t")])
def test_matrix_file(tmp_path, suffix, sep):
    df = _matrix()
    path = tmp_path / f"m{suffix}"
    df.to_csv(path, sep=sep, index=False)
    d = load_expression(path)
    assert d.x.shape == (12, 6) and d.genes == [f"G{i}" for i in range(6)]
    assert d.samples[:2] == ["S0", "S1"]
    np.testing.assert_array_equal(d.y[:4], [1, 0, 1, 0])
    np.testing.assert_allclose(d.x, df[d.genes].to_numpy())
    assert d.class_counts == {0: 6, 1: 6}


def test_matrix_index_column_and_numeric_labels(tmp_path):
    df = _matrix().set_index("sample_id")
    df["label"] = [0, 1] * 6
    path = tmp_path / "m.csv"
    df.to_csv(path, index=True)  # header: sample_id,... -> sample_id column
    assert load_expression(path).samples[0] == "S0"
    df.index.name = None
    df.to_csv(path, index=True)  # unnamed first column
    d = load_expression(path)
    assert d.samples[0] == "S0" and d.y.tolist() == [0, 1] * 6


def test_matrix_parquet(tmp_path):
    path = tmp_path / "m.parquet"
    _matrix().to_parquet(path)
    assert load_expression(path).x.shape == (12, 6)


def test_matrix_no_label_column(tmp_path):
    path = tmp_path / "m.csv"
    _matrix().drop(columns="label").to_csv(path, index=False)
    msg = _err(path)
    assert "m.csv" in msg and "line 1" in msg and "'label'" in msg


def test_matrix_unknown_label(tmp_path):
    df = _matrix()
    df.loc[5, "label"] = "benign"
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    msg = _err(path)
    assert "m.csv" in msg and "line 7" in msg and "benign" in msg


def test_matrix_non_numeric_and_empty(tmp_path):
    df = _matrix()
    df["G2"] = df["G2"].astype(object)
    df.loc[3, "G2"] = "n/a?"
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    msg = _err(path)
    assert "line 5" in msg and "G2" in msg
    _matrix().iloc[:0].to_csv(path, index=False)
    assert "no samples" in _err(path)


def test_matrix_duplicate_sample(tmp_path):
    df = _matrix()
    df.loc[4, "sample_id"] = "S1"
    path = tmp_path / "m.csv"
    df.to_csv(path, index=False)
    d = load_expression(path)
    assert d.x.shape[0] == 11 and "S1" in d.warnings[0]


# ---------------------------------------------------------------------------- offline stand-in


def test_gse7390():
    from bench.data.expression_offline import load_gse7390

    d = load_gse7390()
    assert d.x.shape == (198, 76) and d.class_counts == {0: 64, 1: 134}
    assert not {"age", "er", "grade", "size"} & set(d.genes)
    assert "stand-in" in d.source and "not TCGA" in d.source
    m = load_gse7390("metastasis")
    assert set(np.unique(m.y)) == {0, 1}
    with pytest.raises(BenchInputError):
        load_gse7390("grade")


# ---------------------------------------------------------------------------- error paths: the sample sheet
# Each error names the file (and line or field) and ends with the fix.


def test_several_sample_sheets(fx):
    other = fx.root / "gdc_sample_sheet.2024-02-02.tsv"
    other.write_text(fx.sheet.read_text())
    msg = _err(fx.root)
    assert "several sample sheets" in msg and fx.sheet.name in msg and other.name in msg
    assert "fix: keep exactly one sample sheet" in msg


def test_a_second_sheet_not_named_by_the_gdc_is_ignored(fx):
    (fx.root / "my_cart_copy.tsv").write_text(fx.sheet.read_text())
    assert load_expression(fx.root).x.shape == (25, 150)


def test_sheet_with_a_ragged_row(fx):
    _rewrite(fx.sheet, lambda ls: [*ls[:3], ls[3] + "\textra\tcells", *ls[4:]])
    msg = _err(fx.root)
    assert f"{fx.sheet} line 4" in msg and "12 tab-separated fields where the header has 10" in msg
    assert "fix: re-download the sample sheet" in msg


def test_sheet_not_utf8(fx):
    fx.sheet.write_bytes(fx.sheet.read_bytes().replace(b"Primary Tumor", b"Primary Tum\xf6r", 1))
    msg = _err(fx.root)
    assert str(fx.sheet) in msg and "not UTF-8" in msg and "fix: re-download the sample sheet" in msg


def test_sheet_that_cannot_be_opened(fx, monkeypatch):
    real_open = open

    def deny(path, *args, **kwargs):
        if Path(path) == fx.sheet:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(gdc, "open", deny, raising=False)  # the module's open, not the builtin
    msg = _err(fx.root)
    assert f"could not read {fx.sheet.name} (Permission denied)" in msg and "or make it readable" in msg


@pytest.mark.parametrize("cell", ["", "   ", " , TCGA-A1-A0SB-01A"])
def test_empty_sample_id(fx, cell):
    fx.set_sheet_cell(3, "Sample ID", cell)  # the first of a comma-separated cell is the one used
    msg = _err(fx.root)
    assert f"{fx.sheet} line 3: empty Sample ID" in msg and "fix: fill it in or remove the row" in msg


# ---------------------------------------------------------------------------- error paths: STAR gene files


def test_empty_star_file(fx):
    fx.files[2].write_text("")
    msg = _err(fx.root)
    assert f"{fx.files[2]} line 1: empty gene file" in msg and "fix: re-download this file" in msg


def test_star_file_with_only_its_comment(fx):
    fx.files[2].write_text("# gene-model: GENCODE v36\n")
    msg = _err(fx.root)
    assert f"{fx.files[2]} line 2: empty gene file (no header line after 1 comment line(s))" in msg


def test_star_file_without_gene_rows(fx):
    _rewrite(fx.files[2], lambda ls: ls[:6])  # comment, header and the four N_* summary rows
    msg = _err(fx.root)
    assert f"{fx.files[2]}: no gene rows after the header" in msg and "fix" in msg


def test_star_row_with_extra_fields(fx):
    _rewrite(fx.files[2], lambda ls: [*ls[:8], ls[8] + "\t1.0", *ls[9:]])  # line 9 = third gene
    msg = _err(fx.root)
    assert f"{fx.files[2]} line 9: malformed gene file" in msg
    assert "10 tab-separated fields where the header has 9" in msg and "fix: re-download" in msg


def test_star_file_cut_mid_row(fx):
    last = fx.files[2].read_text().splitlines()[-1]
    cut = len(fx.genes[-1]) + 4  # the gene id survives, the values do not
    _rewrite(fx.files[2], lambda ls: [*ls[:-1], last[:cut]])
    msg = _err(fx.root)
    line = 6 + len(fx.genes)  # comment, header, 4 summary rows, then the genes
    assert f"{fx.files[2]} line {line}: gene {fx.genes[-1]!r} column 'tpm_unstranded' is empty/NaN" in msg
    assert "fix: re-download this file" in msg


def test_star_file_that_cannot_be_opened(fx, monkeypatch):
    real_open = open

    def deny(path, *args, **kwargs):
        if Path(path) == fx.files[2]:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(gdc, "open", deny, raising=False)
    msg = _err(fx.root)
    assert f"{fx.files[2]}: cannot read the gene file (Permission denied)" in msg and "permissions" in msg


def test_a_gene_missing_from_one_file(fx):
    _rewrite(fx.files[7], lambda ls: ls[:16] + ls[17:])  # line 17 = gene index 10
    msg = _err(fx.root)
    assert str(fx.files[7]) in msg and f"first file {fx.files[0]}" in msg
    assert f"lacks gene {fx.genes[10]!r}; 149 vs 150 genes" in msg and "fix: use files from one GDC" in msg


def test_a_gene_the_first_file_lacks(fx):
    def rename(ls):
        cells = ls[16].split("\t")
        cells[0] = "ENSG99999999999.1"
        return [*ls[:16], "\t".join(cells), *ls[17:]]

    _rewrite(fx.files[7], rename)
    msg = _err(fx.root)
    assert str(fx.files[7]) in msg and "has gene 'ENSG99999999999.1' that the first file lacks" in msg


# ---------------------------------------------------------------------------- error paths: the cache


def _cache_file(root: Path, cache: Path) -> Path:
    load_expression(root, cache_dir=cache)
    (path,) = cache.glob("*.npz")
    return path


@pytest.mark.parametrize(
    "spoil",
    [
        lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]),  # truncated zip
        lambda p: p.write_bytes(b"not an npz at all"),
        lambda p: np.savez(p, x=np.zeros((2, 2))),  # a foreign npz: arrays missing
        lambda p: np.savez(  # arrays that disagree with each other
            p,
            x=np.zeros((3, 2)),
            y=np.zeros(3),
            genes=np.array(["a"]),
            samples=np.array(["s"] * 3),
            meta=np.asarray('{"source": "s", "warnings": []}'),
        ),  # fmt: skip
    ],
)
def test_corrupt_cache_is_rebuilt_with_a_warning(fx, monkeypatch, tmp_path, spoil):
    path = _cache_file(fx.root, tmp_path / "cache")
    spoil(path)  # in place (the name ends in .npz, so np.savez keeps it)
    calls = _count_parses(monkeypatch)
    d = load_expression(fx.root, cache_dir=tmp_path / "cache")
    assert len(calls) == 25  # parsed again
    np.testing.assert_array_equal(d.x, fx.tpm)
    assert d.samples == fx.samples and d.y.tolist() == fx.y.tolist()
    (note,) = d.warnings
    assert note.startswith(f"{path}: ") and ("corrupt cache" in note or "inconsistent cache" in note)
    assert "rebuilt it from the gene files" in note
    again = load_expression(fx.root, cache_dir=tmp_path / "cache")  # the rebuilt cache serves, silently
    assert len(calls) == 25 and again.warnings == []
    np.testing.assert_array_equal(again.x, fx.tpm)


# ---------------------------------------------------------------------------- error paths: matrix files


@pytest.mark.parametrize(("cell", "shown"), [("", "nan"), ("inf", "inf"), ("-inf", "-inf")])
def test_matrix_missing_or_infinite_value(tmp_path, cell, shown):
    path = tmp_path / "m.csv"
    _matrix().to_csv(path, index=False)
    _rewrite(path, lambda ls: [*ls[:4], ls[4].replace(ls[4].split(",")[3], cell, 1), *ls[5:]])
    msg = _err(path)
    assert f"{path} line 5: column 'G2' is {shown} (missing or infinite)" in msg
    assert "fix: impute or drop this sample/gene" in msg


def test_parquet_missing_value_names_the_row(tmp_path):
    df = _matrix()
    df.loc[7, "G4"] = np.nan
    path = tmp_path / "m.parquet"
    df.to_parquet(path)
    assert f"{path} row 7: column 'G4' is nan (missing or infinite)" in _err(path)


def test_parquet_numbers_stored_as_text_are_read_as_numbers(tmp_path):
    df = _matrix()
    expected = df[[f"G{i}" for i in range(6)]].to_numpy()
    df["G2"] = df["G2"].map(repr)  # an object column of numeric strings, e.g. '0.6369616873214543'
    df["G5"] = df["G5"].astype(object)  # floats in an object column
    path = tmp_path / "m.parquet"
    df.to_parquet(path)
    assert not pd.api.types.is_numeric_dtype(pd.read_parquet(path)["G2"])  # text, as written
    d = load_expression(path)
    np.testing.assert_array_equal(d.x, expected)
    (note,) = d.warnings
    assert str(path) in note and "'G2'" in note and "stored as text" in note and "fix: store gene" in note


def test_parquet_text_that_is_not_a_number(tmp_path):
    df = _matrix()
    df["G2"] = df["G2"].map(repr)
    df.loc[3, "G2"] = "0,5"  # a decimal comma
    path = tmp_path / "m.parquet"
    df.to_parquet(path)
    msg = _err(path)
    assert f"{path} row 3: column 'G2' has non-numeric value '0,5'" in msg and "fix: only numbers" in msg
