"""One row per store of benchmarks/attack_levers.sh (or any stores of one task): the attack's outcome beside the
truth's own KKT fit, and the paired change against the first store (the reference) over the runs both hold.

Usage: python benchmarks/lever_table.py REFERENCE_STORE [OTHER_STORE ...]
Each store is a directory holding mlflow.db (and wall.txt from attack_levers.sh). Columns, means over the
store's finished runs: memorised/frac, SSIM > 0.4 count, ncc_dist, membership AUC, the truth's exact fit
(first layer), the attack's exact fit over the truth's, the share of runs below the truth, test accuracy and
the store's wall time (with its load); then memorised/frac and ncc_dist minus the reference's, paired on the
point (task, series value, seed, classifier params), with a 95% t interval (seeds as the unit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from bench.analysis.trends import mean_ci
from bench.tracking import load_runs

COLUMNS = {
    "memorised/frac": ("memorised", "{:.3f}"),
    "ssim_gt_0.4/count": ("SSIM>0.4", "{:.1f}"),
    "ncc_dist_mean": ("ncc_dist", "{:.3f}"),
    "membership/auc": ("AUC", "{:.3f}"),
    "truth/kkt_fit": ("truth fit", "{:.4f}"),
    "truth/kkt_fit_layer1": ("truth L1", "{:.3f}"),
    "attack/fit_over_truth": ("attack/truth", "{:.3f}"),
    "attack/fit_below_truth": ("below", "{:.2f}"),
    "test_accuracy": ("test acc", "{:.3f}"),
}


def store_frame(store: str) -> pd.DataFrame:
    frame = load_runs(MlflowClient(f"sqlite:///{store}/mlflow.db"))
    if frame.empty:
        sys.exit(f"{store}: no finished runs")
    return frame


def wall(store: str) -> str:
    path = Path(store) / "wall.txt"
    if not path.exists():
        return ""
    fields = dict(part.split("=", 1) for part in path.read_text().split() if "=" in part)
    return (
        f"{fields.get('wall_s', '?')} s (load {fields.get('load_start', '?')}-{fields.get('load_end', '?')})"
    )


def paired(ref: pd.DataFrame, other: pd.DataFrame, metric: str) -> str:
    keys = ["task", "series_value", "seed"]
    merged = ref[[*keys, metric]].merge(other[[*keys, metric]], on=keys, suffixes=("_r", "_o"))
    if merged.empty or metric not in ref:
        return "–"
    diff = (merged[f"{metric}_o"] - merged[f"{metric}_r"]).to_numpy(dtype=float)
    mean, lo, hi = mean_ci(diff)
    return f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}] (n={len(diff)})"


def main(stores: list[str]) -> None:
    frames = {s: store_frame(s) for s in stores}
    ref = frames[stores[0]]
    head = ["store", "runs", *(name for name, _ in COLUMNS.values()), "wall", "memorised - ref", "ncc - ref"]
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for store, frame in frames.items():
        cells = [Path(store).name, str(len(frame))]
        for key, (_, fmt) in COLUMNS.items():
            values = pd.to_numeric(frame[key], errors="coerce") if key in frame else pd.Series(dtype=float)
            cells.append(fmt.format(values.mean()) if values.notna().any() else "–")
        cells += [wall(store), paired(ref, frame, "memorised/frac"), paired(ref, frame, "ncc_dist_mean")]
        print(" | ".join(cells))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    np.seterr(all="ignore")
    main(sys.argv[1:])
