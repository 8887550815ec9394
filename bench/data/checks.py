"""Input checks shared by bench's scikit-learn style transformers."""

from __future__ import annotations

import numpy as np

from bench.errors import BenchInputError


def fitted_features(x: np.ndarray, estimator: object, unit: str = "features") -> np.ndarray:
    """x as a float64 (n, d) array, d the number of columns `estimator` was fitted on, else a clear error."""
    x = np.asarray(x, dtype=np.float64)
    n_fit = estimator.n_features_in_  # type: ignore[attr-defined]
    if x.ndim != 2 or x.shape[1] != n_fit:
        name = type(estimator).__name__
        raise BenchInputError(
            f"{name}.transform: input has shape {x.shape}, fitted on {n_fit} {unit}; fix: pass data with the same {unit}"
        )
    return x
