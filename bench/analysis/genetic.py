"""Analyses of the genetic tasks (paper sec. 4.2, table 1): ResNet18 baseline, gene-space scores, table 1.

* `resnet_baseline`: a ResNet18 trained on the model's [0, 1] features viewed as a square single-channel
  image (zero-padded to the next square), the accuracy the attacked MLP's constraints forbid.
* `gene_space_scores`: reconstructions mapped back to (log2) gene space through the data pipeline
  (`bench.data.genetic.Pipeline`, PCA/SDAE/none only) and scored by MAE against the training patients,
  with the reducer's own floor and the held-out and cohort-mean baselines.
* `table1` / `table1_markdown`: one row per (reducer, selection) from the runner's series table.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.data.base import Dataset
from bench.data.genetic import REDUCER_ORDER, SELECTION_ORDER


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
    """ResNet18 on the model's features viewed as side x side single-channel images (zero-padded).

    Trained on `data.x_train` (n, d) and scored on `data.x_test`; returns `resnet/train_accuracy`,
    `resnet/test_accuracy` (fractions in [0, 1]) and `resnet/image_side` (pixels).
    """
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


# --- table 1 ------------------------------------------------------------------------------------------------


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
