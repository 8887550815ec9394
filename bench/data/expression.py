"""The expression cohort every expression loader returns (GDC directory, matrix file, offline stand-in).

Kept apart from the loaders so that each of them imports it, and none imports another loader for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
