"""Linear PCA and kernel PCA as one scikit-learn transformer.

FIT POLICY. PCA and kernel PCA cannot give more components than the data supports: linear PCA at most
``min(n_samples, n_features)`` (sklearn raises above that), kernel PCA at most ``n_samples`` (the kernel
matrix is n_samples x n_samples; sklearn silently returns fewer columns). After centring the rank is at
most ``n_samples - 1``, so the last possible component carries ~0 variance. The caller fits these
unsupervised reducers on the whole cohort (all samples, before patient selection; the labels are not
used, so there is no label leakage), which gives them as many samples as the data has. If
``n_components`` is still above the maximum:

* ``on_too_few="error"`` (default) raises ``BenchInputError`` naming both numbers and the fix
  (``--set reduce.dim=N`` with N <= the maximum, or more samples);
* ``on_too_few="pad"`` fits the maximum number of components and zero-pads the output to
  ``n_components`` columns (the padded columns are always 0 and are dropped again by
  ``inverse_transform``).

Linear PCA supports ``inverse_transform`` (back to gene space). Kernel PCA does only with
``fit_inverse_transform=True`` (sklearn's learned pre-image map).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA, KernelPCA

from bench.data.checks import fitted_features
from bench.errors import BenchInputError

KERNELS = ("linear", "poly", "rbf", "sigmoid", "cosine")
ON_TOO_FEW = ("error", "pad")


class PCAReducer(BaseEstimator, TransformerMixin):
    """PCA (``kernel=None``) or kernel PCA (``kernel`` in linear/poly/rbf/sigmoid/cosine).

    Args:
        n_components: output dimension.
        kernel: None for linear PCA, otherwise the KernelPCA kernel.
        gamma, degree: KernelPCA kernel parameters (gamma None = 1/n_features).
        on_too_few: ``error`` or ``pad`` (see the module docstring).
        fit_inverse_transform: KernelPCA only: learn a pre-image map so ``inverse_transform`` works.
        random_state: seed for randomized solvers.
    """

    def __init__(
        self,
        n_components: int = 784,
        kernel: str | None = None,
        gamma: float | None = None,
        degree: int = 3,
        on_too_few: str = "error",
        fit_inverse_transform: bool = False,
        random_state: int = 0,
    ):
        self.n_components = n_components
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.on_too_few = on_too_few
        self.fit_inverse_transform = fit_inverse_transform
        self.random_state = random_state

    def max_components(self, n_samples: int, n_features: int) -> int:
        """Most components this reducer can give for data of the given shape."""
        return min(n_samples, n_features) if self.kernel is None else n_samples

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> PCAReducer:
        """X (n_samples, n_features); y is ignored (unsupervised)."""
        X = np.asarray(X, dtype=np.float64)
        if self.kernel is not None and self.kernel not in KERNELS:
            raise BenchInputError(
                f"PCAReducer kernel={self.kernel!r}: unknown; fix: use None (linear PCA) or one of "
                f"{', '.join(KERNELS)}"
            )
        if self.on_too_few not in ON_TOO_FEW:
            raise BenchInputError(
                f"PCAReducer on_too_few={self.on_too_few!r}: unknown; fix: use one of {', '.join(ON_TOO_FEW)}"
            )
        if X.ndim != 2 or X.shape[0] < 2:
            raise BenchInputError(
                f"PCAReducer.fit: X has shape {X.shape}; fix: need (n_samples >= 2, n_features)"
            )
        k = int(self.n_components)
        k_max = self.max_components(*X.shape)
        if k > k_max and self.on_too_few == "error":
            what = "min(n_samples, n_features)" if self.kernel is None else "n_samples"
            raise BenchInputError(
                f"{'PCA' if self.kernel is None else f'kernel PCA ({self.kernel})'}: n_components={k} "
                f"but data "
                f"with {X.shape[0]} samples x {X.shape[1]} features allows at most {k_max} ({what}); "
                f"fix: --set reduce.dim=N with N <= {k_max}, use more samples, or on_too_few='pad'"
            )
        self.n_fitted_ = min(k, k_max)
        if self.kernel is None:
            self.model_ = PCA(n_components=self.n_fitted_, random_state=self.random_state)
        else:
            self.model_ = KernelPCA(
                n_components=self.n_fitted_,
                kernel=self.kernel,
                gamma=self.gamma,
                degree=self.degree,
                fit_inverse_transform=self.fit_inverse_transform,
                random_state=self.random_state,
            )
        self.model_.fit(X)
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features) -> (n, n_components) float64; columns past ``n_fitted_`` are 0 (pad policy)."""
        X = fitted_features(X, self, "features")
        z = np.asarray(self.model_.transform(X), dtype=np.float64)
        out = np.zeros((X.shape[0], int(self.n_components)), dtype=np.float64)
        out[:, : z.shape[1]] = z
        return out

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """(n, n_components) -> (n, n_features) float64 (padded columns ignored)."""
        if self.kernel is not None and not self.fit_inverse_transform:
            raise BenchInputError(
                f"PCAReducer: kernel PCA ({self.kernel}) was fitted without an inverse map; fix: set "
                "fit_inverse_transform=True, or use linear PCA"
            )
        Z = np.asarray(Z, dtype=np.float64)
        return np.asarray(self.model_.inverse_transform(Z[:, : self.n_fitted_]), dtype=np.float64)
