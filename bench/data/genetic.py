"""Gene-expression pipeline of the genetic tasks (paper sec. 3 and 4.2, after Danaee et al. 2017).

Steps of :func:`build_dataset` for one seed (shapes: n samples, G genes, d reduced features):

1. Load the cohort (n, G): a GDC download directory or matrix file (`bench.data.gdc`), or the GSE7390
   stand-in (`bench.data.expression_offline`). Loaded once per process (and cached on disk by the GDC loader).
2. Undersample the majority class to balance the classes (seeded).
3. log2(TPM + 1) when asked (default for GDC TPM; GSE7390 is already log2), then drop genes that are
   constant over the balanced cohort (they carry nothing and inflate PCA/SDAE cost).
4. FIT POLICY. Unsupervised reducers (PCA, kernel PCA, SDAE, none) are fitted on the whole balanced cohort
   before patient selection (labels unused: no label leakage; it gives PCA as many components as the data
   allows). SDAE sees genes min-max scaled to [0, 1] over the cohort (its sigmoid decoder needs that range);
   PCA and kernel PCA see log2 values. DEG uses the labels, so it is fitted on the selected training
   patients only.
5. Patient selection (`bench.data.selection.select_patients`): random, or greedy most dissimilar / most
   similar cancer-healthy pairs by Euclidean distance, measured in the reducer's output for unsupervised
   reducers and in the (log2) gene space for DEG (which must know the training set before it exists).
6. Held-out patients: up to `n_test_per_class` per class drawn at random from the balanced cohort's
   remaining patients (disjoint from training).
7. SCALING. Each reduced feature is min-max scaled to [0, 1] on the training patients (the paper's range);
   held-out patients are transformed with the same scaler and clipped to [0, 1]. `Dataset.lo/hi` = 0/1.

The fitted pipeline is kept in `Dataset.extras["pipeline"]` so that reconstructions can be mapped back to
gene space where the reducer can be inverted (PCA, SDAE, none): see `bench.analysis.genetic.gene_space_scores`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.base import Dataset, to_pm1
from bench.errors import BenchInputError

log = logging.getLogger("bench.genetic")

REDUCER_ORDER = ("deg", "pca", "kpca", "sdae", "none")
SELECTION_ORDER = ("random", "dissimilar", "similar")
INVERTIBLE = ("pca", "sdae", "none")

_EXPRESSION: OrderedDict[tuple, Any] = OrderedDict()  # a loaded cohort per (source, path, ...)
_COHORT: OrderedDict[tuple, Any] = OrderedDict()  # balanced, log2, fitted unsupervised reducer per seed


def _memo(store: OrderedDict, key: tuple, make: Any, size: int) -> Any:
    if key in store:
        store.move_to_end(key)
        return store[key]
    value = make()
    store[key] = value
    while len(store) > size:
        store.popitem(last=False)
    return value


def _fix_hint(err: BenchInputError) -> BenchInputError:
    """Reducer messages name `reduce.*` keys; here they live under `data.reduce.*`."""
    text = str(err).replace("--set reduce.", "--set data.reduce.")
    text = text.replace("on_too_few='pad'", "--set data.reduce.on_too_few=pad")
    return BenchInputError(text)


@dataclass
class Pipeline:
    """Fitted maps from (log2) gene space to the model's [0, 1] features, and back where possible.

    gene_scaler: cohort min-max over genes (SDAE only) or None; reducer: fitted transformer (G -> d);
    scaler: per-feature min-max fitted on the training patients (d -> [0, 1]^d); genes: kept gene names.
    """

    reducer_name: str
    gene_scaler: Any
    reducer: Any
    scaler: Any
    genes: list[str]

    @property
    def invertible(self) -> bool:
        return self.reducer_name in INVERTIBLE

    def to_genes(self, z: np.ndarray) -> np.ndarray:
        """(k, d) model features in [0, 1] -> (k, G) (log2) gene values."""
        g = self.reducer.inverse_transform(self.scaler.inverse_transform(z))
        return self.gene_scaler.inverse_transform(g) if self.gene_scaler is not None else g


def load_cohort(source: str, path: str, value_column: str, label: str) -> Any:
    """The raw cohort as `bench.data.expression.ExpressionData` (memoised in the process)."""

    def make() -> Any:
        if source == "gse7390":
            from bench.data.expression_offline import load_gse7390

            return load_gse7390(label)
        from bench.data.gdc import load_expression

        data = load_expression(path, value_column=value_column)
        for line in data.warnings:
            log.warning(line)
        return data

    key = (source, str(Path(path).resolve()) if path else "", value_column, label)
    return _memo(_EXPRESSION, key, make, size=1)


def reducer_params(cfg: Any, dim: int, seed: int, log_input: bool) -> dict[str, Any]:
    """Constructor parameters of `bench.reduce.make_reducer` for the config's reducer (`cfg` = ReduceConfig)."""
    name = cfg.name
    if name == "pca":
        return {"n_components": dim, "on_too_few": cfg.on_too_few, "random_state": seed}
    if name == "kpca":
        return {
            "n_components": dim,
            "kernel": cfg.kernel,
            "gamma": cfg.gamma,
            "on_too_few": cfg.on_too_few,
            "random_state": seed,
        }
    if name == "sdae":
        return {
            "n_components": dim,
            "hidden": tuple(cfg.sdae_hidden),
            "epochs": cfg.sdae_epochs,
            "noise": cfg.sdae_noise,
            "lr": cfg.sdae_lr,
            "seed": seed,
        }
    if name == "deg":
        return {"n_components": dim, "log_input": log_input}
    return {}


