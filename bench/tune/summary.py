"""The summary of one `bench tune` stage on its parent MLflow run: trials table, best trial and its
`bench run` command, study plots, and (attack stage) how well the kkt objective tracks the oracle one."""

from __future__ import annotations

import shlex
import warnings
from typing import Any

import numpy as np

from bench.registry import Task
from bench.tune.common import PLOT_LOCK, Plan, StageResult, TuneOptions


def summarise(
    task: Task,
    opts: TuneOptions,
    plan: Plan,
    study: Any,
    parent: Any,
    storage_desc: str,
    exp_id: str,
    n_target: int,
) -> StageResult:
    """Trials table, best trial, importances, history and (attack) kkt-vs-oracle on the parent run."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    result = StageResult(
        stage=plan.stage,
        study=plan.study,
        storage=storage_desc,
        parent_run_id=parent.run_id,
        experiment_id=exp_id,
        n_target=n_target,
        n_complete=states.count(TrialState.COMPLETE),
        n_pruned=states.count(TrialState.PRUNED),
        n_failed=sum(
            1 for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("bench.surplus")
        ),
    )
    parent.metrics(
        {
            "trials/complete": result.n_complete,
            "trials/pruned": result.n_pruned,
            "trials/failed": result.n_failed,
        }
    )
    parent.text(_trials_table(trials).to_csv(index=False), "trials.csv")
    if result.n_complete == 0:
        return result
    best = study.best_trial
    result.best_value, result.best_trial, result.best_params = best.value, best.number, dict(best.params)
    result.command = best_command(task, opts.profile, plan, best.params)
    parent.metrics({"best/value": best.value, "best/trial": best.number})
    attrs = {k: v for k, v in best.user_attrs.items() if not k.startswith("bench.")}
    parent.metrics({f"best/{k}": float(v) for k, v in attrs.items() if isinstance(v, (int, float))})
    parent.tags(
        {"bench.best_trial": best.number, "bench.best_run_id": best.user_attrs.get("bench.mlflow_run_id")}
    )
    summary = {
        "study": plan.study,
        "stage": plan.stage,
        "objective": plan.fingerprint["objective"],
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_user_attrs": best.user_attrs,
        "command": result.command,
    }
    if plan.stage == "attack":
        result.spearman = _log_objective_tracking(parent, study)
        summary["spearman_kkt_vs_oracle"] = result.spearman
    from bench.tracking import dump_json

    parent.text(dump_json(summary), "best.json")
    parent.text(result.command + "\n", "best_command.txt")
    _log_study_plots(parent, study)
    return result


def _trials_table(trials: list[Any]) -> Any:
    import pandas as pd

    rows = []
    for t in trials:
        row = {"number": t.number, "state": t.state.name, "value": t.value}
        row |= {f"param.{k}": v for k, v in t.params.items()}
        row |= {k: v for k, v in t.user_attrs.items() if not isinstance(v, (dict, list))}
        row["retry_of"] = t.system_attrs.get("failed_trial")
        row["seconds"] = t.duration.total_seconds() if t.duration else None
        rows.append(row)
    return pd.DataFrame(rows)


def _log_objective_tracking(parent: Any, study: Any) -> float | None:
    """Spearman rank correlation of the attacker's objective (kkt) with the truth (oracle)."""
    from scipy import stats

    from bench import plots

    pairs = np.array(
        [
            (t.user_attrs["kkt"], t.user_attrs["oracle"])
            for t in study.get_trials(deepcopy=False)
            if "kkt" in t.user_attrs and "oracle" in t.user_attrs
        ],
        dtype=float,
    ).reshape(-1, 2)
    pairs = pairs[np.isfinite(pairs).all(axis=1)]
    if len(pairs) < 3 or len(np.unique(pairs[:, 0])) < 2 or len(np.unique(pairs[:, 1])) < 2:
        return None
    rho, p = stats.spearmanr(pairs[:, 0], pairs[:, 1])
    parent.metrics({"objective/spearman_kkt_oracle": float(rho), "objective/spearman_p": float(p)})
    with PLOT_LOCK:
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5.5, 4.0))
        ax.scatter(pairs[:, 0], pairs[:, 1], s=18)
        if (pairs[:, 0] > 0).all():
            ax.set_xscale("log")
        ax.set_xlabel("final KKT residual (the attacker's objective)")
        ax.set_ylabel("error against the training data (oracle)")
        ax.set_title(f"one point per trial: Spearman rho = {rho:.2f} (n = {len(pairs)})", fontsize=10)
        fig.tight_layout()
        parent.figure(fig, "kkt_vs_oracle.png")
        plots.close(fig)
    return float(rho)


def _log_study_plots(parent: Any, study: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from optuna.visualization import matplotlib as ovm

    from bench import plots

    for name, make in (
        ("optimization_history.png", ovm.plot_optimization_history),
        ("param_importances.png", ovm.plot_param_importances),
    ):
        with PLOT_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                ax = make(study)
            except Exception:  # importances need >= 2 complete trials with varying parameters
                continue
            fig = ax.figure
            fig.set_size_inches(7, 4.5)
            fig.tight_layout()
            parent.figure(fig, name)
            plots.close(fig)


def best_command(task: Task, profile: str, plan: Plan, params: dict[str, Any]) -> str:
    """A ready `bench run` command line for the best config (series point and seed included)."""
    sets = dict(plan.overrides)
    if plan.series_value is not None:
        if isinstance(plan.series_value, dict):
            sets.update({k: str(v) for k, v in plan.series_value.items()})
        elif task.series_key:
            sets[task.series_key] = str(plan.series_value)
    sets.update({k: repr(v) if isinstance(v, float) else str(v) for k, v in params.items()})
    parts = ["bench", "run", task.name, "--profile", profile, "--seeds", "1"]
    for k, v in sets.items():
        parts += ["--set", f"{k}={v}"]
    return shlex.join(parts)
