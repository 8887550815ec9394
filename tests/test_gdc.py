"""GDC directory / matrix-file loading, caching and input validation."""

from __future__ import annotations

import importlib.util
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


@pytest.mark.skipif(importlib.util.find_spec("pyarrow") is None, reason="pyarrow not installed")
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
    pytest.importorskip("sksurv")
    from bench.data.expression_offline import load_gse7390

    d = load_gse7390()
    assert d.x.shape == (198, 76) and d.class_counts == {0: 64, 1: 134}
    assert not {"age", "er", "grade", "size"} & set(d.genes)
    assert "stand-in" in d.source and "not TCGA" in d.source
    m = load_gse7390("metastasis")
    assert set(np.unique(m.y)) == {0, 1}
    with pytest.raises(BenchInputError):
        load_gse7390("grade")
