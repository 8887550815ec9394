"""Differentially-expressed-gene (DEG) selection as a supervised scikit-learn transformer.

``DEGSelector`` ranks genes by a two-sample t-test between healthy (y=0) and cancer (y=1) and keeps the
top ``n_components``. It uses the labels, so the caller must fit it on the training samples only (never
on samples the attack or the test set will see); the class itself cannot check that.

Input scale: X is assumed already log-scaled (``log2(TPM+1)``) or min-max scaled. With ``log_input=True``
(default) the log2 fold change of a gene is the difference of its class means, ``mean1 - mean0``; with
``log_input=False`` (X linear, e.g. raw TPM) it is ``log2((mean1 + 1e-9) / (mean0 + 1e-9))``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, TransformerMixin

from bench.data.checks import fitted_features
from bench.errors import BenchInputError

TESTS = ("welch", "student")


class DEGSelector(BaseEstimator, TransformerMixin):
    """Keep the ``n_components`` genes with the smallest t-test p-value between classes.

    Args:
        n_components: number of genes kept.
        test: ``welch`` (unequal variances, ``scipy.stats.ttest_ind(equal_var=False)``) or ``student``.
        min_abs_log2fc: only genes with ``|log2 fold change| >= min_abs_log2fc`` are eligible.
        log_input: whether X is on a log scale (see the module docstring).

    Ties in p-value (p underflows to 0 for very separated genes) are broken by larger ``|t|``; genes with
    an undefined statistic (constant in both classes) rank last.

    Fitted attributes: ``selected_`` (n_components,) column indices, ascending; ``ranking_`` all eligible
    column indices best first; ``pvalues_``, ``tstats_``, ``log2fc_`` (n_features,).
    """

    def __init__(
        self,
        n_components: int = 784,
        test: str = "welch",
        min_abs_log2fc: float = 0.0,
        log_input: bool = True,
    ):
        self.n_components = n_components
        self.test = test
        self.min_abs_log2fc = min_abs_log2fc
        self.log_input = log_input

    def fit(self, X: np.ndarray, y: np.ndarray) -> DEGSelector:
        """X (n_samples, n_genes), y (n_samples,) in {0, 1}."""
        if self.test not in TESTS:
            raise BenchInputError(
                f"DEGSelector test={self.test!r}: unknown; fix: use one of {', '.join(TESTS)}"
            )
        if y is None:
            raise BenchInputError("DEGSelector.fit: labels y are required; fix: call fit(X, y)")
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        a, b = X[y == 1], X[y == 0]
        if X.ndim != 2 or len(y) != len(X) or len(a) < 2 or len(b) < 2:
            raise BenchInputError(
                f"DEGSelector.fit: X {X.shape}, y with {len(b)} healthy and {len(a)} cancer samples; "
                "fix: need >= 2 samples of each class, one label per row"
            )
        m1, m0 = a.mean(axis=0), b.mean(axis=0)
        self.log2fc_ = m1 - m0 if self.log_input else np.log2((m1 + 1e-9) / (m0 + 1e-9))
        with np.errstate(divide="ignore", invalid="ignore"):
            t, p = stats.ttest_ind(a, b, axis=0, equal_var=self.test == "student")
        t, p = np.asarray(t, dtype=np.float64), np.asarray(p, dtype=np.float64)
        self.tstats_, self.pvalues_ = t, p
        eligible = np.flatnonzero(np.abs(self.log2fc_) >= self.min_abs_log2fc)
        p_key = np.where(np.isnan(p), 2.0, p)[eligible]
        t_key = -np.nan_to_num(np.abs(t), nan=0.0)[eligible]
        self.ranking_ = eligible[np.lexsort((t_key, p_key))]
        k = int(self.n_components)
        if k > len(self.ranking_):
            raise BenchInputError(
                f"DEGSelector: n_components={k} but only {len(self.ranking_)} of {X.shape[1]} genes pass "
                f"|log2FC| >= {self.min_abs_log2fc}; fix: --set reduce.dim=N with N <= {len(self.ranking_)}, "
                "or lower min_abs_log2fc"
            )
        self.selected_ = np.sort(self.ranking_[:k])
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, n_genes) -> (n, n_components) float64, the selected columns in column order."""
        X = fitted_features(X, self, "genes")
        return X[:, self.selected_]

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        raise BenchInputError(
            "DEGSelector: a gene selection cannot be inverted to all genes; fix: compare reconstructions in "
            "the selected-gene space, or use reduce=pca/sdae"
        )