def _cohort(data_cfg: Any, seed: int, dim: int) -> dict[str, Any]:
    """Balanced, log2, constant-gene-free cohort with the unsupervised reducer fitted (memoised per seed)."""
    from bench.data.selection import MinMaxPerGene, log_transform, undersample
    from bench.reduce import make_reducer

    expr = load_cohort(data_cfg.source, data_cfg.path, data_cfg.value_column, data_cfg.label)
    logged = data_cfg.log_applied()
    rcfg = data_cfg.reduce

    def make() -> dict[str, Any]:
        keep = undersample(expr.y, np.random.default_rng([seed, 11]))
        x, y = expr.x[keep], expr.y[keep]
        if logged:
            x = log_transform(x)
        varying = x.max(axis=0) > x.min(axis=0)
        x = x[:, varying]
        genes = [g for g, v in zip(expr.genes, varying, strict=True) if v]
        out: dict[str, Any] = {
            "x": x,
            "y": y,
            "genes": genes,
            "gene_scaler": None,
            "reducer": None,
            "z": None,
        }
        out["n_dropped_genes"] = int((~varying).sum())
        if rcfg.name == "sdae":
            out["gene_scaler"] = MinMaxPerGene().fit(x)
        if rcfg.name != "deg":
            xg = out["gene_scaler"].transform(x) if out["gene_scaler"] is not None else x
            try:
                reducer = make_reducer(rcfg.name, **reducer_params(rcfg, dim, seed, logged)).fit(xg)
            except BenchInputError as e:
                raise _fix_hint(e) from e
            out["reducer"], out["z"] = reducer, reducer.transform(xg)
        return out

    key = (
        data_cfg.source,
        data_cfg.path,
        data_cfg.value_column,
        data_cfg.label,
        seed,
        logged,
        dim,
        repr(rcfg),
    )
    return _memo(_COHORT, key, make, size=2)


def build_dataset(data_cfg: Any, seed: int) -> Dataset:
    """Run steps 1-7 of the module docstring for `data_cfg` (a `bench.tasks.genetic.GeneticData`)."""
    from bench.data.selection import MinMaxPerGene, class_variance, select_patients
    from bench.reduce import make_reducer

    dim = data_cfg.dim()
    co = _cohort(data_cfg, seed, dim)
    x, y = co["x"], co["y"]
    n_class = int((y == 0).sum())
    if data_cfg.n_per_class >= n_class:
        raise BenchInputError(
            f"data.n_per_class={data_cfg.n_per_class}: the balanced cohort has {n_class} patients per class and "
            f"at least one per class must stay held out; fix: --set data.n_per_class=N with N <= {n_class - 1}"
        )
    name = data_cfg.reduce.name
    space = x if name == "deg" else co["z"]
    rng = np.random.default_rng([seed, 12])
    train = select_patients(space, y, data_cfg.n_per_class, data_cfg.selection, rng)
    rest = np.setdiff1d(np.arange(len(y)), train)
    test = np.concatenate(
        [rng.permutation(rest[y[rest] == c])[: data_cfg.n_test_per_class] for c in (0, 1)]
    ).astype(np.int64)

    gene_scaler, reducer, z = co["gene_scaler"], co["reducer"], co["z"]
    if name == "deg":
        try:
            params = reducer_params(data_cfg.reduce, dim, seed, data_cfg.log_applied())
            reducer = make_reducer("deg", **params).fit(x[train], y[train])
        except BenchInputError as e:
            raise _fix_hint(e) from e
        z = reducer.transform(x)
    scaler = MinMaxPerGene(clip=True).fit(z[train])
    x_tr, x_te = scaler.transform(z[train]), scaler.transform(z[test])

    cv = class_variance(x_tr, y[train])
    stats = {f"class_variance/{k}": v for k, v in cv.items()}
    stats.update(
        {
            "cohort/n_per_class": float(n_class),
            "cohort/n_genes": float(x.shape[1]),
            "cohort/n_constant_genes_dropped": float(co["n_dropped_genes"]),
            "reduce/dim": float(z.shape[1]),
            "reduce/n_fitted": float(getattr(reducer, "n_fitted_", z.shape[1])),
            "n_train": float(len(train)),
            "n_test": float(len(test)),
        }
    )
    if hasattr(reducer, "loss_history_"):
        stats["reduce/sdae_final_mse"] = float(reducer.loss_history_[-1])
    model = getattr(reducer, "model_", None)
    if model is not None and hasattr(model, "explained_variance_ratio_"):
        stats["reduce/explained_variance"] = float(np.sum(model.explained_variance_ratio_))

    expr = load_cohort(data_cfg.source, data_cfg.path, data_cfg.value_column, data_cfg.label)
    source = (
        f"{expr.source}; balanced {n_class}+{n_class}, {'log2(x+1), ' if data_cfg.log_applied() else ''}"
        f"{name} to {dim} features, {data_cfg.selection} selection"
    )
    pipe = Pipeline(name, gene_scaler, reducer, scaler, co["genes"])
    extras = {"pipeline": pipe, "genes_train": x[train], "genes_test": x[test]}
    return Dataset(x_tr, to_pm1(y[train]), x_te, to_pm1(y[test]), None, 0.0, 1.0, stats, source, extras)
