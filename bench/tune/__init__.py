"""`bench tune`: hyperparameter search with Optuna, tracked in MLflow (see docs/tuning.md).

Two stages, as the paper needs them: `classifier` searches training settings for the lowest training
loss (the attack's premise: a network trained close to a KKT point); `attack` trains the classifier once
per process and searches attack settings for the best reconstruction. `both` runs the classifier stage,
then the attack stage on the best classifier config. Every stage is one Optuna study.

Objectives (minimised): classifier stage, the final training loss (test accuracy logged). Attack stage,
`oracle` = the run's `error` (the task's primary metric against the training data: a benchmark's
privilege) or `kkt` = `kkt_fit_final` (the KKT residual, what a real attacker can compute); both are
logged in every trial and their Spearman rank correlation over the study goes on the parent run.
Intermediate values (training loss every few epochs; the monitored error, or the attack loss for `kkt`,
every `attack.eval_every` steps) feed a median pruner. A diverged attack counts as pruned; a diverged
training scores log 2 (a classifier that learned nothing).

Storage: by default an Optuna JournalStorage file `optuna/<study>.journal` beside the SQLite tracking
store (`mlruns/optuna/...`), safe for several processes on one machine; or any Optuna RDB URL
(`postgresql+psycopg2://...` for several machines). Both have heartbeats: a trial whose worker stops
beating (killed) is failed and re-enqueued with the same parameters by the next worker that looks.

`n_trials` is the study's target: a worker runs trials until the study holds that many finished
(complete or pruned) trials, so rerunning a command resumes; failed trials do not count. MLflow: one
parent run per study (found again on resume through the study's user attribute), one child per trial.

`--batch P` (attack stage): a worker asks for P trials at once and runs their settings as one attack
population (batch.py); only the population keys (attack.lr, init_scale, lam_min, alpha) may be searched.
A pruned trial runs to the end of its batch and is told PRUNED.

Modules, one job each: space.py (search spaces, `--space`), storage.py (journal and RDB storages with
heartbeats), study.py (`tune`: options, plan, study, parent run), trials.py (worker threads and one
trial), batch.py (`--batch`), summary.py (the parent run's summary), common.py (shared types).
"""

from bench.tune.common import StageResult, TuneError, TuneOptions
from bench.tune.space import ATTACK_SPACE, CLASSIFIER_SPACE, Dim, parse_dim, parse_space
from bench.tune.storage import default_storage_path, open_storage
from bench.tune.study import tune

__all__ = [
    "ATTACK_SPACE",
    "CLASSIFIER_SPACE",
    "Dim",
    "StageResult",
    "TuneError",
    "TuneOptions",
    "default_storage_path",
    "open_storage",
    "parse_dim",
    "parse_space",
    "tune",
]
