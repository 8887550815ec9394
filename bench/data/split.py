"""One split routine: distinct training samples, held-out samples disjoint from them, counts reported.

Two samples are "the same" when their rows are equal after the task's rescaling (`minmax`: each row
mapped to [0, 1] by its own min and max, so an image and a brightened copy are one image; `clip` or
None: the raw values), compared to 9 decimals. Used by every task: generators draw until they hold
enough distinct samples (`draw_distinct`), pools of real samples drop duplicates before drawing
(`split_pool`), and the experiment checks the result (`overlap_counts`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bench.errors import BenchInputError


class InfeasibleData(BenchInputError):
    """A generator or pool cannot give as many distinct samples as the config asks for."""


def row_keys(x: np.ndarray, rescale: str | None = "minmax") -> list[bytes]:
    """A hashable key per row of x (k, d): its bytes after rescaling, rounded to 9 decimals."""
    x = np.asarray(x, dtype=np.float64)
    if rescale == "minmax":
        mn, mx = x.min(axis=1, keepdims=True), x.max(axis=1, keepdims=True)
        x = (x - mn) / np.where(mx - mn > 0, mx - mn, 1.0)
    x = np.round(x, 9) + 0.0  # + 0.0 turns -0.0 into 0.0
    return [row.tobytes() for row in x]


def distinct_index(x: np.ndarray, rescale: str | None = "minmax") -> np.ndarray:
    """Indices of the first occurrence of every distinct row of x (k, d), in order."""
    seen: set[bytes] = set()
    keep = []
    for i, key in enumerate(row_keys(x, rescale)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.array(keep, dtype=int)


def split_pool(
    x: np.ndarray,
    n_train: int,
    n_test: int,
    rng: np.random.Generator,
    what: str,
    key: str = "data.n_per_class",
    rescale: str | None = "minmax",
) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint random draws of n_train and up to n_test *distinct* samples from a pool x (k, d).

    Returns (train_index, test_index) into x. Duplicates in the pool count once. Raises InfeasibleData
    naming `key` when fewer than n_train + 1 distinct samples exist (one at least stays held out).
    """
    idx = distinct_index(x, rescale)
    if len(idx) < n_train + 1:
        raise InfeasibleData(
            f"{what} has {len(idx)} distinct samples ({len(x)} in all); {key}={n_train} needs at least "
            f"{n_train + 1}; fix: --set {key}={max(len(idx) - 1, 0)} or lower"
        )
    idx = rng.permutation(idx)
    return idx[:n_train], idx[n_train : n_train + n_test]


def draw_distinct(
    draw: Callable[[], np.ndarray],
    count: int,
    what: str,
    fix: Callable[[int], str],
    max_draws: int | None = None,
    seen: set[bytes] | None = None,
) -> np.ndarray:
    """Call `draw()` (one sample, any shape) until `count` distinct samples are found: (count, d).

    `seen`: keys already taken (e.g. by another class or set), updated in place. Gives up after
    `max_draws` (default 20 * count + 1000) and raises InfeasibleData with `fix(found)`.
    """
    seen = set() if seen is None else seen
    out: list[np.ndarray] = []
    limit = max_draws or 20 * count + 1000
    for _ in range(limit):
        if len(out) == count:
            break
        sample = np.asarray(draw(), dtype=np.float64).ravel()
        key = row_keys(sample[None, :], None)[0]
        if key not in seen:
            seen.add(key)
            out.append(sample)
    if len(out) < count:
        raise InfeasibleData(
            f"{what}: found only {len(out)} distinct samples of the {count} needed in {limit} draws; "
            f"fix: {fix(len(out))}"
        )
    return np.stack(out)


def overlap_counts(
    x_train: np.ndarray, x_test: np.ndarray, rescale: str | None = "minmax"
) -> dict[str, float]:
    """`data/n_train_distinct`, `data/n_heldout` and `data/heldout_overlap` (held-out rows equal to a
    training row after rescaling; must be 0)."""
    train_keys = row_keys(x_train, rescale)
    test_keys = row_keys(x_test, rescale) if len(x_test) else []
    train_set = set(train_keys)
    return {
        "data/n_train_distinct": float(len(train_set)),
        "data/n_heldout": float(len(test_keys)),
        "data/heldout_overlap": float(sum(k in train_set for k in test_keys)),
    }


def drop_overlap(
    x_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, rescale: str | None = "minmax"
) -> tuple[np.ndarray, np.ndarray, int]:
    """Held-out rows minus those equal to a training row or to an earlier held-out row; and how many went."""
    train_set = set(row_keys(x_train, rescale))
    keep, seen = [], set()
    for i, k in enumerate(row_keys(x_test, rescale) if len(x_test) else []):
        if k not in train_set and k not in seen:
            seen.add(k)
            keep.append(i)
    keep_idx = np.array(keep, dtype=int)
    return x_test[keep_idx], y_test[keep_idx], len(x_test) - len(keep_idx)
