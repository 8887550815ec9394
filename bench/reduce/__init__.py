"""Dimensionality reducers (scikit-learn transformers) and the ``make_reducer`` factory.

Names: ``deg`` (:class:`DEGSelector`, supervised: fit on training samples only), ``pca``
(:class:`PCAReducer`, linear), ``kpca`` (:class:`PCAReducer` with a kernel, default ``rbf``), ``sdae``
(:class:`SDAE`), ``none`` (:class:`Identity`, passthrough for data that already has few features).
"""

from __future__ import annotations

import inspect

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from bench.errors import BenchInputError
from bench.reduce.deg import DEGSelector
from bench.reduce.pca import PCAReducer
from bench.reduce.sdae import SDAE

__all__ = ["DEGSelector", "PCAReducer", "SDAE", "Identity", "make_reducer", "REDUCERS"]


class Identity(BaseEstimator, TransformerMixin):
    """Passthrough. ``n_components`` is accepted (so configs can always pass it) and ignored."""

    def __init__(self, n_components: int | None = None):
        self.n_components = n_components

    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> Identity:
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, d) -> the same (n, d) as float64."""
        return np.asarray(X, dtype=np.float64)

    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        return np.asarray(Z, dtype=np.float64)


REDUCERS = {"deg": DEGSelector, "pca": PCAReducer, "kpca": PCAReducer, "sdae": SDAE, "none": Identity}


def make_reducer(name: str, **params) -> BaseEstimator:
    """Build a reducer by name (``deg``, ``pca``, ``kpca``, ``sdae``, ``none``) with its constructor params.

    ``kpca`` defaults to ``kernel="rbf"``; ``pca`` is linear PCA (``kernel`` must not be set).
    """
    key = str(name).strip().lower()
    if key not in REDUCERS:
        raise BenchInputError(
            f"reducer {name!r}: unknown; fix: use one of {', '.join(REDUCERS)} (e.g. --set reduce.name=pca)"
        )
    cls = REDUCERS[key]
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [p for p in params if p not in valid]
    if unknown:
        raise BenchInputError(
            f"reducer {key!r}: unknown parameter(s) {', '.join(unknown)}; fix: use {', '.join(valid)}"
        )
    if key == "kpca":
        params.setdefault("kernel", "rbf")
        if params["kernel"] is None:
            raise BenchInputError(
                "reducer 'kpca': kernel=None is linear PCA; fix: use reducer 'pca' or a kernel"
            )
    if key == "pca" and params.get("kernel") is not None:
        raise BenchInputError(
            f"reducer 'pca': kernel={params['kernel']!r} given; fix: use reducer 'kpca' for kernel PCA"
        )
    return cls(**params)
