"""One experiment: data -> train -> attack -> evaluate. Used by `bench run`, `bench tune` and the tests.

Knows nothing of MLflow, Optuna or Typer: it takes a task and a resolved config and returns arrays,
curves and metrics; `Hooks` carry progress and incremental logging out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.config import RunConfig, apply_overrides, expand_recipe
from bench.data.base import Dataset
from bench.registry import Task


@dataclass
class Hooks:
    """Optional callbacks: training epochs, attack steps (losses of every setting), monitor points."""

    on_epoch: Callable[[int, float], None] | None = None
    on_step: Callable[[int, np.ndarray], None] | None = None
    on_monitor: Callable[[int, dict[str, np.ndarray]], None] | None = None
    on_phase: Callable[[str, int], None] | None = None


@dataclass
class SettingResult:
    """The attack's outcome for one hyperparameter setting of the population."""

    setting: dict[str, float]
    recon: np.ndarray  # (m, d) reconstructions in the data's own scale
    lam: np.ndarray  # (m,)
    metrics: dict[str, float]
    curves: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (steps, values)
    match_index: np.ndarray  # (n,) nearest reconstruction of each training sample
    ssim: np.ndarray | None  # (n,) its SSIM
    match_score: np.ndarray  # (n,) the pair's NCC (higher is better), what the grid shows
    distance: np.ndarray | None = None  # (n,) 1 - NCC to the nearest reconstruction (the primary distance)
    y: np.ndarray | None = None  # (m,) the candidates' labels where they differ from the run's (a pool)


