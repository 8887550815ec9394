"""Each attack of a store beside its re-run with a longer attack: did more steps move it?

Usage: python benchmarks/budget_pairs.py STORE [STORE ...] [--metric ncc_dist_mean]
Each store is a directory holding mlflow.db. Child runs that attacked the same classifier (task, seed,
series value and every data.*, model.* and train.* parameter: bench.analysis.notes.classifier_keys) are
paired: the shortest attack (`attack.steps`) with each longer one, as a budget check re-runs points of a
profile. One row per pair:
- the metric at both budgets and its change (longer − shorter);
- how far the float64 objective fell (`attack/objective`, a fraction of ||theta||^2; the plateau rule's
  tolerance is `attack.stop_tol` of it);
- whether the shorter attack was `attack/converged`, and whether it converged over the last fifth of its
  step-size integral (replayed from its curves as `replay_plateau.py --movement` does, so runs logged
  before `attack/converged_movement` existed are judged too).
Then per store: the metric's range of change and median |change|, how many pairs fell, the objective's
largest drop, and each flag's count. docs/report.md ("The attack's stopping rule") uses it to ask whether an
attack called converged at the main budget would still move with more steps.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from replay_plateau import replay  # noqa: E402

from bench.analysis.notes import classifier_keys  # noqa: E402
from bench.tracking import load_runs, series_order  # noqa: E402


def pairs(runs: pd.DataFrame) -> list[tuple[dict, dict]]:
    """(shorter, longer) run records that attacked the same classifier, in series order."""
    runs = runs[pd.to_numeric(runs.get("attack.steps"), errors="coerce").notna()]
    if runs.empty:
        return []
    runs = runs.assign(_steps=pd.to_numeric(runs["attack.steps"]))
    keys = classifier_keys(runs) + ["series_value"]
    out = []
    for _, g in runs.groupby(runs[keys].astype(str).apply(tuple, axis=1), sort=False):
        g = g.sort_values("_steps")
        short = g.iloc[0].to_dict()
        out += [(short, r) for r in g.iloc[1:].to_dict("records") if r["_steps"] > short["_steps"]]
    return sorted(out, key=lambda p: (series_order(p[0]["series_value"], p[0]["seed"]), p[1]["_steps"]))


def main(stores: list[str], metric: str) -> None:
    for store in stores:
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        found = pairs(load_runs(client))
        print(f"== {store}: {len(found)} pairs")
        moved, fell, conv, strict = [], [], 0, 0
        for a, b in found:
            d = float(b.get(metric, np.nan)) - float(a.get(metric, np.nan))
            drop = float(a.get("attack/objective", np.nan)) - float(b.get("attack/objective", np.nan))
            c = a.get("attack/converged") == 1
            m = replay(client, a, None, None, movement=True)
            s = bool(m and m[0])
            moved.append(d)
            fell.append(drop)
            conv += c
            strict += s
            print(
                f"{a['task']} {a['series_value']} seed {a['seed']}: {metric} {a.get(metric, np.nan):.4f} at "
                f"{a['_steps']:.0f} -> {b.get(metric, np.nan):.4f} at {b['_steps']:.0f} ({d:+.4f}); objective "
                f"fell {drop:.4f}; converged {int(c)}, over the step-size integral {int(s)}"
            )
        v = np.array(moved)
        v = v[np.isfinite(v)]
        if v.size:
            print(
                f"{metric} moved by {v.min():+.4f} to {v.max():+.4f} (median |change| {np.median(np.abs(v)):.4f}; "
                f"lower at {int((v < 0).sum())} of {v.size}); objective fell by at most {np.nanmax(fell):.4f}; "
                f"converged at the shorter budget {conv} of {len(found)}, over the step-size integral {strict}\n"
            )


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--metric", default="ncc_dist_mean", help="a child run's metric (default ncc_dist_mean)")
    args = ap.parse_args()
    np.seterr(all="ignore")
    main(args.stores, args.metric)
