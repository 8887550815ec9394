"""Offline stand-in expression data: GSE7390 breast-cancer microarrays shipped with scikit-survival.

``sksurv.datasets.load_breast_cancer()`` has 198 tumours x (76 gene-expression probes + 4 clinical
columns ``age``, ``er``, ``grade``, ``size``) and the survival outcome (``e.tdm`` distant metastasis
event, ``t.tdm`` time). Only the 76 probe columns (Affymetrix ids such as ``X200726_at``) are used as
features; the clinical columns are dropped (``er`` only serves as a label). Values are log2 microarray
intensities. Every sample is a tumour, so the label is **not** healthy/cancer; it is ER status
(``label="er"``, positive = 1) or distant metastasis (``label="metastasis"``, event = 1).
"""

from __future__ import annotations

import numpy as np

from bench.data.expression import ExpressionData
from bench.errors import BenchInputError

CLINICAL_COLUMNS = ("age", "er", "grade", "size")
LABELS = ("er", "metastasis")


def load_gse7390(label: str = "er") -> ExpressionData:
    """Load GSE7390 as (198, 76) float64 log2 expression with a binary label (see the module docstring)."""
    if label not in LABELS:
        raise BenchInputError(f"load_gse7390 label={label!r}: unknown; fix: use one of {', '.join(LABELS)}")
    try:
        from sksurv.datasets import load_breast_cancer
    except ImportError as e:
        raise BenchInputError(
            "GSE7390 stand-in data needs scikit-survival, which is not installed; "
            "fix: pip install 'bench[survival]'"
        ) from e
    X, outcome = load_breast_cancer()
    genes = [c for c in X.columns if c not in CLINICAL_COLUMNS]
    if label == "er":
        er = X["er"].astype(str).str.lower()
        y = (er == "positive").to_numpy(dtype=np.int64)
    else:
        y = np.asarray(outcome["e.tdm"], dtype=np.int64)
    return ExpressionData(
        x=X[genes].to_numpy(dtype=np.float64),
        y=y,
        genes=[str(g) for g in genes],
        samples=[f"GSE7390_{i}" for i in X.index],
        source=f"stand-in: GSE7390 microarray (scikit-survival), not TCGA; label={label}",
    )
