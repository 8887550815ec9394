"""What one run's candidate sets are scored against, built once per run, and the one scorer for any set.

`run_baselines` computes, once per (series point, seed), everything that does not depend on the attack's
candidates: the mean-image and held-out baselines (scored exactly like reconstructions), the fresh samples of
the membership test, the untrained random candidates' draws, the data-overlap counts, the per-sample margins,
and the truth's own KKT fit (`bench.attack.truth`): how well the training set itself explains the weights,
the reference an attack's fit is read against. `score` then scores any candidate set (one setting's
reconstructions, or a pool of several) the same way: matching and its summaries, every baseline beside it,
memorisation and membership.

Knows nothing of MLflow: arrays and configs in, metrics out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.analysis.baselines import HeldOut
from bench.config import RunConfig
from bench.evaluate import Evaluation, Scorer


@dataclass
class RunBaselines:
    """One run's references (see the module docstring). Arrays in the data's own scale unless `_c` (centred:
    minus the training mean, the space the attack works in). `noise` (m, d): the untrained candidates' draws
    (a setting's random baseline is mean + init_scale * noise); `truth`: the truth's fit (None when it was not
    computed: `truth_note` says why)."""

    scorer: Scorer
    mean: np.ndarray
    held: HeldOut
    shared: dict[str, dict[str, float]]
    noise: np.ndarray
    train_c: np.ndarray
    held_c: np.ndarray
    fresh_c: np.ndarray
    d_fresh: np.ndarray
    mem_random: dict[str, float]
    data_counts: dict[str, float]
    margins: np.ndarray | None = None
    truth: Any = None
    truth_note: str = ""
    seconds: dict[str, float] = field(default_factory=dict)
    _random: dict[float, dict[str, float]] = field(default_factory=dict, repr=False)
    _truth_at: dict[float, Any] = field(default_factory=dict, repr=False)
    clarke: dict[str, float] = field(default_factory=dict)
    _truth_fn: Any = field(default=None, repr=False)

    def centred(self, x: np.ndarray) -> np.ndarray:
        return x - self.mean

    def random(self, init_scale: float) -> dict[str, float]:
        """The untrained candidates' scores at `init_scale` (memorisation included: NCC ignores the scale,
        so one value serves every setting); scored once per init scale."""
        from bench.analysis.baselines import random_candidates

        if init_scale not in self._random:
            x = random_candidates(self.mean, self.noise, init_scale)
            self._random[init_scale] = self.scorer.scores(x)[0] | self.mem_random
        return self._random[init_scale]

    def truth_metrics(self) -> dict[str, float]:
        """`truth/*` of the run (empty when the truth's fit was not computed)."""
        return {} if self.truth is None else self.truth.metrics() | self.clarke

    def truth_at(self, alpha: float) -> Any:
        """The truth's fit under the attack's surrogate slope `alpha` (the objective's own view of the
        training set), computed once per slope; None where the exact one was not computed."""
        if self.truth is None:
            return None
        if alpha not in self._truth_at:
            self._truth_at[alpha] = self._truth_fn(alpha)
        return self._truth_at[alpha]


def run_baselines(cfg: RunConfig, prepared: Any, weights: Any, m: int, scorer: Scorer) -> RunBaselines:
    """The run's references for m candidates (see the module docstring); `weights`: the network the attack
    fits (margin-normalised or not: the truth's fit does not depend on the scale)."""
    from bench.analysis.baselines import heldout_sets, mean_image
    from bench.analysis.memorisation import memorisation, nearest_distance
    from bench.data.split import drop_overlap, overlap_counts

    data, mean, q_min = prepared.data, prepared.mean, prepared.min_margin
    n = len(data.x_train)
    rng = np.random.default_rng([cfg.seed, 2])
    noise = rng.standard_normal((m, len(mean)))  # untrained candidates, scaled by each setting's init
    # held-out samples equal to a training sample (after rescaling) never serve as "fresh" samples
    x_test, y_test, dropped = drop_overlap(data.x_train, data.x_test, data.y_test, cfg.eval.rescale)
    held = heldout_sets(x_test, y_test, m, n, rng)
    counts = overlap_counts(data.x_train, np.concatenate([held.x, held.fresh_x]), cfg.eval.rescale)
    counts |= {"data/n_fresh": float(len(held.fresh_x)), "data/heldout_dropped": float(dropped)}
    shared = {"mean": scorer.scores(mean_image(mean))[0], "heldout": scorer.scores(held.x)[0]}
    # memorisation and membership compare centred samples (x - training mean, the space the attack works
    # in): the mean added back for viewing would otherwise give every candidate set a training statistic
    train_c, held_c, fresh_c = data.x_train - mean, held.x - mean, held.fresh_x - mean
    d_fresh = nearest_distance(train_c, held_c)  # the same for every candidate set
    # the untrained candidates, centred, are init_scale * noise: NCC ignores the scale
    mem_random = memorisation(train_c, data.y_train, noise, held_c, fresh_c, d_fresh)
    margins = prepared.margins / q_min if prepared.margins is not None and q_min > 0 else None
    base = RunBaselines(
        scorer, mean, held, shared, noise, train_c, held_c, fresh_c, d_fresh, mem_random, counts, margins
    )
    if cfg.eval.truth:
        t0 = time.perf_counter()
        base.truth, base.truth_note = truth_or_reason(cfg, weights, train_c, data.y_train)
        base.seconds["truth_s"] = time.perf_counter() - t0
        base._truth_fn = lambda alpha: truth_or_reason(cfg, weights, train_c, data.y_train, alpha)[0]
        if cfg.eval.truth_clarke and base.truth is not None:
            t1 = time.perf_counter()
            base.clarke = clarke_metrics(cfg, weights, train_c, data.y_train)
            base.seconds["truth_clarke_s"] = time.perf_counter() - t1
    else:
        base.truth_note = "eval.truth=false"
    return base


# The largest truth problem computed without asking: rows r (samples, or (sample, class) pairs) give L
# Gram matrices of r x r float64 and an r x r eigendecomposition (r = 4,500: ~0.5 GB for L = 3, ~1 min)
TRUTH_MAX_ROWS = 5000


def truth_or_reason(
    cfg: RunConfig, weights: Any, x_c: np.ndarray, y: np.ndarray, alpha: float | None = None
) -> tuple[Any, str]:
    """The truth's fit of the trained network on the centred training set (exact ReLU derivative, or the
    surrogate's at `alpha`), or (None, why not): a problem larger than `TRUTH_MAX_ROWS` rows, or one that
    runs out of memory, is reported, not fatal (the attack still runs and is scored)."""
    from bench.attack.truth import truth_fit

    n_out = weights.n_out
    rows = len(x_c) * (n_out - 1 if n_out > 1 and cfg.attack.pairs == "all" else 1)
    if rows > TRUTH_MAX_ROWS:
        return None, f"truth fit skipped: {rows} rows > {TRUTH_MAX_ROWS} (Gram matrices of {rows}^2 floats)"
    try:
        fit = truth_fit(weights, x_c, y, cfg.attack.fit_norm, cfg.attack.fit_layers, cfg.attack.pairs, alpha)
    except (MemoryError, RuntimeError) as e:  # torch reports allocation failures as RuntimeError
        return None, f"truth fit failed: {type(e).__name__}: {e}"[:300]
    return fit, ""


def clarke_metrics(cfg: RunConfig, weights: Any, x_c: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """`truth/kkt_fit_clarke` (and per layer) and `truth/kinks_layer1`: the truth's fit with the first hidden
    layer's derivative free in [0, 1] at the (sample, unit) pairs on a kink (`bench.attack.truth.clarke_truth`,
    the KKT conditions' own Clarke form)."""
    from bench.attack.truth import clarke_truth

    fit, kinks = clarke_truth(weights, x_c, y, cfg.attack.fit_norm, cfg.attack.fit_layers, cfg.attack.pairs)
    out = {"truth/kkt_fit_clarke": fit.fit, "truth/kinks_layer1": float(kinks)}
    out["truth/kinks_layer1_frac"] = kinks / (len(x_c) * weights.mats[0].shape[0])
    return out | {f"truth/kkt_fit_clarke_layer{i + 1}": float(v) for i, v in enumerate(fit.layers)}


def score(base: RunBaselines, recon: np.ndarray, init_scale: float) -> tuple[Evaluation, dict[str, float]]:
    """Score one candidate set (k, d) in the data scale: its evaluation against the training set beside
    every baseline (the random one at `init_scale`), and its memorisation / membership metrics."""
    from bench.analysis.memorisation import memorisation

    mem = memorisation(
        base.train_c,
        base.scorer.train_y,
        base.centred(recon),
        base.held_c,
        base.fresh_c,
        base.d_fresh,
    )
    ev = base.scorer.evaluate(recon, base.shared | {"random": base.random(init_scale)}, mem)
    return ev, {**ev.metrics, **base.data_counts}


def fit_against_truth(base: RunBaselines, fit_relu: float, fit: float, alpha: float) -> dict[str, float]:
    """The attack's fit beside the truth's, both with the exact ReLU derivative: `attack/fit_relu`,
    `attack/fit_over_truth` (ratio) and `attack/fit_below_truth` (1: the attack explains the weights better
    than the training set does, so the objective's minimum is not the data); and both under the surrogate
    slope `alpha` the attack ended with (its objective's own view): `attack/fit_surrogate`,
    `truth/kkt_fit_surrogate`, `attack/fit_below_truth_surrogate`."""
    out = {"attack/fit_relu": float(fit_relu), "attack/fit_surrogate": float(fit)}
    if base.truth is not None:
        out["attack/fit_below_truth"] = float(fit_relu < base.truth.fit)
        out["attack/fit_over_truth"] = float(fit_relu / max(base.truth.fit, 1e-300))
        surrogate = base.truth_at(alpha)
        if surrogate is not None:
            out["truth/kkt_fit_surrogate"] = surrogate.fit
            out["attack/fit_below_truth_surrogate"] = float(fit < surrogate.fit)
    return out
