"""Write a small GDC download directory in the exact format of a real TCGA STAR-counts download.

Layout (as the GDC data-transfer client leaves it)::

    tmp/gdc_sample_sheet.2024-01-01.tsv
    tmp/<File ID>/<File ID>.rna_seq.augmented_star_gene_counts.tsv

Each gene file: ``# gene-model: GENCODE v36``, the STAR header, the four ``N_*`` summary rows, then one row
per gene with a versioned Ensembl id (one of them a ``_PAR_Y`` id). The first ``n_de`` genes are up-regulated
in tumours, so the data has true differential genes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

STAR_HEADER = [
    "gene_id",
    "gene_name",
    "gene_type",
    "unstranded",
    "stranded_first",
    "stranded_second",
    "tpm_unstranded",
    "fpkm_unstranded",
    "fpkm_uq_unstranded",
]
SHEET_HEADER = [
    "File ID",
    "File Name",
    "Data Category",
    "Data Type",
    "Project ID",
    "Case ID",
    "Sample ID",
    "Sample Type",
    "Tissue Type",
    "Tumor Descriptor",
]


@dataclass
class GdcFixture:
    """What :func:`write_gdc_fixture` wrote.

    ``tpm`` (n_samples, n_genes) holds the TPM values exactly as written (4 decimals), rows in sample-sheet
    order; ``y`` 1 = tumour; ``de_genes`` indices of the truly differential genes.
    """

    root: Path
    sheet: Path
    files: list[Path]
    genes: list[str]
    samples: list[str]
    y: np.ndarray
    tpm: np.ndarray
    de_genes: np.ndarray

    def sheet_lines(self) -> list[str]:
        return self.sheet.read_text().splitlines()

    def write_sheet_lines(self, lines: list[str]) -> None:
        self.sheet.write_text("\n".join(lines) + "\n")

    def set_sheet_cell(self, line: int, column: str, value: str) -> None:
        """Rewrite one cell of the sample sheet: `line` is the 1-based file line (2 = first file's row)."""
        lines = self.sheet_lines()
        cells = lines[line - 1].split("\t")
        cells[lines[0].split("\t").index(column)] = value
        lines[line - 1] = "\t".join(cells)
        self.write_sheet_lines(lines)


def gene_ids(n_genes: int, rng: np.random.Generator) -> list[str]:
    ids = [f"ENSG{1000 + 7 * i:011d}.{int(rng.integers(1, 20))}" for i in range(n_genes)]
    ids[-1] = "ENSG00000228572.7_PAR_Y"
    return ids


def write_star_file(path: Path, genes: list[str], tpm: np.ndarray, rng: np.random.Generator) -> None:
    """Write one ``augmented_star_gene_counts.tsv`` with the given (n_genes,) TPM values."""
    lines = ["# gene-model: GENCODE v36", "\t".join(STAR_HEADER)]
    summary = {"N_unmapped": 2_000_000, "N_multimapping": 3_500_000, "N_noFeature": 1_200_000}
    summary["N_ambiguous"] = 900_000
    for name, n in summary.items():
        lines.append(f"{name}\t\t\t{n}\t{n + 11}\t{n - 7}\t\t\t")
    counts = rng.poisson(np.maximum(tpm, 0.0) * 3.0 + 1.0)
    for g, (gid, t, c) in enumerate(zip(genes, tpm, counts, strict=True)):
        fpkm = t * 0.37
        lines.append(
            f"{gid}\tGENE{g}\tprotein_coding\t{c}\t{c // 2}\t{c - c // 2}\t"
            f"{t:.4f}\t{fpkm:.4f}\t{fpkm * 1.6:.4f}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_gdc_fixture(
    tmp_path: Path,
    n_tumour: int = 20,
    n_normal: int = 8,
    n_genes: int = 200,
    seed: int = 0,
    *,
    n_de: int = 20,
    flat: int = 0,
) -> GdcFixture:
    """Write a GDC download directory under ``tmp_path`` and return what is in it.

    Tumours come first in the sample sheet, then normals. ``flat`` of the files are put directly at
    ``tmp_path/<File Name>`` instead of ``tmp_path/<File ID>/<File Name>`` (both layouts occur).
    """
    rng = np.random.default_rng(seed)
    root = Path(tmp_path)
    root.mkdir(parents=True, exist_ok=True)
    genes = gene_ids(n_genes, rng)
    n = n_tumour + n_normal
    y = np.array([1] * n_tumour + [0] * n_normal, dtype=np.int64)
    base = rng.lognormal(mean=2.0, sigma=1.5, size=n_genes)
    tpm = base * rng.lognormal(mean=0.0, sigma=0.4, size=(n, n_genes))
    de = np.arange(min(n_de, n_genes))
    tpm[np.ix_(y == 1, de)] *= 6.0
    tpm[:, 5] = 0.0  # a gene never expressed
    tpm = np.round(tpm, 4)

    sheet_rows = ["\t".join(SHEET_HEADER)]
    files, samples = [], []
    for i in range(n):
        file_id = str(uuid.UUID(bytes=rng.bytes(16), version=4))
        file_name = f"{file_id}.rna_seq.augmented_star_gene_counts.tsv"
        case = f"TCGA-{'A1B2C3D4E5'[i % 10]}{i % 7}-{1000 + i:04X}"
        code, stype, tissue = (
            ("01A", "Primary Tumor", "Tumor") if y[i] else ("11A", "Solid Tissue Normal", "Normal")
        )
        sample_id = f"{case}-{code}"
        path = root / file_name if i < flat else root / file_id / file_name
        write_star_file(path, genes, tpm[i], rng)
        sheet_rows.append(
            "\t".join(
                [
                    file_id,
                    file_name,
                    "Transcriptome Profiling",
                    "Gene Expression Quantification",
                    "TCGA-BRCA",
                    case,
                    sample_id,
                    stype,
                    tissue,
                    "Primary" if y[i] else "Not Applicable",
                ]
            )
        )
        files.append(path)
        samples.append(sample_id)
    sheet = root / "gdc_sample_sheet.2024-01-01.tsv"
    sheet.write_text("\n".join(sheet_rows) + "\n")
    return GdcFixture(root, sheet, files, genes, samples, y, tpm, de)
