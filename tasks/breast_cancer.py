"""A user task: benign vs malignant tumours, scikit-learn's breast-cancer table (569 rows x 30 features).

bench loads this file because it sits in ./tasks/ (or in `bench --tasks-dir DIR`, or $BENCH_TASKS_DIR);
nothing in the bench package names it. docs/tasks.md walks through it line by line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bench.config import require
from bench.data.base import Dataset, to_pm1
from bench.registry import Profile, Task


@dataclass
class BreastCancerData:
    """Benign (class 0, y = -1) vs malignant (class 1, y = +1) tumours; 30 features scaled to [0, 1].

    Each feature is min-max scaled with its range over the whole table. `n_per_class` training rows and
    `n_test_per_class` held-out rows per class, drawn disjointly with the run's seed (212 malignant rows).
    """

    n_per_class: int = 20
    n_test_per_class: int = 50

    def check(self) -> None:
        require(self.n_per_class >= 1, "data.n_per_class", self.n_per_class, "a positive integer")
        require(
            self.n_test_per_class >= 1, "data.n_test_per_class", self.n_test_per_class, "a positive integer"
        )
        total = self.n_per_class + self.n_test_per_class
        require(total <= 212, "data.n_per_class", self.n_per_class, "at most 212 - data.n_test_per_class")

    def load(self, seed: int) -> Dataset:
        from sklearn.datasets import load_breast_cancer  # imported here: `bench list` stays fast

        x, target = load_breast_cancer(return_X_y=True)  # target: 0 malignant, 1 benign
        x = (x - x.min(axis=0)) / (x.max(axis=0) - x.min(axis=0))
        rng = np.random.default_rng(seed)
        train, test = [], []
        for sklearn_label in (1, 0):  # class 0 = benign, class 1 = malignant
            rows = rng.permutation(np.flatnonzero(target == sklearn_label))
            train.append(x[rows[: self.n_per_class]])
            test.append(x[rows[self.n_per_class : self.n_per_class + self.n_test_per_class]])
        labels_tr = np.repeat([0, 1], self.n_per_class)
        labels_te = np.repeat([0, 1], [len(t) for t in test])
        source = "scikit-learn breast-cancer (Wisconsin diagnostic), min-max scaled"
        x_tr, x_te = np.concatenate(train), np.concatenate(test)
        return Dataset(x_tr, to_pm1(labels_tr), x_te, to_pm1(labels_te), image_shape=None, source=source)


_SMOKE = {
    "data.n_test_per_class": 20,
    "model.depth": 2,
    "model.width": 100,
    "train.init_scale": 1e-2,  # 30 features: a larger first-layer init converges within the smoke budget
    "train.max_epochs": 3000,
    "train.target_loss": 1e-3,
    "attack.steps": 200,
    "attack.eval_every": 50,
}

TASKS = (
    Task(
        name="breast-cancer",
        family="user-example",
        summary="user task example: benign vs malignant tumours (30 features); error vs training-set size",
        data=BreastCancerData(),
        defaults={"eval.rescale": "clip", "eval.primary": "mae_mean"},
        series_key="data.n_per_class",
        series_label="training rows per class",
        profiles={
            "smoke": Profile(_SMOKE, series=(5, 10)),
            "quick": Profile({"model.depth": 2, "attack.steps": 1000}, series=(10, 25, 50)),
            "paper": Profile(
                {"attack.steps": 5000, "attack.eval_every": 250}, series=(10, 25, 50, 100), seeds=3
            ),
        },
    ),
)