@dataclass
class ExperimentResult:
    config: RunConfig
    data: Dataset
    model: Any
    train_metrics: dict[str, float]
    train_curve: tuple[np.ndarray, np.ndarray]
    y_candidates: np.ndarray
    settings: list[SettingResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    heldout: Any = None  # bench.analysis.baselines.HeldOut: the exact samples the baselines used
    margins: np.ndarray | None = None  # (n,) y f(x) / smallest margin of each training sample
    pooled: SettingResult | None = None  # attack.pool > 0: the pooled candidates of the chosen settings


def resolve_config(
    task: Task,
    profile: str,
    overrides: dict[str, Any] | None = None,
    series_value: Any = None,
    seed: int = 0,
) -> RunConfig:
    """The task's defaults, then the profile's, then the user's overrides, then the series point and seed."""
    steps: dict[str, Any] = {**task.defaults, **task.profiles[profile].overrides, **(overrides or {})}
    if isinstance(series_value, dict):
        steps.update(series_value)
    elif series_value is not None and task.series_key:
        steps[task.series_key] = series_value
    steps["seed"] = seed
    return apply_overrides(RunConfig(data=task.data), expand_recipe(steps))


@dataclass
class Prepared:
    """Data and trained classifier of one (series point, seed): what every attack on them shares.

    `mean`: (d,) per-feature training mean (the model sees x - mean); `weights`: the trained network as
    the attack sees it (`bench.attack.engine.network_of`: closed-form `Weights` for an MLP, a `ModuleNet`
    otherwise), not yet margin-normalised; `min_margin`: smallest y f(x) on the training set.
    """

    config: RunConfig
    data: Dataset
    mean: np.ndarray
    model: Any
    train_metrics: dict[str, float]
    train_curve: tuple[np.ndarray, np.ndarray]
    weights: Any
    min_margin: float
    timings: dict[str, float] = field(default_factory=dict)
    margins: np.ndarray | None = None  # (n,) y f(x) of each training sample, as trained


# A task's extra analysis of a finished setting: post(result, setting_result) -> {metric: value}
Post = Callable[["ExperimentResult", SettingResult], dict[str, float]]


def run_experiment(
    cfg: RunConfig,
    settings: Sequence[dict[str, float]] | None = None,
    hooks: Hooks | None = None,
    post: Post | None = None,
) -> ExperimentResult:
    """Run one (series point, seed): returns every setting's reconstructions, metrics and curves."""
    return attack_and_evaluate(prepare(cfg, hooks), cfg, settings, hooks, post)


def prepare(cfg: RunConfig, hooks: Hooks | None = None) -> Prepared:
    """Load the data and train the classifier (uses cfg's data, model, train and seed; not attack/eval).

    With `$BENCH_CLASSIFIER_CACHE` set to a folder, a classifier trained before for the same data, model,
    train, seed, device, threads and torch version is read from it instead (`train_cached` = 1 in the
    timings; `train_s` is then the original training's): a budget check re-attacks the same networks
    without training them again. Training is deterministic for that key, so the numbers are the same."""
    cache = os.environ.get("BENCH_CLASSIFIER_CACHE")
    if cache:
        from bench.cache import cached_prepare

        return cached_prepare(cfg, lambda: _prepare(cfg, hooks), cache)
    return _prepare(cfg, hooks)


def _prepare(cfg: RunConfig, hooks: Hooks | None = None) -> Prepared:
    """`prepare` without the cache."""
    import torch

    from bench.attack.engine import network_of
    from bench.device import configure
    from bench.resnet import count_parameters
    from bench.train import margins_of, train_classifier

    hooks = hooks or Hooks()
    timings: dict[str, float] = {}
    device, _ = configure(cfg.device, cfg.threads)  # torch threads, and the device of the SDAE/ResNet
    t0 = time.perf_counter()
    data = cfg.data.load(cfg.seed)
    timings["data_s"] = time.perf_counter() - t0
    mean = data.x_train.mean(axis=0)
    xc, xtc = data.x_train - mean, data.x_test - mean

    if hooks.on_phase:
        hooks.on_phase("train", cfg.train.max_epochs)
    tr = train_classifier(
        xc,
        data.y_train,
        cfg.model,
        cfg.train,
        cfg.seed,
        xtc,
        data.y_test,
        hooks.on_epoch,
        device=device,
        n_classes=data.n_classes,
        image_shape=data.image_shape,
    )
    timings["train_s"] = tr.seconds

    weights = network_of(tr.model, xc.shape[1])
    with torch.no_grad():
        xt = torch.as_tensor(xc, dtype=next(tr.model.parameters()).dtype, device=device)
        margins = margins_of(tr.model(xt), data.y_train)  # y f(x); multiclass: Phi_y - max_{j!=y} Phi_j
    q_min = float(margins.min())
    converged = tr.metrics["train_accuracy"] == 1.0 and q_min > 0 and tr.metrics["reached_target"] == 1.0
    train_metrics = {**tr.metrics, "min_margin": q_min, "train/converged": float(converged)}
    # the parameter count against d n (Iurada et al. 2026: the training set is recoverable once p >> d n)
    p = count_parameters(tr.model)
    train_metrics |= {"model/params": float(p), "model/p_over_dn": p / xc.size}
    return Prepared(cfg, data, mean, tr.model, train_metrics, tr.curve, weights, q_min, timings, margins)


def attack_and_evaluate(
    prepared: Prepared,
    cfg: RunConfig | None = None,
    settings: Sequence[dict[str, float]] | None = None,
    hooks: Hooks | None = None,
    post: Post | None = None,
) -> ExperimentResult:
    """Attack a prepared classifier and evaluate the reconstructions against the run's baselines.

    The run's references are built once (`bench.scoring.run_baselines`: the training mean, the untrained
    random candidates and held-out samples as many as the candidates, scored exactly like the
    reconstructions; fresh samples for memorisation and membership; per-sample margins; the truth's own
    KKT fit); every setting's candidates, and a pool of them (`attack.pool`), go through the one scorer
    `bench.scoring.score`. `post`: the task's own analyses, run on every setting (their metrics join the
    setting's). With `attack.truth_probe` > 0 the attack is also started at the truth (`truth_probe`).

    `cfg` (default: the prepared one) may differ from `prepared.config` only in `attack.*` and `eval.*`,
    so one trained model can serve many attacks (`bench tune`). `prepared` is not modified.
    """
    from bench.attack.reconstruct import reconstruct, restart_view
    from bench.evaluate import Scorer
    from bench.scoring import run_baselines

    cfg = cfg or prepared.config
    _check_same_classifier(prepared.config, cfg)
    hooks = hooks or Hooks()
    data, mean, q_min = prepared.data, prepared.mean, prepared.min_margin
    timings = dict(prepared.timings)
    train_metrics = dict(prepared.train_metrics)
    from bench.attack.engine import as_engine

    weights = as_engine(prepared.weights, cfg.attack.engine)  # closed form or autograd (attack.engine)
    if max(cfg.attack.fit_layers, default=0) > weights.depth:  # model.arch=module: known only now
        from bench.errors import ConfigError

        raise ConfigError(
            f"bad value {cfg.attack.fit_layers!r} for 'attack.fit_layers': the network has {weights.depth} "
            f"weight layers; fix: layer numbers in 1..{weights.depth}, or empty (all)"
        )
    weights = weights.margin_normalized(q_min) if cfg.attack.normalize == "margin" else weights
    train_metrics["normalized"] = float(cfg.attack.normalize == "margin" and q_min > 0)
    lo, hi = _box(data, mean)
    scorer = Scorer(data.x_train, data.y_train, data.image_shape, cfg.eval, lo, hi)

    def monitor(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        """DSSIM, L2 and correlation to the nearest training sample, and the primary error (fig 3)."""
        scores = [scorer.scores(xp + mean, per_class=False)[0] for xp in x]
        named = {k: k for k in ("ncc_dist_mean", "l2_mean", "corr_mean", "dssim_mean") if k in scores[0]}
        named["error"] = cfg.eval.primary
        out = {f"attack/{name}": np.array([s[key] for s in scores]) for name, key in named.items()}
        if hooks.on_monitor:
            hooks.on_monitor(step, restart_view(out, cfg.attack.restarts))
        return out

    n = len(data.x_train)
    if hooks.on_phase:
        hooks.on_phase("attack", cfg.attack.steps)
    att = reconstruct(
        weights,
        n,
        lo - mean,
        hi - mean,
        cfg.attack,
        cfg.seed,
        settings,
        monitor,
        hooks.on_step,
        cfg.device,
        shape=data.image_shape,
    )
    timings["attack_s"] = att.seconds
    # seconds per step as this run saw them (compilation and monitoring included): the host's speed, which
    # varies between machines of one kind and over a day, so wall times are compared through it
    steps = cfg.attack.steps if att.steps_run is None else int(np.max(att.steps_run))
    timings["attack_step_s"] = att.seconds / max(1, steps)

    t0 = time.perf_counter()
    base = run_baselines(cfg, prepared, weights, len(att.y), scorer)
    timings |= base.seconds
    run_metrics = base.truth_metrics()
    if cfg.attack.truth_probe > 0 and base.truth is not None:
        t1 = time.perf_counter()
        run_metrics |= truth_probe(weights, base, cfg, data, lo, hi)
        timings["truth_probe_s"] = time.perf_counter() - t1
    result = ExperimentResult(
        cfg,
        data,
        prepared.model,
        train_metrics,
        prepared.train_curve,
        att.y,
        timings=timings,
        heldout=base.held,
        margins=base.margins,
    )
    for p, setting in enumerate(att.settings):
        sr = _setting_result(base, att, p, setting, cfg, run_metrics)
        if post is not None:
            sr.metrics.update(post(result, sr))
        result.settings.append(sr)
    if cfg.attack.pool > 0:
        result.pooled = _pooled_result(base, result.settings, att, cfg, run_metrics)
    timings["eval_s"] = time.perf_counter() - t0 - timings.get("truth_probe_s", 0.0)
    return result


def _box(data: Dataset, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The data range (lo, hi) broadcast to (d,)."""
    lo = np.broadcast_to(np.asarray(data.lo, dtype=float), mean.shape)
    hi = np.broadcast_to(np.asarray(data.hi, dtype=float), mean.shape)
    return lo, hi


def _attack_flags(att: Any, p: int, cfg: RunConfig) -> dict[str, float]:
    """The attack's own record for setting p: convergence, degradation, float64 checks, objectives."""
    return (
        {
            "diverged": float(att.diverged[p]),
            "kkt_fit_final": float(att.curves["attack/kkt_fit"][1][p, -1]),
            "attack/converged": float(att.converged[p]),
            "attack/converged_movement": float(att.converged_movement[p]),
            "attack/degraded": float(att.degraded[p]),
            "attack/best_step": float(att.best_step[p]),
            "attack/objective_best": float(att.objective[p]),
            "attack/objective_relu": float(att.objective_relu[p]),
            "attack/fit_check_failed": float(att.fit_check_failed[p]),
            "attack/fallback_step": float(att.fallback_step),
            "attack/steps_run": float(att.steps_run[p]),
            "attack/stop_rule": float(cfg.attack.stop != "none"),
        }
        | ({} if att.restart is None else {"attack/restart": float(att.restart[p])})
        | ({} if att.split_count is None else {"attack/split_count": float(att.split_count[p])})
    )


def _setting_result(
    base: Any, att: Any, p: int, setting: dict[str, float], cfg: RunConfig, run_metrics: dict[str, float]
) -> SettingResult:
    """Setting p's reconstructions scored (`bench.scoring.score`), with its attack record, its fit beside
    the truth's, and the per-sample margin analysis."""
    from bench.scoring import fit_against_truth, score

    recon = att.x[p] + base.mean
    ev, metrics = score(base, recon, setting["init_scale"])
    alpha = setting["alpha"] if cfg.attack.alpha_final <= 0 else cfg.attack.alpha_final
    metrics |= _attack_flags(att, p, cfg) | run_metrics
    metrics |= fit_against_truth(base, att.fit_relu[p], att.fit_best[p], alpha)
    metrics |= {f"attack/fit_relu_layer{i + 1}": float(v) for i, v in enumerate(att.fit_relu_layers[p])}
    if base.margins is not None:
        metrics["margin/frac_near"] = float((base.margins <= 1.5).mean())
        # Oz et al. 2024: per-sample quality tracks the distance to the margin (rho > 0: the samples
        # far from the margin are reconstructed worse)
        metrics["margin/spearman"] = _spearman(base.margins, 1.0 - ev.match.corr)
    metrics["error"] = metrics[cfg.eval.primary]
    curves = {k: (steps, vals[p]) for k, (steps, vals) in att.curves.items()}
    match = ev.match
    return SettingResult(
        setting, recon, att.lam[p], metrics, curves, match.index, match.ssim, match.corr, 1.0 - match.corr
    )


# The figures of each pooled selection (oracle, kkt) logged on a pooled run as pool/<mode>/<key>
POOL_KEYS = ("ncc_dist_mean", "dssim_mean", "memorised/frac", "membership/auc", "gain/heldout/ncc_dist")

# The attack flags of a pool's settings: "converged" flags hold for the pool when they hold for all of its
# settings, the others (degraded, failed checks, diverged, below the truth) when they hold for any
_POOL_FLAGS = (
    "attack/converged",
    "attack/converged_movement",
    "attack/degraded",
    "attack/fit_check_failed",
    "diverged",
    "attack/fit_below_truth",
)


def _pooled_result(
    base: Any, settings: list[SettingResult], att: Any, cfg: RunConfig, run_metrics: dict[str, float]
) -> SettingResult:
    """The candidates of the settings chosen by `attack.pool_select` (bench.attack.protocol), pooled and
    scored like one setting; both selections' figures logged as `pool/<mode>/<key>`. Its baselines are
    as for one setting: m held-out samples and m random candidates (a pool of k m candidates gets more tries
    than they do: `pool/heldout_ratio` says by how much)."""
    from bench.attack.protocol import extraction_score, select
    from bench.scoring import score

    init = att.settings[0]["init_scale"]
    criteria = {
        "kkt": att.objective_relu,
        "oracle": np.array([extraction_score(sr.distance, cfg.eval.top_k) for sr in settings]),
    }
    pooled = {}
    for mode, criterion in criteria.items():
        idx = select(criterion, cfg.attack.pool_keep)
        recon = np.concatenate([settings[p].recon for p in idx])
        pooled[mode] = (idx, recon, *score(base, recon, init))
    idx, recon, ev, metrics = pooled[cfg.attack.pool_select]
    flags = {k: np.array([settings[p].metrics.get(k, np.nan) for p in idx]) for k in _POOL_FLAGS}
    metrics |= {
        key: float(v.all() if key.startswith("attack/converged") else (v > 0.5).any())
        for key, v in flags.items()
        if not np.isnan(v).all()
    }
    metrics |= run_metrics | {
        "attack/fit_relu": float(np.min(att.fit_relu[idx])),
        "attack/stop_rule": float(cfg.attack.stop != "none"),
        "attack/steps_run": float(max(att.steps_run[p] for p in idx)),
        "attack/pool_size": float(len(recon)),
        "attack/pool_settings": float(len(idx)),
        "attack/pool_drawn": float(len(att.settings)),
        "pool/heldout_ratio": float(len(base.held.x)) / len(recon),
        "pool/converged_frac": float(flags["attack/converged"].mean()),
    }
    for mode, (_, _, mode_ev, _) in pooled.items():
        metrics.update({f"pool/{mode}/{k}": mode_ev.metrics[k] for k in POOL_KEYS if k in mode_ev.metrics})
    metrics["error"] = metrics[cfg.eval.primary]
    lam = np.concatenate([att.lam[p] for p in idx])
    match = ev.match
    return SettingResult(
        {"pool_settings": float(len(idx))},
        recon,
        lam,
        metrics,
        {},
        match.index,
        match.ssim,
        match.corr,
        1.0 - match.corr,
        np.tile(att.y, len(idx)),
    )


def truth_probe(
    weights: Any, base: Any, cfg: RunConfig, data: Dataset, lo: np.ndarray, hi: np.ndarray
) -> dict[str, float]:
    """The attack started at the truth: candidates = the centred training set, multipliers = the truth's
    optimal ones (m = n), run `attack.truth_probe` steps with the attack's own optimiser, loss and schedule.

    `truth_probe/fit`: the exact-ReLU fit of the state it returns (the truth's own is `truth/kkt_fit`);
    `truth_probe/fit_start`: the fit it started from under the attack's surrogate slope;
    `truth_probe/drift`: mean 1 - NCC of each candidate to the training image it started at (scored as
    matching scores: rescaled, per-image standardised), beside `truth_probe/heldout_ncc_dist`, the same
    distance from each training image to its nearest held-out sample: near 0 the data is a stable point
    of the objective and a failed reconstruction is the search's; a drift like a fresh sample's says the
    objective itself leads away from the data."""
    import dataclasses

    from bench.attack.kkt import lambda_scale
    from bench.attack.reconstruct import Start, reconstruct
    from bench.evaluate import correlation, rescale

    truth = base.truth
    n = len(base.train_c)
    n_out = weights.n_out
    scale = float(lambda_scale(weights, n))
    lam = truth.lam / scale
    y = np.asarray(data.y_train, dtype=float)
    if n_out > 1 and cfg.attack.pairs == "all":  # one multiplier per (sample, other class)
        l0 = np.zeros((n, n_out))  # the truth's rows are (i, j != y_i), i then j (bench.attack.truth)
        rows = np.nonzero(np.arange(n_out)[None, :] != y.astype(int)[:, None])
        l0[rows] = lam
    else:
        l0 = lam
    probe = dataclasses.replace(cfg.attack, steps=cfg.attack.truth_probe, stop="none")
    att = reconstruct(
        weights,
        n,
        lo - base.mean,
        hi - base.mean,
        probe,
        cfg.seed,
        None,
        None,
        None,
        cfg.device,
        start=Start(base.train_c, l0, y),
        shape=data.image_shape,
    )
    scorer = base.scorer
    moved = rescale(att.x[0] + base.mean, cfg.eval.rescale, scorer.lo, scorer.hi)
    drift = 1.0 - np.diag(correlation(moved, scorer.train_s))
    return {
        "truth_probe/fit": float(att.fit_relu[0]),
        "truth_probe/fit_surrogate": float(att.fit_best[0]),
        "truth_probe/fit_start": float(att.curves["attack/kkt_fit"][1][0, 0]),
        "truth_probe/drift": float(drift.mean()),
        "truth_probe/heldout_ncc_dist": float(
            1.0 - scorer.scores(base.held.x, per_class=False)[1].corr.mean()
        ),
        "truth_probe/steps": float(probe.steps),
    }


def _check_same_classifier(a: RunConfig, b: RunConfig) -> None:
    """Raise ValueError when b would need another classifier than a (anything beyond attack.* / eval.*)."""
    from bench.config import to_dict

    def key(c: RunConfig) -> dict[str, Any]:
        return {k: v for k, v in to_dict(c).items() if not k.startswith(("attack.", "eval."))}

    ka, kb = key(a), key(b)
    if ka != kb:
        diff = sorted(k for k in ka.keys() | kb.keys() if ka.get(k) != kb.get(k))
        raise ValueError(f"attack_and_evaluate: config differs from the prepared one in {diff}")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rho of two (n,) arrays; NaN when either is constant."""
    from scipy import stats

    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(stats.spearmanr(a, b)[0])
