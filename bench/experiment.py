"""One experiment: data -> train -> attack -> evaluate. Used by `bench run`, `bench tune` and the tests.

Knows nothing of MLflow, Optuna or Typer: it takes a task and a resolved config and returns arrays,
curves and metrics; `Hooks` carry progress and incremental logging out.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.config import RunConfig, apply_overrides
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
    return apply_overrides(RunConfig(data=task.data), steps)


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
    """Load the data and train the classifier (uses cfg's data, model, train and seed; not attack/eval)."""
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
    """Attack a prepared classifier and evaluate the reconstructions against the baselines.

    Baselines (bench.analysis.baselines), scored exactly like the reconstructions: the training mean,
    the untrained random candidates, and held-out samples as many as the candidates; memorisation and
    membership (bench.analysis.memorisation) against the held-out and a further fresh set; per-sample
    margins. `post`: the task's own analyses, run on every setting (their metrics join the setting's).

    `cfg` (default: the prepared one) may differ from `prepared.config` only in `attack.*` and `eval.*`,
    so one trained model can serve many attacks (`bench tune`). `prepared` is not modified.
    """
    from bench.analysis.baselines import heldout_sets, mean_image, random_candidates
    from bench.analysis.memorisation import memorisation, nearest_distance
    from bench.attack.reconstruct import reconstruct
    from bench.data.split import drop_overlap, overlap_counts
    from bench.evaluate import Scorer

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

    lo = np.broadcast_to(np.asarray(data.lo, dtype=float), mean.shape)
    hi = np.broadcast_to(np.asarray(data.hi, dtype=float), mean.shape)
    scorer = Scorer(data.x_train, data.y_train, data.image_shape, cfg.eval, lo, hi)

    def monitor(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        """DSSIM, L2 and correlation to the nearest training sample, and the primary error (fig 3)."""
        scores = [scorer.scores(xp + mean, per_class=False)[0] for xp in x]
        named = {k: k for k in ("ncc_dist_mean", "l2_mean", "corr_mean", "dssim_mean") if k in scores[0]}
        named["error"] = cfg.eval.primary
        out = {f"attack/{name}": np.array([s[key] for s in scores]) for name, key in named.items()}
        if hooks.on_monitor:
            hooks.on_monitor(step, out)
        return out

    n = len(data.x_train)
    if hooks.on_phase:
        hooks.on_phase("attack", cfg.attack.steps)
    att = reconstruct(
        weights, n, lo - mean, hi - mean, cfg.attack, cfg.seed, settings, monitor, hooks.on_step, cfg.device
    )
    timings["attack_s"] = att.seconds
    # seconds per step as this run saw them (compilation and monitoring included): the host's speed, which
    # varies between machines of one kind and over a day, so wall times are compared through it
    steps = cfg.attack.steps if att.steps_run is None else int(np.max(att.steps_run))
    timings["attack_step_s"] = att.seconds / max(1, steps)

    t0 = time.perf_counter()
    m = len(att.y)
    rng = np.random.default_rng([cfg.seed, 2])
    noise = rng.standard_normal((m, len(mean)))  # untrained candidates, scaled by each setting's init
    # held-out samples equal to a training sample (after rescaling) never serve as "fresh" samples
    x_test, y_test, dropped = drop_overlap(data.x_train, data.x_test, data.y_test, cfg.eval.rescale)
    held = heldout_sets(x_test, y_test, m, n, rng)
    data_counts = overlap_counts(data.x_train, np.concatenate([held.x, held.fresh_x]), cfg.eval.rescale)
    data_counts |= {"data/n_fresh": float(len(held.fresh_x)), "data/heldout_dropped": float(dropped)}
    shared = {"mean": scorer.scores(mean_image(mean))[0], "heldout": scorer.scores(held.x)[0]}

    # memorisation and membership compare centred samples (x - training mean, the space the attack works
    # in): the mean added back for viewing would otherwise give every candidate set a training statistic
    def centred(x: np.ndarray) -> np.ndarray:
        return x - mean

    train_c, held_c, fresh_c = centred(data.x_train), centred(held.x), centred(held.fresh_x)
    d_fresh = nearest_distance(train_c, held_c)  # the same for every candidate set
    # the untrained candidates, centred, are init_scale * noise: NCC ignores the scale, so one value
    # serves every setting
    mem_random = memorisation(train_c, data.y_train, noise, held_c, fresh_c, d_fresh)
    margins = prepared.margins / q_min if prepared.margins is not None and q_min > 0 else None
    result = ExperimentResult(
        cfg,
        data,
        prepared.model,
        train_metrics,
        prepared.train_curve,
        att.y,
        timings=timings,
        heldout=held,
        margins=margins,
    )
    for p, setting in enumerate(att.settings):
        recon = att.x[p] + mean
        random_x = random_candidates(mean, noise, setting["init_scale"])
        random = scorer.scores(random_x)[0] | mem_random
        mem = memorisation(train_c, data.y_train, centred(recon), held_c, fresh_c, d_fresh)
        ev = scorer.evaluate(recon, shared | {"random": random}, mem)
        metrics = {
            **ev.metrics,
            **data_counts,
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
        if margins is not None:
            metrics["margin/frac_near"] = float((margins <= 1.5).mean())
            # Oz et al. 2024: per-sample quality tracks the distance to the margin (rho > 0: the samples
            # far from the margin are reconstructed worse)
            metrics["margin/spearman"] = _spearman(margins, 1.0 - ev.match.corr)
        metrics["error"] = metrics[cfg.eval.primary]
        curves = {k: (steps, vals[p]) for k, (steps, vals) in att.curves.items()}
        sr = SettingResult(
            setting,
            recon,
            att.lam[p],
            metrics,
            curves,
            ev.match.index,
            ev.match.ssim,
            ev.match.corr,
            1.0 - ev.match.corr,
        )
        if post is not None:
            sr.metrics.update(post(result, sr))
        result.settings.append(sr)
    if cfg.attack.pool > 0:
        from bench.attack.protocol import extraction_score, select

        # the baselines as for one setting: m held-out samples and m random candidates (a pool of k m
        # candidates gets more tries than they do: `pool/heldout_ratio` says by how much)
        random = scorer.scores(random_candidates(mean, noise, att.settings[0]["init_scale"]))[0] | mem_random
        scores = {
            "kkt": att.objective_relu,
            "oracle": np.array([extraction_score(sr.distance, cfg.eval.top_k) for sr in result.settings]),
        }
        pooled: dict[str, tuple[np.ndarray, np.ndarray, Any]] = {}
        for mode, score in scores.items():
            idx = select(score, cfg.attack.pool_keep)
            recon = np.concatenate([result.settings[p].recon for p in idx])
            mem = memorisation(train_c, data.y_train, centred(recon), held_c, fresh_c, d_fresh)
            pooled[mode] = (idx, recon, scorer.evaluate(recon, shared | {"random": random}, mem))
        idx, recon, ev = pooled[cfg.attack.pool_select]
        flags = {
            key: np.array([result.settings[p].metrics[key] for p in idx])
            for key in (
                "attack/converged",
                "attack/converged_movement",
                "attack/degraded",
                "attack/fit_check_failed",
                "diverged",
            )
        }
        metrics = {
            **ev.metrics,
            **data_counts,
            **{
                key: float(v.all() if key.startswith("attack/converged") else v.any())
                for key, v in flags.items()
            },
            "attack/stop_rule": float(cfg.attack.stop != "none"),
            "attack/steps_run": float(max(att.steps_run[p] for p in idx)),
            "attack/pool_size": float(len(recon)),
            "attack/pool_settings": float(len(idx)),
            "attack/pool_drawn": float(len(att.settings)),
            "pool/heldout_ratio": float(len(held.x)) / len(recon),
            "pool/converged_frac": float(flags["attack/converged"].mean()),
        }
        for mode, (_, _, mode_ev) in pooled.items():
            metrics.update(
                {f"pool/{mode}/{k}": mode_ev.metrics[k] for k in POOL_KEYS if k in mode_ev.metrics}
            )
        metrics["error"] = metrics[cfg.eval.primary]
        lam = np.concatenate([att.lam[p] for p in idx])
        match = ev.match
        result.pooled = SettingResult(
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
    timings["eval_s"] = time.perf_counter() - t0
    return result


# The figures of each pooled selection (oracle, kkt) logged on a pooled run as pool/<mode>/<key>
POOL_KEYS = ("ncc_dist_mean", "dssim_mean", "memorised/frac", "membership/auc", "gain/heldout/ncc_dist")


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
