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
gene space where the reducer can be inverted (PCA, SDAE, none): see :func:`gene_space_scores`.
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

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
    """The raw cohort as `bench.data.gdc.ExpressionData` (memoised in the process)."""

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


# --------------------------------------------------------------------------- post hook pieces


def square_side(d: int) -> int:
    """Side of the smallest square image holding d features (d is zero-padded to side**2)."""
    return math.isqrt(d - 1) + 1 if d > 1 else 1


def as_square_images(x: np.ndarray) -> tuple[np.ndarray, int]:
    """(n, d) -> (n, side**2) with zero columns appended, and side (784 -> 28, 64 -> 8, 76 -> 9)."""
    side = square_side(x.shape[1])
    out = np.zeros((x.shape[0], side * side), dtype=np.float64)
    out[:, : x.shape[1]] = x
    return out, side


def resnet_baseline(
    data: Dataset, epochs: int, width: int, lr: float, batch_size: int, seed: int
) -> dict[str, float]:
    """ResNet18 on the model's features viewed as side x side single-channel images (zero-padded)."""
    from bench.resnet import train_resnet

    x_tr, side = as_square_images(data.x_train)
    x_te, _ = as_square_images(data.x_test)
    res = train_resnet(
        x_tr,
        (data.y_train > 0).astype(np.int64),
        x_te,
        (data.y_test > 0).astype(np.int64),
        image_shape=(side, side),
        epochs=epochs,
        width=width,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
    )
    return {
        "resnet/train_accuracy": float(res["train_accuracy"]),
        "resnet/test_accuracy": float(res["test_accuracy"]),
        "resnet/image_side": float(side),
    }


def gene_space_scores(data: Dataset, recon: np.ndarray, match_index: np.ndarray) -> dict[str, float]:
    """MAE in (log2) gene space between each training patient and its matched reconstruction.

    `recon` (m, d) in the model's feature scale, clipped to [0, 1] as the evaluation does; `match_index`
    (n,) the nearest reconstruction of each training patient. Also: the reducer's own floor (the training
    patient's features mapped back), the held-out baseline (the held-out patient of highest correlation in
    feature space) and the cohort-mean baseline. Empty when the reducer cannot be inverted (DEG, KPCA).
    """
    from bench.evaluate import correlation

    pipe = data.extras.get("pipeline")
    if pipe is None or not pipe.invertible:
        return {}
    g_tr = data.extras["genes_train"]

    def mae(g: np.ndarray) -> np.ndarray:
        return np.abs(g - g_tr).mean(axis=1)

    attack = mae(pipe.to_genes(np.clip(recon[match_index], 0.0, 1.0)))
    out = {
        "gene/mae_mean": float(attack.mean()),
        "gene/mae_std": float(attack.std()),
        "gene/floor_mae": float(mae(pipe.to_genes(data.x_train)).mean()),
        "gene/baseline_mean_mae": float(mae(g_tr.mean(axis=0, keepdims=True)).mean()),
    }
    if len(data.x_test):
        nearest = correlation(data.x_train, data.x_test).argmax(axis=1)
        out["gene/baseline_heldout_mae"] = float(mae(data.extras["genes_test"][nearest]).mean())
    return out


# --------------------------------------------------------------------------- table 1


TABLE1_COLUMNS = {
    "mlp_train_error": "MLP train error",
    "mlp_test_error": "MLP test error",
    "mae_mean": "MAE mean",
    "mae_std": "MAE std",
    "mae_seed_std": "MAE seed std",
    "heldout_mae": "held-out MAE",
    "mean_mae": "mean-sample MAE",
    "gene_mae": "gene-space MAE",
    "resnet_test_accuracy": "ResNet18 test acc",
    "n_seeds": "seeds",
}


def table1(table: pd.DataFrame, reducer: str | None = None) -> pd.DataFrame:
    """One row per (reducer, selection): the paper's table 1 plus the attack's errors.

    `table`: the runner's series table (one row per series point x seed x setting). `reducer`: the
    reducer of a single-reducer task (its series values are selections); None for the grid, whose
    series values read 'reducer/selection'. Per run the best setting (lowest `mae_mean`) is kept, then
    runs are averaged over seeds: errors are 1 - accuracy; `mae_std` is the mean within-run std over
    training patients; `mae_seed_std` the std of `mae_mean` over seeds.
    """
    df = table.copy()
    labels = df["series_value"].astype(str)
    if reducer is None:
        df["reducer"] = labels.str.split("/").str[0]
        df["selection"] = labels.str.split("/").str[1]
    else:
        df["reducer"], df["selection"] = reducer, labels
    df = df.loc[df.groupby(["reducer", "selection", "seed"], sort=False)["mae_mean"].idxmin()]

    def col(g: pd.DataFrame, name: str) -> float:
        return float(g[name].mean()) if name in g else float("nan")

    rows = []
    for (red, sel), g in df.groupby(["reducer", "selection"], sort=False):
        rows.append(
            {
                "reducer": red,
                "selection": sel,
                "mlp_train_error": 1.0 - col(g, "train_accuracy"),
                "mlp_test_error": 1.0 - col(g, "test_accuracy"),
                "mae_mean": col(g, "mae_mean"),
                "mae_std": col(g, "mae_std"),
                "mae_seed_std": float(g["mae_mean"].std(ddof=0)),
                "heldout_mae": col(g, "baseline/heldout/mae_mean"),
                "mean_mae": col(g, "baseline/mean/mae_mean"),
                "gene_mae": col(g, "gene/mae_mean"),
                "resnet_test_accuracy": col(g, "resnet/test_accuracy"),
                "n_seeds": int(g["seed"].nunique()),
            }
        )
    out = pd.DataFrame(rows)
    rank = {r: i for i, r in enumerate(REDUCER_ORDER)} | {s: i for i, s in enumerate(SELECTION_ORDER)}
    out["_r"] = out["reducer"].map(lambda v: rank.get(v, 99))
    out["_s"] = out["selection"].map(lambda v: rank.get(v, 99))
    return out.sort_values(["_r", "_s"]).drop(columns=["_r", "_s"]).reset_index(drop=True)


def table1_markdown(t1: pd.DataFrame) -> str:
    """The table as GitHub markdown (MAE as mean ± within-run std)."""
    head = ["reducer", "selection", "MLP train err", "MLP test err", "MAE (mean ± std)", "held-out MAE",
            "mean-sample MAE", "gene-space MAE", "ResNet18 test acc", "seeds"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v: float) -> str:
        return "–" if v != v else f"{v:.3f}"

    for r in t1.itertuples(index=False):
        cells = [r.reducer, r.selection, f(r.mlp_train_error), f(r.mlp_test_error),
                 f"{f(r.mae_mean)} ± {f(r.mae_std)}", f(r.heldout_mae), f(r.mean_mae), f(r.gene_mae),
                 f(r.resnet_test_accuracy), str(r.n_seeds)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "\nMAE: mean absolute difference between each training patient and its nearest reconstruction in the "
        "model's [0, 1] feature space (lower is better); held-out / mean-sample: the same for the nearest "
        "held-out patient / the training mean (baselines); gene-space MAE in log2 units (PCA, SDAE only).\n"
    )
    return "\n".join(lines) + "\n" + note
