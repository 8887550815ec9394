"""`bench tune --batch P` (attack stage): P trials asked at once and run as one attack population.

Only the population keys (attack.lr, init_scale, lam_min, alpha) may be searched. A pruned trial runs to
the end of its batch and is told PRUNED.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Any

import numpy as np

from bench import signals
from bench.experiment import Hooks, attack_and_evaluate
from bench.tune.common import Surplus, TrialHost, TrialSetup


def run_batch(runner: TrialHost, size: int) -> None:
    """Ask up to `size` trials, attack their settings as ONE population on the shared classifier, and
    tell each trial its own outcome (one MLflow child run each, as for a single trial).

    Pruning: a setting cannot leave the population early. A trial the pruner stops reports no more
    intermediate values, runs to the end with the others, is logged in full and is told PRUNED (its
    value: the last intermediate value it reported); so is a diverged one.
    """
    from optuna.storages._heartbeat import get_heartbeat_thread
    from optuna.trial import TrialState

    trials: list[Any] = []
    for _ in range(size):
        trial = runner.study.ask()
        try:
            runner.check_surplus(trial)
        except Surplus:  # another worker took the last slots: nothing runs
            tell(runner.study, trial, None, TrialState.FAIL)
            break
        trials.append(trial)
    if not trials:
        return
    setups: list[TrialSetup] = []
    try:
        setups = [runner.setup(t) for t in trials]
        with contextlib.ExitStack() as beats:
            for t in trials:
                beats.enter_context(get_heartbeat_thread(t._trial_id, runner.study._storage))
            outcomes = _attack_batch(runner, trials, setups)
    except KeyboardInterrupt:  # as for one trial: fail them and enqueue their parameters again
        for setup in setups:
            runner.study.enqueue_trial(setup.params, user_attrs={"bench.trial_number": setup.origin})
        for trial in trials:
            tell(runner.study, trial, None, TrialState.FAIL)
        raise
    except Exception as e:  # the population failed as a whole
        outcomes = [(TrialState.FAIL, None, f"{type(e).__name__}: {e}")] * len(trials)
    told = []
    for trial, (state, value, reason) in zip(trials, outcomes, strict=True):
        if reason:  # as Optuna's optimize() did, for echo_outcome
            with contextlib.suppress(Exception):
                runner.study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)
        # (a trial another worker already failed as stale stays failed: its retry runs again)
        told.append(tell(runner.study, trial, value, state))
    for frozen in told:
        runner.echo_outcome(runner.study, frozen)
    runner.count_failures(told)


def _attack_batch(
    runner: TrialHost, trials: list[Any], setups: list[TrialSetup]
) -> list[tuple[Any, float | None, str]]:
    """Run the population of the trials' settings; (state, value, fail reason) per trial."""
    from optuna.trial import TrialState

    prep = runner.prepared()
    size = len(trials)
    last_loss = np.full(size, np.nan)
    prune: list[str | None] = [None] * size  # why the pruner stopped each trial
    settings = [{k.removeprefix("attack."): v for k, v in s.params.items()} for s in setups]
    outcomes: list[tuple[Any, float | None, str]] = []
    with contextlib.ExitStack() as runs:
        # a signal between a run's creation and the stack's holding it would leave it RUNNING
        logs = [
            signals.enter_context(runs, runner.child_run(t, s)) for t, s in zip(trials, setups, strict=True)
        ]

        def on_step(step: int, losses: np.ndarray) -> None:
            last_loss[:] = losses

        def on_monitor(step: int, values: dict[str, np.ndarray]) -> None:
            for p, (trial, log) in enumerate(zip(trials, logs, strict=True)):
                # a pruned trial reports no more: its value stays the last one it reported
                why = runner.monitor(trial, log, step, values, p, last_loss, report=prune[p] is None)
                prune[p] = prune[p] or why

        result = attack_and_evaluate(
            prep,
            runner.plan.cfg,
            settings,
            Hooks(on_step=on_step, on_monitor=on_monitor),
            runner.task.post,
        )
        for p, (trial, log, setup) in enumerate(zip(trials, logs, setups, strict=True)):
            sr = result.settings[p]
            try:
                value = runner.log_attack(trial, log, replace(result, config=setup.cfg), sr)
            except Exception as e:
                log.tags({"bench.trial_state": "FAIL"})
                outcomes.append((TrialState.FAIL, None, f"{type(e).__name__}: {e}"))
                continue
            if sr.metrics.get("diverged") and prune[p] is None:
                prune[p] = "the attack diverged (non-finite loss)"
            if prune[p] is None:
                log.metrics({"objective": value})
                log.tags({"bench.trial_state": "COMPLETE"})
                outcomes.append((TrialState.COMPLETE, value, ""))
            else:
                log.tags({"bench.trial_state": "PRUNED", "bench.pruned_because": prune[p]})
                outcomes.append((TrialState.PRUNED, None, ""))
    for log, (state, _, _) in zip(logs, outcomes, strict=True):
        if state == TrialState.FAIL:  # its run closed FINISHED with the others
            runner.tracker.mark(log.run_id, "FAILED")
    return outcomes


def tell(study: Any, trial: Any, value: float | None, state: Any) -> Any:
    """`study.tell` for a trial asked outside `study.optimize`; returns the FrozenTrial.

    A trial another worker already failed as stale stays failed (its retry runs). GridSampler calls
    `study.stop()` once the grid is done, which Optuna refuses outside `optimize`: the trial is stored by
    then, and the worker loop stops by itself (the target is the grid's size).
    """
    try:
        return study.tell(trial, value, state=state, skip_if_finished=True)
    except RuntimeError as e:
        if "Study.stop" not in str(e):
            raise
        return study.get_trials(deepcopy=False)[trial.number]
