"""The trials of one `bench tune` stage: worker threads, one trial (classifier or attack), its child run.

`TrialRunner` runs trials in `--n-jobs` threads until the study holds its target of finished trials (or
the timeout), and gives up after MAX_CONSECUTIVE_FAILURES failed attempts in a row. `--batch` trials run
through batch.py.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from bench.config import RunConfig, apply_overrides, to_dict
from bench.experiment import (
    ExperimentResult,
    Hooks,
    Prepared,
    SettingResult,
    attack_and_evaluate,
    prepare,
)
from bench.registry import Task
from bench.tune.batch import run_batch
from bench.tune.common import PLOT_LOCK, Plan, Surplus, TrialSetup, TuneOptions
from bench.work import log_setting

MAX_CONSECUTIVE_FAILURES = 3  # a worker gives up after this many failed trials in a row
_WORKER = f"{socket.gethostname()}:{os.getpid()}"  # tags each trial's run with the process that ran it


class TrialRunner:
    """Runs trials in `n_jobs` threads until the study holds `n_target` finished trials (or the timeout)."""

    def __init__(
        self,
        task: Task,
        opts: TuneOptions,
        plan: Plan,
        study: Any,
        tracker: Any,
        exp_id: str,
        parent_id: str,
        n_target: int,
        echo: Callable[[str], None],
    ) -> None:
        self.task, self.opts, self.plan, self.study = task, opts, plan, study
        self.tracker, self.exp_id, self.parent_id, self.n_target, self.echo = (
            tracker,
            exp_id,
            parent_id,
            n_target,
            echo,
        )
        self.deadline = time.monotonic() + opts.timeout if opts.timeout else None
        self.fatal: str | None = None
        self._lock = threading.Lock()
        self._failures = 0
        self._prepared: Prepared | None = None

    # -- the classifier shared by every attack trial of this process
    def prepared(self) -> Prepared:
        with self._lock:
            if self._prepared is None:
                self.echo("training the classifier once for this process ...")
                self._prepared = prepare(self.plan.cfg)
                m = self._prepared.train_metrics
                self.echo(
                    f"  train loss {m['train_loss']:.3g}, test accuracy {m.get('test_accuracy', float('nan')):.3g}"
                )
            return self._prepared

    def log_classifier(self, parent: Any) -> None:
        """Train the shared classifier now and log it on the (new) parent run."""
        prep = self.prepared()
        parent.metrics({f"classifier/{k}": v for k, v in prep.train_metrics.items()} | prep.data.stats)
        parent.curve("train/loss", *prep.train_curve)
        if prep.config.log.arrays:
            parent.arrays("arrays/train", x=prep.data.x_train, y=prep.data.y_train)
            parent.torch_state(
                {k: v.detach().cpu() for k, v in prep.model.state_dict().items()}, "model/weights.pt"
            )

    # -- the worker loop
    def run_workers(self) -> None:
        if self.opts.n_jobs > 1:  # share the cores between the trial threads
            import torch

            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.opts.n_jobs))
        threads = [threading.Thread(target=self._work, daemon=True) for _ in range(self.opts.n_jobs - 1)]
        for t in threads:
            t.start()
        self._work()
        for t in threads:
            t.join()

    def _counts(self) -> dict[str, int]:
        from optuna.trial import TrialState

        counts = {s: 0 for s in ("done", "running", "waiting")}
        for t in self.study.get_trials(deepcopy=False):
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
                counts["done"] += 1
            elif t.state == TrialState.RUNNING:
                counts["running"] += 1
            elif t.state == TrialState.WAITING:
                counts["waiting"] += 1
        return counts

    def _work(self) -> None:
        import optuna

        poll = min(2.0, float(self.opts.heartbeat))
        batched = self.plan.stage == "attack" and self.opts.batch > 1
        while self.fatal is None:
            if self.deadline is not None and time.monotonic() > self.deadline:
                return
            optuna.storages.fail_stale_trials(self.study)
            c = self._counts()
            if c["done"] >= self.n_target:
                return
            if c["done"] + c["running"] >= self.n_target and c["waiting"] == 0:
                time.sleep(poll)  # the last trials run elsewhere; if their worker dies, we retry them
                continue
            if batched:  # no more trials than the study still needs (at least one: a waiting retry)
                run_batch(self, min(self.opts.batch, max(1, self.n_target - c["done"] - c["running"])))
            else:
                self.study.optimize(self._objective, n_trials=1, catch=(Exception,), callbacks=[self._after])

    def _after(self, study: Any, trial: Any) -> None:
        """`study.optimize` callback: print the trial's outcome, count failures in a row."""
        if trial.user_attrs.get("bench.surplus"):
            return
        self.echo_outcome(study, trial)
        self.count_failures([trial])

    def echo_outcome(self, study: Any, trial: Any) -> None:
        from optuna.trial import TrialState

        if trial.state == TrialState.FAIL:
            reason = _fail_reason(trial)
            self.echo(f"trial {trial.number} FAILED: {reason.strip().splitlines()[-1] if reason else ''}")
            return
        try:
            best = f" (best {study.best_value:.4g} at trial {study.best_trial.number})"
        except ValueError:
            best = ""
        value = "" if trial.value is None else f" value {trial.value:.4g}"
        self.echo(f"trial {trial.number} {trial.state.name}{value}{best}")

    def count_failures(self, trials: list[Any]) -> None:
        """One attempt (a trial, or a batch) failed when all its trials failed; give up after
        MAX_CONSECUTIVE_FAILURES failed attempts in a row."""
        from optuna.trial import TrialState

        with self._lock:
            if not all(t.state == TrialState.FAIL for t in trials):
                self._failures = 0
                return
            self._failures += 1
            if self._failures >= MAX_CONSECUTIVE_FAILURES:
                unit = "batches" if self.plan.stage == "attack" and self.opts.batch > 1 else "trials"
                self.fatal = f"{self._failures} {unit} in a row failed; the last: {_fail_reason(trials[-1])}"

    # -- one trial
    def _objective(self, trial: Any) -> float:
        """One trial under `study.optimize`. A failed trial keeps its reason (system attribute
        `fail_reason`, as batch.py does) for the echo and the give-up message: Optuna only logs it."""
        import optuna

        try:
            return self._run_trial(trial)
        except (Surplus, optuna.TrialPruned):
            raise
        except Exception as e:
            with contextlib.suppress(Exception):
                reason = f"{type(e).__name__}: {e}"
                self.study._storage.set_trial_system_attr(trial._trial_id, "fail_reason", reason)
            raise

    def _run_trial(self, trial: Any) -> float:
        import optuna

        self.check_surplus(trial)
        setup = self.setup(trial)
        pruned: BaseException | None = None
        value = float("nan")
        try:
            with self.child_run(trial, setup) as log:
                try:
                    run = self._classifier_trial if self.plan.stage == "classifier" else self._attack_trial
                    value = run(trial, setup.cfg, log)
                    log.metrics({"objective": value})
                    log.tags({"bench.trial_state": "COMPLETE"})
                except optuna.TrialPruned as e:
                    pruned = e
                    log.tags({"bench.trial_state": "PRUNED", "bench.pruned_because": str(e)})
        except KeyboardInterrupt:
            # Optuna fails an interrupted trial without retry: enqueue its parameters again ourselves.
            self.study.enqueue_trial(setup.params, user_attrs={"bench.trial_number": setup.origin})
            raise
        if pruned is not None:
            raise pruned
        return value

    def setup(self, trial: Any) -> TrialSetup:
        """Suggest the trial's parameters; close the dead run of the trial it retries, if any."""
        params = {k: d.suggest(trial, k) for k, d in self.plan.space.items()}
        first = trial.user_attrs.get("bench.trial_number")
        old_run = trial.user_attrs.get("bench.mlflow_run_id")
        if old_run:  # a retry: the dead worker's child run stays RUNNING; close it
            self.tracker.mark(old_run, "FAILED", {"bench.retried_as_trial": trial.number})
        if first is None:
            trial.set_user_attr("bench.trial_number", trial.number)
        cfg = apply_overrides(self.plan.cfg, params)
        tags = {
            "bench.task": self.task.name,
            "bench.profile": self.opts.profile,
            "bench.kind": "tune-trial",
            "bench.study": self.plan.study,
            "bench.stage": self.plan.stage,
            "bench.trial": trial.number,
            "bench.seed": cfg.seed,
            "bench.worker": _WORKER,
        }
        if first is not None:
            tags["bench.retry_of_trial"] = first
        if self.plan.fingerprint["series_value"] is not None:
            tags["bench.series_value"] = self.plan.fingerprint["series_value"]
        return TrialSetup(params, cfg, tags, trial.number if first is None else first)

    @contextlib.contextmanager
    def child_run(self, trial: Any, setup: TrialSetup) -> Any:
        """The trial's MLflow child run (FAILED if the block raises), with its config as params."""
        with self.tracker.run(self.exp_id, f"trial {trial.number}", setup.tags, self.parent_id) as log:
            trial.set_user_attr("bench.mlflow_run_id", log.run_id)
            log.params(to_dict(setup.cfg) | {f"trial.{k}": v for k, v in setup.params.items()})
            yield log

    def check_surplus(self, trial: Any) -> None:
        from optuna.trial import TrialState

        alive = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
        before = [
            t for t in self.study.get_trials(deepcopy=False) if t.number < trial.number and t.state in alive
        ]
        if len(before) >= self.n_target:
            trial.set_user_attr("bench.surplus", True)
            raise Surplus(f"the study already had {self.n_target} trials when this one started; nothing ran")

    def _classifier_trial(self, trial: Any, cfg: RunConfig, log: Any) -> float:
        import optuna

        every = cfg.train.log_every * max(1, round(cfg.train.max_epochs / 50 / cfg.train.log_every))

        def on_epoch(epoch: int, loss: float) -> None:
            log.metric("train/loss", loss, epoch)
            if epoch % every == 0 and math.isfinite(loss):
                trial.report(loss, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"training loss {loss:.3g} at epoch {epoch}")

        try:
            prep = prepare(cfg, Hooks(on_epoch=on_epoch))
        except FloatingPointError as e:
            log.tags({"bench.diverged": str(e)})
            trial.set_user_attr("diverged", True)
            return math.log(2.0)  # no better than a classifier that learned nothing
        m = prep.train_metrics
        log.metrics(m | prep.data.stats | prep.timings)
        for key in ("test_accuracy", "train_accuracy", "train_epochs"):
            if key in m:
                trial.set_user_attr(key, m[key])
        return float(m["train_loss"])

    def _attack_trial(self, trial: Any, cfg: RunConfig, log: Any) -> float:
        import optuna

        last_loss = np.full(1, np.nan)

        def on_step(step: int, losses: np.ndarray) -> None:
            last_loss[:] = losses

        def on_monitor(step: int, values: dict[str, np.ndarray]) -> None:
            why = self.monitor(trial, log, step, values, 0, last_loss)
            if why is not None:
                raise optuna.TrialPruned(why)

        result = attack_and_evaluate(
            self.prepared(), cfg, None, Hooks(on_step=on_step, on_monitor=on_monitor), self.task.post
        )
        value = self.log_attack(trial, log, result, result.settings[0])
        if result.settings[0].metrics.get("diverged"):
            raise optuna.TrialPruned("the attack diverged (non-finite loss)")
        return value

    def monitor(
        self,
        trial: Any,
        log: Any,
        step: int,
        values: dict[str, np.ndarray],
        p: int,
        last_loss: np.ndarray,
        report: bool = True,
    ) -> str | None:
        """Log setting p's monitor values (each (P,)) and report its intermediate objective: the monitored
        error, or for `kkt` the last attack loss (last_loss (P,)). Returns why to prune it, or None."""
        for key, vals in values.items():
            log.metric(key, vals[p], step)
        log.flush()
        if not report:
            return None
        # kkt: the last attack loss; oracle: the monitor's own value of the primary error (eval.primary)
        value = float((last_loss if self.opts.objective == "kkt" else values["attack/error"])[p])
        if step > 0 and math.isfinite(value):
            trial.report(value, step)
            if trial.should_prune():
                return f"{self.opts.objective} intermediate {value:.3g} at step {step}"
        return None

    def log_attack(self, trial: Any, log: Any, result: ExperimentResult, sr: SettingResult) -> float:
        """Log one setting's outcome on its trial's run (`result.config`: the trial's config); its value."""
        curves = ("attack/loss", "attack/kkt_fit")
        log_setting(log, self.task, result, sr, self.task.name, curves, lock=PLOT_LOCK)
        oracle, kkt = float(sr.metrics["error"]), float(sr.metrics["kkt_fit_final"])
        log.metrics({"objective/oracle": oracle, "objective/kkt": kkt})
        trial.set_user_attr("oracle", oracle)
        trial.set_user_attr("kkt", kkt)
        return oracle if self.opts.objective == "oracle" else kkt


def _fail_reason(trial: Any) -> str:
    return str(trial.system_attrs.get("fail_reason", "unknown error"))
