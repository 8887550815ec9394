"""Genetic tasks: TCGA-BRCA expression, healthy vs cancer, reduced to 784 features (paper sec. 4.2, table 1).

`genetic-deg`, `genetic-pca`, `genetic-kpca`, `genetic-sdae`: one reducer, a series over patient selection
(`data.selection`: random, dissimilar, and similar in the paper profile). `genetic-grid`: every reducer x
selection. Each run trains the homogeneous MLP, attacks it, scores reconstructions by the mean absolute
difference to the nearest training patient in the [0, 1] feature space (`eval.primary=mae_mean`), maps them
back to gene space where the reducer inverts (PCA, SDAE), and trains a ResNet18 on the same features viewed
as a square image (the accuracy the attack's constraints forbid). The parent run gets `table1.csv/.md`.

Data: `--set data.path=DIR` (a GDC download directory with its sample sheet, or a samples x genes matrix
file), or `--set data.source=gse7390` (offline stand-in: GSE7390 microarrays from scikit-survival, ER status,
not TCGA). Reducer keys live under `data.reduce.*` (`data.reduce.name`, `data.reduce.dim`, ...). The
pipeline and its fit/scaling policy: `bench.data.genetic`; ResNet baseline, gene-space scores and table 1:
`bench.analysis.genetic`; how to run on real downloads: docs/genetic.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

from bench.config import require
from bench.data.base import Dataset
from bench.errors import ConfigError
from bench.registry import Profile, Task

AUTO_DIM = {"gdc": 784, "gse7390": 64}  # data.reduce.dim = 0: the paper's 784 (28x28); 64 (8x8) for GSE7390


@dataclass
class ReduceConfig:
    """Dimensionality reduction of the genes (`bench.reduce`).

    `name`: deg | pca | kpca | sdae | none. `dim`: output features (0 = auto: 784 for GDC, 64 for GSE7390).
    `on_too_few`: when PCA/KPCA cannot give `dim` components (at most the number of cohort samples),
    "error" stops with the fix, "pad" appends zero features. `kernel`, `gamma`: kernel PCA. `sdae_*`: the
    SDAE's hidden sizes, end-to-end epochs, masking-noise rate and Adam learning rate.
    """

    name: Literal["deg", "pca", "kpca", "sdae", "none"] = "pca"
    dim: int = 0
    on_too_few: Literal["error", "pad"] = "error"
    kernel: Literal["rbf", "poly", "sigmoid", "cosine", "linear"] = "rbf"
    gamma: float | None = None
    sdae_hidden: tuple[int, ...] = (2000, 1000)
    sdae_epochs: int = 50
    sdae_noise: float = 0.1
    sdae_lr: float = 1e-3

    def check(self) -> None:
        require(self.dim >= 0, "data.reduce.dim", self.dim, "a positive integer (0 = auto)")
        require(
            self.gamma is None or self.gamma > 0, "data.reduce.gamma", self.gamma, "a positive number or none"
        )
        require(
            all(h >= 1 for h in self.sdae_hidden),
            "data.reduce.sdae_hidden",
            self.sdae_hidden,
            "positive sizes",
        )
        require(self.sdae_epochs >= 0, "data.reduce.sdae_epochs", self.sdae_epochs, "an integer >= 0")
        require(
            0 <= self.sdae_noise < 1, "data.reduce.sdae_noise", self.sdae_noise, "a masking rate in [0, 1)"
        )
        require(self.sdae_lr > 0, "data.reduce.sdae_lr", self.sdae_lr, "a positive learning rate")


@dataclass
class GeneticData:
    """Expression cohort -> balanced -> log2 -> reduced -> selected patients (see bench.data.genetic).

    `source`: gdc (`path` = GDC download directory or matrix file) or gse7390 (offline stand-in, label =
    `label`). `value_column`: the STAR-counts column read (TPM). `log`: auto = log2(x+1) for GDC, none for
    GSE7390 (already log2). `selection`: random | dissimilar | similar (greedy cancer-healthy pairs).
    `n_per_class` training patients per class; up to `n_test_per_class` held-out patients per class.
    `resnet_*`: the ResNet18 baseline (epochs 0 = skip it; small batches so that a few dozen patients give
    enough steps for batch-norm statistics to settle).
    """

    source: Literal["gdc", "gse7390"] = "gdc"
    path: str = ""
    value_column: str = "tpm_unstranded"
    label: Literal["er", "metastasis"] = "er"
    log: Literal["auto", "log2", "none"] = "auto"
    selection: Literal["random", "dissimilar", "similar"] = "random"
    n_per_class: int = 10
    n_test_per_class: int = 30
    reduce: ReduceConfig = field(default_factory=ReduceConfig)
    resnet_epochs: int = 30
    resnet_width: int = 64
    resnet_lr: float = 1e-3
    resnet_batch_size: int = 8

    def check(self) -> None:
        if self.source == "gdc":
            if not self.path:
                raise ConfigError(
                    "'data.path' is not set: fix: --set data.path=DIR (a GDC download directory with its sample "
                    "sheet, or a samples x genes matrix file; see docs/genetic.md), or --set data.source=gse7390 "
                    "for the offline stand-in"
                )
            if not Path(self.path).exists():
                raise ConfigError(
                    f"'data.path' = {self.path}: no such file or directory; fix: --set data.path=DIR with a GDC "
                    "download directory (sample sheet + STAR counts) or a samples x genes matrix file"
                )
        require(self.n_per_class >= 2, "data.n_per_class", self.n_per_class, "an integer >= 2")
        require(
            self.n_test_per_class >= 1, "data.n_test_per_class", self.n_test_per_class, "a positive integer"
        )
        require(
            self.resnet_epochs >= 0, "data.resnet_epochs", self.resnet_epochs, "an integer >= 0 (0 = skip)"
        )
        require(self.resnet_width >= 1, "data.resnet_width", self.resnet_width, "a positive integer")
        require(self.resnet_lr > 0, "data.resnet_lr", self.resnet_lr, "a positive learning rate")
        require(
            self.resnet_batch_size >= 2, "data.resnet_batch_size", self.resnet_batch_size, "an integer >= 2"
        )
        self.reduce.check()

    def dim(self) -> int:
        """Reduced feature count (data.reduce.dim, or the source's default when 0)."""
        return self.reduce.dim or AUTO_DIM[self.source]

    def log_applied(self) -> bool:
        return self.log == "log2" or (self.log == "auto" and self.source == "gdc")

    def load(self, seed: int) -> Dataset:
        from bench.data.genetic import build_dataset

        return build_dataset(self, seed)


def genetic_post(result: Any, sr: Any) -> dict[str, float]:
    """Per run: the ResNet18 baseline (trained once per run, shared by its settings) and gene-space MAE."""
    from bench.analysis.genetic import gene_space_scores, resnet_baseline

    data, cfg = result.data, result.config.data
    out: dict[str, float] = {}
    if cfg.resnet_epochs > 0:
        if "resnet" not in data.extras:
            data.extras["resnet"] = resnet_baseline(
                data,
                cfg.resnet_epochs,
                cfg.resnet_width,
                cfg.resnet_lr,
                cfg.resnet_batch_size,
                result.config.seed,
            )
        out.update(data.extras["resnet"])
    out.update(gene_space_scores(data, sr.recon, sr.match_index))
    return out


def genetic_report(table: Any, reducer: str | None = None) -> dict[str, str]:
    """table1.csv and table1.md on the parent run (see bench.analysis.genetic.table1)."""
    from bench.analysis.genetic import table1, table1_markdown

    t1 = table1(table, reducer)
    return {"table1.csv": t1.to_csv(index=False), "table1.md": table1_markdown(t1)}


_DEFAULTS = {"eval.rescale": "clip", "eval.primary": "mae_mean", "model.bias": "none"}
_SMOKE = {
    "data.n_per_class": 4,
    "data.n_test_per_class": 4,
    "data.reduce.dim": 16,
    "data.reduce.sdae_hidden": (32,),
    "data.reduce.sdae_epochs": 20,
    "data.resnet_epochs": 2,
    "data.resnet_width": 4,
    "model.depth": 2,
    "model.width": 100,
    "train.max_epochs": 2000,
    "attack.steps": 200,
    "attack.eval_every": 100,
}
_QUICK = {
    "data.n_per_class": 10,
    "data.n_test_per_class": 30,
    "data.reduce.sdae_hidden": (1000,),
    "data.reduce.sdae_epochs": 100,
    "data.resnet_epochs": 30,
    "data.resnet_width": 16,
    "model.depth": 2,
    "model.width": 1000,
    "attack.steps": 1000,
}
_PAPER = {
    "data.n_per_class": 50,
    "data.n_test_per_class": 60,
    "data.reduce.on_too_few": "pad",
    "data.reduce.sdae_epochs": 100,
    "data.resnet_epochs": 30,
    "data.resnet_width": 64,
    "model.depth": 3,
    "model.width": 1000,
    "attack.steps": 5000,
    "attack.eval_every": 250,
}
_QUICK_SEL = ("random", "dissimilar")
_PAPER_SEL = ("random", "dissimilar", "similar")
REDUCERS = ("deg", "pca", "kpca", "sdae")

_PER_REDUCER = tuple(
    Task(
        name=f"genetic-{_r}",
        family="genetic",
        summary=f"TCGA-BRCA healthy vs cancer, {_r.upper()} to 784 features; error vs patient selection (4.2)",
        data=GeneticData(reduce=ReduceConfig(name=_r)),
        defaults=_DEFAULTS | {"data.reduce.name": _r},
        series_key="data.selection",
        series_label="patient selection",
        profiles={
            "smoke": Profile(_SMOKE, series=_QUICK_SEL),
            "quick": Profile(_QUICK, series=_QUICK_SEL),
            "paper": Profile(_PAPER, series=_PAPER_SEL, seeds=3),
        },
        post=genetic_post,
        report=partial(genetic_report, reducer=_r),
    )
    for _r in REDUCERS
)


def _grid(selections: tuple[str, ...]) -> tuple[dict[str, str], ...]:
    return tuple({"data.reduce.name": r, "data.selection": s} for r in REDUCERS for s in selections)


_GRID = Task(
    name="genetic-grid",
    family="genetic",
    summary="TCGA-BRCA healthy vs cancer: every reducer x patient selection, table 1 (4.2)",
    data=GeneticData(),
    defaults=_DEFAULTS,
    series_key=None,
    series_label="reducer/selection",
    profiles={
        "smoke": Profile(_SMOKE, series=_grid(_QUICK_SEL)),
        "quick": Profile(_QUICK, series=_grid(_QUICK_SEL)),
        "paper": Profile(_PAPER, series=_grid(_PAPER_SEL), seeds=3),
    },
    post=genetic_post,
    report=genetic_report,
)

TASKS = (*_PER_REDUCER, _GRID)
