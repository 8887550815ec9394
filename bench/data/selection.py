"""Expression preprocessing and patient selection (pure numpy).

Shapes: ``x`` is (n_samples, n_features) float, ``y`` is (n_samples,) int in {0, 1} (1 = cancer).
Returned index arrays are int64 positions into the rows of ``x`` / ``y``.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from bench.data.checks import fitted_features
from bench.errors import BenchInputError

__all__ = [
    "log_transform",
    "MinMaxPerGene",
    "undersample",
    "select_patients",
    "pairwise_distances",
    "class_variance",
    "STRATEGIES",
]

STRATEGIES = ("random", "dissimilar", "similar")


def _rng(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _check_xy(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise BenchInputError(
            f"x {x.shape} / y {y.shape}: need x (n_samples, n_features) and y (n_samples,); "
            "fix: pass one label per row of x"
        )
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise BenchInputError(f"y[{i}] = {y[i]!r}: labels must be 0 (healthy) or 1 (cancer); fix: relabel")
    return x, y.astype(np.int64)


def log_transform(x: np.ndarray) -> np.ndarray:
    """``log2(x + 1)`` of non-negative expression values (e.g. TPM); same shape, float64."""
    x = np.asarray(x, dtype=np.float64)
    if x.size and np.nanmin(x) < 0:
        raise BenchInputError(
            f"log_transform input: negative value {np.nanmin(x)}; fix: pass raw TPM/counts (>= 0), not data "
            "that is already log-transformed or centred"
        )
    return np.log2(x + 1.0)


class MinMaxPerGene(BaseEstimator, TransformerMixin):
    """Scale each gene (column) to [0, 1] using the min and max of the samples it was fitted on.

    Fit on training samples only. ``transform`` does not clip by default, so unseen samples may fall
    outside [0, 1]; ``clip=True`` clips them. A gene that is constant in the fitted samples maps to 0.
    (sklearn's ``MinMaxScaler`` would map constant genes to 0 as well; this class only adds that
    guarantee explicitly and an ``inverse_transform`` that restores constant genes.)
    """

    def __init__(self, clip: bool = False):
        self.clip = clip

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> MinMaxPerGene:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            raise BenchInputError(
                f"MinMaxPerGene.fit: x has shape {x.shape}; fix: pass (n_samples>0, n_genes)"
            )
        self.min_ = x.min(axis=0)
        self.max_ = x.max(axis=0)
        rng = self.max_ - self.min_
        self.scale_ = np.where(rng > 0, rng, 1.0)
        self.constant_ = rng <= 0
        self.n_features_in_ = x.shape[1]
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        """(n, n_genes) -> (n, n_genes) float64, fitted genes in [0, 1]."""
        x = fitted_features(x, self, "genes")
        out = (x - self.min_) / self.scale_
        out[:, self.constant_] = 0.0
        return np.clip(out, 0.0, 1.0) if self.clip else out

    def inverse_transform(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=np.float64)
        return z * np.where(self.constant_, 0.0, self.scale_) + self.min_


def undersample(y: np.ndarray, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Indices (sorted, int64) that balance the classes by randomly undersampling the majority class."""
    y = np.asarray(y)
    idx0, idx1 = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    n = min(len(idx0), len(idx1))
    if n == 0:
        raise BenchInputError(
            f"undersample: class counts healthy={len(idx0)}, cancer={len(idx1)}; fix: the data needs samples "
            "of both classes"
        )
    g = _rng(rng)
    keep = np.concatenate([g.choice(idx0, n, replace=False), g.choice(idx1, n, replace=False)])
    return np.sort(keep).astype(np.int64)


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (len(a), len(b)) between the rows of ``a`` and ``b``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def select_patients(
    x: np.ndarray,
    y: np.ndarray,
    n_per_class: int,
    strategy: str = "random",
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """Choose ``n_per_class`` healthy and ``n_per_class`` cancer samples.

    Strategies:
        ``random``: uniformly at random within each class (uses ``rng``).
        ``dissimilar``: greedy most-distant pairs: repeatedly take the remaining (cancer, healthy) pair with
            the largest Euclidean distance in ``x``, remove both, until ``n_per_class`` pairs.
        ``similar``: the same with the smallest distance. Greedy strategies are deterministic (ties go to
            the lowest indices) and ignore ``rng``.

    Returns:
        (2 * n_per_class,) int64: the healthy indices, then the cancer indices; for the pair strategies
        ``out[k]`` and ``out[n_per_class + k]`` form pair k (pairs in selection order).
    """
    x, y = _check_xy(x, y)
    if strategy not in STRATEGIES:
        raise BenchInputError(
            f"select_patients: unknown strategy {strategy!r}; fix: use one of {', '.join(STRATEGIES)}"
        )
    idx0, idx1 = np.flatnonzero(y == 0), np.flatnonzero(y == 1)
    n = int(n_per_class)
    if n < 1:
        raise BenchInputError(f"select_patients: n_per_class={n_per_class}; fix: use n_per_class >= 1")
    if n > min(len(idx0), len(idx1)):
        raise BenchInputError(
            f"select_patients: n_per_class={n} but the data has {len(idx0)} healthy and {len(idx1)} cancer "
            f"samples; fix: use n_per_class <= {min(len(idx0), len(idx1))}"
        )
    if strategy == "random":
        g = _rng(rng)
        return np.concatenate([g.choice(idx0, n, replace=False), g.choice(idx1, n, replace=False)]).astype(
            np.int64
        )
    d = pairwise_distances(x[idx1], x[idx0])  # (n_cancer, n_healthy)
    if strategy == "similar":
        d = -d
    chosen0, chosen1 = [], []
    for _ in range(n):
        i, j = np.unravel_index(int(np.argmax(d)), d.shape)
        chosen1.append(idx1[i])
        chosen0.append(idx0[j])
        d[i, :] = -np.inf
        d[:, j] = -np.inf
    return np.asarray(chosen0 + chosen1, dtype=np.int64)


def class_variance(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Between- and within-class spread in the units of ``x``.

    Returns:
        ``inter_class``: Euclidean distance between the healthy and cancer class means;
        ``intra_class_0`` / ``intra_class_1``: mean Euclidean distance of each class's samples to its mean;
        ``ratio``: inter_class / mean(intra_class_0, intra_class_1) (inf when both intra terms are 0).
    """
    x, y = _check_xy(x, y)
    out: dict[str, float] = {}
    means = []
    for c in (0, 1):
        xc = x[y == c]
        if len(xc) == 0:
            raise BenchInputError(f"class_variance: no samples of class {c}; fix: include both classes")
        m = xc.mean(axis=0)
        means.append(m)
        out[f"intra_class_{c}"] = float(np.linalg.norm(xc - m, axis=1).mean())
    out["inter_class"] = float(np.linalg.norm(means[1] - means[0]))
    intra = 0.5 * (out["intra_class_0"] + out["intra_class_1"])
    out["ratio"] = out["inter_class"] / intra if intra > 0 else float("inf")
    return out
