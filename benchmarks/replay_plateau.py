"""The plateau rule replayed on stored runs: would each attack count as converged under another window
or objective floor?

Usage: python benchmarks/replay_plateau.py STORE [STORE ...] [--window W | --fifth | --movement]
           [--floor F] [--tol T]
Each store is a directory holding mlflow.db. For every finished child run with an attack, the rule of
bench.attack.reconstruct.plateau is applied to its logged monitor curves (`attack/objective`, the float64
objective, and `attack/error`, the monitored error) at the step the attack ended (`attack/steps_run`),
and, as `attack/converged` is, only where the run was not `attack/degraded`. Two columns per run:
"logged" (the flag the run wrote) and "replayed": by default with the run's own `attack.stop_window` (0
meaning a fifth of `attack.steps`) and `attack.stop_floor` (none logged: 0, the rule before the floor
existed). --window sets the window, --fifth makes it a fifth of each run's steps, and --floor sets the
objective's floor; bench's defaults since 2026-12-04 are `--fifth --floor 1`. --movement makes the window
the last fifth of the run's step-size integral (its `attack.schedule`, `attack.warmup` and `attack.steps`;
bench.attack.reconstruct.movement_window; runs since 2026-12-05 log that flag as
`attack/converged_movement`): under the default cosine decay the last fifth of the steps carries only ~1.4%
of the integral, so a window of a fifth of the steps sees an optimiser that has all but stopped moving.
The logged `attack/converged_movement` also requires `attack/converged`; --movement replays the window
alone, and the "logged" column stays `attack/converged`.
A replay under the run's own settings and the code it ran with equals the logged flag; where they differ,
the rule changed. With `attack.stop=plateau` a different window would also have stopped the run at
another step: the replay then says only whether the rule holds where the run did stop.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from mlflow.tracking import MlflowClient

from bench.attack.reconstruct import movement_window, plateau
from bench.config import AttackConfig
from bench.tracking import in_series_order, load_runs, metric_history


def replay(
    client: MlflowClient,
    run: dict,
    window: int | None,
    tol: float | None,
    fifth: bool = False,
    floor: float | None = None,
    movement: bool = False,
) -> tuple[bool, int] | None:
    """(converged under the replayed rule, the window used) for one run (a row of
    bench.tracking.load_runs); None for a run without an attack's curves."""
    obj = metric_history(client, run["run_id"], "attack/objective")
    if not len(obj[0]) or not np.isfinite(run.get("attack/steps_run", np.nan)):
        return None
    err = metric_history(client, run["run_id"], "attack/error")
    own = 0 if fifth else int(run.get("attack.stop_window", 0))
    cfg = AttackConfig(steps=int(run["attack.steps"]), stop_window=own)
    if movement:
        sched = {k: run[f"attack.{k}"] for k in ("schedule", "warmup") if f"attack.{k}" in run}
        if "warmup" in sched:
            sched["warmup"] = int(sched["warmup"])
        cfg = dataclasses.replace(cfg, **sched)
    at = int(run["attack/steps_run"])
    w = window if window is not None else movement_window(cfg, at) if movement else cfg.plateau_window()
    t = tol if tol is not None else float(run.get("attack.stop_tol", 0.01))
    errors = (err[0], err[1][None, :]) if len(err[0]) else None
    if floor is None:  # the run's own; a run logged before the floor existed has none: 0
        floor = float(run.get("attack.stop_floor", 0.0))
        floor = floor if np.isfinite(floor) else 0.0
    ok = bool(plateau((obj[0], obj[1][None, :]), errors, at, w, t, floor)[0])
    return ok and run.get("attack/degraded", 0.0) != 1, w


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stores", nargs="+")
    ap.add_argument("--window", type=int, default=None, help="steps (default: each run's own, resolved)")
    ap.add_argument("--fifth", action="store_true", help="a fifth of each run's steps (bench's default)")
    ap.add_argument("--movement", action="store_true", help="the last fifth of the step-size integral")
    ap.add_argument("--floor", type=float, default=None, help="the objective's floor (bench's default: 1)")
    ap.add_argument("--tol", type=float, default=None, help="relative tolerance (default: each run's own)")
    args = ap.parse_args()
    for store in args.stores:
        client = MlflowClient(f"sqlite:///{store}/mlflow.db")
        runs = load_runs(client)
        print(f"== {store}")
        logged_n = replayed_n = total = 0
        for r in in_series_order(runs):
            out = replay(client, r, args.window, args.tol, args.fifth, args.floor, args.movement)
            if out is None:
                continue
            ok, w = out
            logged = r.get("attack/converged", float("nan"))
            total += 1
            logged_n += logged == 1
            replayed_n += ok
            print(
                f"series value {r['series_value']}, seed {r['seed']}: logged {logged:.0f}, "
                f"replayed {int(ok)} (window {w})"
            )
        print(f"{total} attacks: {logged_n} logged converged, {replayed_n} replayed converged\n")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
