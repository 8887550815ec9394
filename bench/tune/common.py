"""What the modules of `bench tune` share: the options, one stage's plan and result, a trial's setup."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from bench.config import RunConfig
from bench.tune.space import Dim, Stage

STAGES = ("classifier", "attack", "both")
OBJECTIVES = ("oracle", "kkt")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "none")
PLOT_LOCK = threading.Lock()  # pyplot is not thread-safe (--n-jobs > 1)


class TuneError(RuntimeError):
    """A study that could not go on (e.g. every trial fails): CLI exit code 1."""


class Surplus(Exception):
    """This trial was created after the study already had its target of trials (a race between workers)."""


@dataclass
class TuneOptions:
    """What `bench tune` was asked (see the CLI for each option's meaning)."""

    task: str
    stage: str = "attack"
    n_trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study: str | None = None
    n_jobs: int = 1
    objective: str = "oracle"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    profile: str = "quick"
    overrides: dict[str, str] = field(default_factory=dict)
    space: dict[str, Dim | None] = field(default_factory=dict)
    tracking_uri: str | None = None
    experiment: str | None = None
    heartbeat: int = 10
    batch: int = 1


@dataclass
class StageResult:
    """What one stage's study holds after this process's work: trial counts, the best trial and its
    `bench run` command, and (attack stage) the Spearman rank correlation of kkt vs oracle values."""

    stage: str
    study: str
    storage: str  # password hidden
    parent_run_id: str
    experiment_id: str
    n_target: int
    n_complete: int
    n_pruned: int
    n_failed: int
    best_value: float | None = None
    best_trial: int | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    command: str = ""  # the best config as a `bench run` command line
    spearman: float | None = None  # rank correlation of kkt vs oracle (attack stage)

    @property
    def finished(self) -> bool:
        return self.n_complete + self.n_pruned >= self.n_target


@dataclass
class Plan:
    """One stage's study: its name, config, searched space and fingerprint (what it searches)."""

    stage: Stage
    study: str
    cfg: RunConfig
    overrides: dict[str, str]  # as given (+ best classifier settings for `both`), seed excluded
    series_value: Any
    space: dict[str, Dim]
    fingerprint: dict[str, Any]


@dataclass
class TrialSetup:
    """One trial, ready to run: its parameters, config, MLflow run tags and the trial it retries."""

    params: dict[str, Any]  # the suggested values, by dotted key
    cfg: RunConfig  # the study's config with params applied
    tags: dict[str, Any]  # of the trial's MLflow run
    origin: int  # the number of the trial this one retries, else its own


class TrialHost(Protocol):
    """What a batch of trials (`bench.tune.batch`) needs of the runner that hosts it; implemented by
    `bench.tune.trials.TrialRunner`. Declared here so that batch and trials do not import each other."""

    task: Any  # bench.registry.Task
    plan: Plan
    study: Any  # optuna.Study
    tracker: Any  # bench.tracking.Tracker

    def prepared(self) -> Any: ...  # bench.experiment.Prepared: the classifier shared by the trials

    def check_surplus(self, trial: Any) -> None: ...

    def setup(self, trial: Any) -> TrialSetup: ...

    def child_run(self, trial: Any, setup: TrialSetup) -> AbstractContextManager[Any]: ...

    def monitor(
        self, trial: Any, log: Any, step: int, values: Any, p: int, last_loss: Any, report: bool = True
    ) -> str | None: ...

    def log_attack(self, trial: Any, log: Any, result: Any, sr: Any) -> float: ...

    def echo_outcome(self, study: Any, trial: Any) -> None: ...

    def count_failures(self, trials: list[Any]) -> None: ...
