"""The reconstruction loop: optimise candidates and multipliers against the KKT residual.

One call runs a *population* of P hyperparameter settings (lr, init_scale, lam_min, alpha) on the same
trained weights as one batched computation: every tensor carries a leading dimension P, the loss is the
sum of the P independent losses, and the optimiser is written out here (Adam or SGD with momentum) so
that each setting keeps its own learning rate. A single run is P = 1. A setting whose loss turns
non-finite is frozen at its last finite state and reported as diverged; the others go on. With
`attack.stop=plateau` a setting that has stopped improving (see `plateau`) is frozen the same way and
reported as converged; the loop ends when no setting is still moving (`attack.steps` is the cap).

Soundness at any length. Every `eval_every` steps the state is re-scored exactly: the loss in float64
with the explicit residual (a sum of squares, `bench.attack.kkt.layer_residuals`), whatever path the
steps take (bfloat16, torch.compile, the Gram route). That exact objective
- is compared with the fit the fast path computed for the same state: a relative gap above
  `attack.fit_check_tol` flags the run (`fit_check_failed`) and every setting falls back to the exact path
  (float32, explicit residual, eager) from its best state, so a fast path never silently optimises another
  function;
- chooses the state returned: each setting's latest monitor point within `attack.degrade_tol` of its
  best objective (`best_step`); the objective is what an attacker can compute, without the training data;
- says whether the run is `degraded` (it ended worse than its best by more than `attack.degrade_tol`) or
  `converged` (at its best, and the plateau rule holds: see `plateau`).

Knows nothing of MLflow: progress and monitoring go through callbacks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bench.attack.check import ExactCheck
from bench.attack.engine import loss_function_for
from bench.attack.kkt import Weights, lambda_scale
from bench.attack.network import Network
from bench.attack.optim import Optimizer
from bench.attack.priors import prior_terms
from bench.attack.schedule import alpha_factor, lr_factor, movement_window, plateau  # noqa: F401
from bench.attack.splitting import split
from bench.config import AttackConfig

# (step, x (P, m, d) centred, tensor) -> {metric name: values (P,)}
Monitor = Callable[[int, np.ndarray], dict[str, np.ndarray]]

SETTING_KEYS = ("lr", "init_scale", "lam_min", "alpha")


@dataclass
class AttackResult:
    """Candidates of every setting. x: (P, m, d) in the centred data scale, each setting's best state;
    y: (m,) in {-1, +1}; lam: (P, m) the multipliers lambda = s l of that state; curves: name -> (steps
    (T,), values (P, T)), T the steps the loop ran (a frozen setting repeats its last values), or the
    monitor points for the exact checks (`attack/objective`, `attack/fit_check`, `attack/fit_gap`,
    `attack/kkt_fit_layer<l>`). converged: (P,) at its best and the plateau rule held when the setting
    stopped (or at the last step); converged_movement: (P,) converged, and the rule also holds where
    the setting ended over the last fifth of the step-size integral of the steps it ran
    (`movement_window`); steps_run: (P,) optimisation steps it took; best_step: (P,) the monitor point
    returned (the latest within `degrade_tol` of the best objective); degraded: (P,) ended worse than its
    best by more than that; fit_check_failed: (P,) the fast path's fit left the float64 one at some monitor
    point (the run then fell back to the exact path at `fallback_step`, -1 if never); objective: (P,) the
    float64 objective of the returned state; objective_relu: (P,) the same with the true ReLU derivative
    (alpha -> infinity): one criterion for settings of different alpha (bench.attack.protocol); fit_relu:
    (P,) its fit part alone, in the attack's norm (what `bench.attack.truth` computes for the training
    set), and fit_relu_layers (P, L) the per-layer residual fractions; fit_best: (P,) the fit of the
    returned state at the surrogate slope the attack ended with (what its objective saw); restart: (P,) the
    random start kept of `attack.restarts` (None for one); split_count: (P,) candidates split by
    `attack.split_every` (bench.attack.splitting; None when off)."""

    x: np.ndarray
    y: np.ndarray
    lam: np.ndarray
    settings: list[dict[str, float]]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    diverged: np.ndarray | None = None
    seconds: float = 0.0
    converged: np.ndarray | None = None
    converged_movement: np.ndarray | None = None
    steps_run: np.ndarray | None = None
    best_step: np.ndarray | None = None
    degraded: np.ndarray | None = None
    fit_check_failed: np.ndarray | None = None
    fallback_step: int = -1
    objective: np.ndarray | None = None
    objective_relu: np.ndarray | None = None
    fit_relu: np.ndarray | None = None
    fit_relu_layers: np.ndarray | None = None
    fit_best: np.ndarray | None = None
    restart: np.ndarray | None = None
    split_count: np.ndarray | None = None


@dataclass(frozen=True)
class Start:
    """A given starting point instead of the random draw (the truth probe: the attack started at the training
    set). x (m, d): centred candidates; l (m,) or (m, C) for multiclass `pairs=all`: normalised multipliers
    (lambda / `lambda_scale`(weights, m)); y (m,): their labels (+-1, or class indices). Every setting of the
    population starts there (init_scale does not apply)."""

    x: np.ndarray
    l: np.ndarray
    y: np.ndarray


def n_candidates(m_factor: float, n_train: int) -> int:
    """m = m_factor * n candidates, rounded, at least 2 (one per binary class)."""
    return max(2, round(m_factor * n_train))


def candidate_labels(m: int, n_outputs: int = 1) -> np.ndarray:
    """Balanced labels: binary (one output), the first half -1, the second +1 (Haim et al.); C outputs,
    class indices 0..C-1 in C equal blocks (sizes differ by one where C does not divide m)."""
    if n_outputs == 1:
        return np.where(np.arange(m) < m // 2, -1.0, 1.0)
    return (np.arange(m) * n_outputs // m).astype(float)


def reconstruct(
    weights: Network,
    n_train: int,
    lo: np.ndarray,
    hi: np.ndarray,
    cfg: AttackConfig,
    seed: int,
    settings: Sequence[dict[str, float]] | None = None,
    monitor: Monitor | None = None,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    device: str | torch.device = "cpu",
    loss_fn: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
    start: Start | None = None,
    shape: tuple[int, int] | None = None,
) -> AttackResult:
    """Run the attack for `cfg.steps` steps.

    weights: the trained (and normalised) network, `bench.attack.kkt.Weights` (an MLP: the closed form)
    or `bench.attack.engine.ModuleNet` (any homogeneous network: autograd); n_train: assumed
    training-set size (m = m_factor n); lo, hi: (d,) box of the centred data; settings: P dicts overriding lr / init_scale / lam_min / alpha
    of `cfg` (default: one setting, cfg's own). `on_step(step, loss (P,))` for every step, delivered in
    order at the monitor points (where losses reach the host); `monitor` every `cfg.eval_every` steps
    and at the end (on the current state; reporting only, except that `attack/error` joins the plateau
    rule). device: where to compute (a name as in bench.device); the random starting point is drawn on
    the CPU and moved, so every device starts from the same numbers. `loss_fn`: the fast path's loss
    (default: the network's engine's, `bench.attack.engine.loss_function_for`, for cfg's dtype and
    compile); tests pass a corrupted one. `start`: a given starting point (`Start`) instead of the random
    one; m is then its size. `shape`: the image shape (H, W) of a sample, for the total-variation prior
    (`bench.attack.priors`). With `attack.restarts` R > 1 every setting runs from R random starts (one
    population of P R members) and keeps the one whose float64 objective is lowest (an attacker's
    criterion; `restart` says which); `on_step` then gets, per setting, the lowest loss among its restarts,
    and `monitor` every member's state (see `restart_view`).
    """
    import time

    from bench.device import resolve_device

    began = time.perf_counter()
    dev = resolve_device(device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    n_out = weights.n_out  # 1: binary (Haim et al.); C: multiclass (Buzaglo et al.)
    exact_loss = loss_function_for(weights)  # the closed form (an MLP) or the autograd engine
    fast = loss_fn or exact_loss(cfg.dtype == "bfloat16", cfg.compile)
    settings = [dict(s) for s in (settings or [{}])]
    for s in settings:
        unknown = set(s) - set(SETTING_KEYS)
        if unknown:
            raise ValueError(f"unknown population keys {sorted(unknown)}; allowed: {SETTING_KEYS}")
        for key in SETTING_KEYS:
            s.setdefault(key, float(getattr(cfg, key)))
    R = cfg.restarts if start is None else 1
    chosen_settings, settings = settings, [s for s in settings for _ in range(R)]  # member p = s R + r
    P = len(settings)
    m = n_candidates(cfg.m_factor, n_train) if start is None else len(start.x)
    labels = candidate_labels(m, n_out) if start is None else np.asarray(start.y, dtype=float)
    d = weights.d
    w = weights.to(dtype, dev)

    def col(key: str) -> torch.Tensor:
        return torch.tensor([s[key] for s in settings], dtype=dtype, device=dev)

    lr, sigma, lam_min, alpha = (col(k) for k in SETTING_KEYS)
    pairs = n_out > 1 and cfg.pairs == "all"  # one multiplier per (candidate, other class): l (P, m, C)
    if start is None:
        gen = torch.Generator().manual_seed(seed)
        # Every setting starts from the same draws (x scaled by its own sigma): a setting run inside a
        # population follows the path it follows alone with the same seed (bit for bit in float64; in
        # float32 the batched kernels round differently, and the attack may amplify that).
        # Restarts: R draws of (x, l) in turn, the first the one a single start (R = 1) takes.
        draws = [
            (
                torch.randn(m, d, generator=gen, dtype=dtype),
                torch.rand((m, n_out) if pairs else (m,), generator=gen, dtype=dtype),
            )
            for _ in range(R)
        ]
        x0 = torch.stack([a for a, _ in draws]).to(dev)
        l0 = torch.stack([b for _, b in draws]).to(dev)
    else:
        x0 = torch.as_tensor(start.x, dtype=dtype).to(dev)[None]
        l0 = torch.as_tensor(start.l, dtype=dtype).to(dev)[None]
        sigma = torch.ones_like(sigma)
    reps = P // R
    x = (x0.repeat(reps, 1, 1) * sigma.view(P, 1, 1)).requires_grad_()
    l = l0.repeat(reps, *[1] * (l0.dim() - 1)).requires_grad_()
    y = torch.tensor(labels, dtype=dtype, device=dev)
    lo_t = torch.as_tensor(lo, dtype=dtype, device=dev)
    hi_t = torch.as_tensor(hi, dtype=dtype, device=dev)
    scale = lambda_scale(w, m)
    lam_lr = torch.full((P, *[1] * (l.dim() - 1)), cfg.lr_lambda, dtype=dtype, device=dev)
    base_lrs = [lr.view(P, 1, 1), lam_lr]
    opt = Optimizer(
        [x, l], [b.clone() for b in base_lrs], cfg.optimizer, cfg.momentum, cfg.compile, cfg.beta2
    )
    alive = torch.ones(P, dtype=torch.bool, device=dev)
    # converged under attack.stop=plateau: frozen, like diverged
    stopped = torch.zeros(P, dtype=torch.bool, device=dev)
    steps_run = np.full(P, cfg.steps)
    recorded = taken = 0  # loss values recorded, optimisation steps taken
    last_good = [x.detach().clone(), l.detach().clone()]
    exact = ExactCheck(weights, labels, lo, hi, cfg, settings, dev, shape)

    loss_hist, fit_hist = np.zeros((P, cfg.steps)), np.zeros((P, cfg.steps))
    mon_steps: list[int] = []
    mon_vals: dict[str, list[np.ndarray]] = {}
    # The loop never waits for the device: each step's loss and fit, whether any setting still moves, and
    # the step each setting diverged at stay on the device and reach the host at monitor points (`flush`),
    # which replays them as if checked step by step: the same history, callbacks and stopping point.
    hist = torch.zeros(
        2, P, cfg.steps, dtype=torch.float32 if dev.type == "mps" else torch.float64, device=dev
    )
    any_moving = torch.ones(cfg.steps, dtype=torch.bool, device=dev)
    died_at = torch.full((P,), -1, dtype=torch.long, device=dev)
    flushed = 0  # steps whose record is on the host

    def run_monitor(step: int) -> None:
        mon_steps.append(step)
        state = [t.detach() for t in last_good]
        for key, values in exact.check(step, *state, alpha_factor(cfg, alpha, step)).items():
            mon_vals.setdefault(key, []).append(values)
        if monitor is not None:
            for key, values in monitor(step, state[0].cpu().numpy()).items():
                mon_vals.setdefault(key, []).append(np.asarray(values, dtype=float))

    def rule(at: int, window: int | None = None) -> np.ndarray:
        err = mon_vals.get("attack/error")
        errors = (np.asarray(mon_steps), np.stack(err, axis=1)) if err else None
        objective = (np.asarray(mon_steps), np.stack(mon_vals["attack/objective"], axis=1))
        window = window or cfg.plateau_window()
        return plateau(objective, errors, at, window, cfg.stop_tol, cfg.stop_floor) & ~exact.degraded()

    def flush(upto: int) -> bool:
        """Bring steps [flushed, upto) to the host and report them; False when no setting moved any more
        at one of them (the loop ends there: that step is recorded, not taken)."""
        nonlocal flushed, recorded, taken
        if upto <= flushed:
            return True
        chunk = hist[:, :, flushed:upto].cpu().numpy()
        still = any_moving[flushed:upto].cpu().numpy()
        died = died_at.cpu().numpy()
        dead = np.flatnonzero(~still)
        stop = flushed + int(dead[0]) if len(dead) else None
        end = upto if stop is None else stop + 1
        loss_hist[:, flushed:end] = chunk[0, :, : end - flushed]
        fit_hist[:, flushed:end] = chunk[1, :, : end - flushed]
        newly = (died >= flushed) & (died < end)
        steps_run[newly] = died[newly]
        first, flushed, recorded = flushed, end, end
        taken = end if stop is None else stop
        if on_step is not None:
            for s in range(first, taken):
                on_step(s, per_setting(loss_hist[:, s]))
        return stop is None

    def fall_back(step: int) -> None:
        """Every setting goes back to its best state, on the exact path, with fresh optimiser moments."""
        nonlocal fast
        fast = exact_loss(False, False)
        exact.fallback_step = step
        with torch.no_grad():
            for t, good, best in zip((x, l), last_good, exact.best_state(dtype, dev), strict=True):
                t.copy_(best)
                good.copy_(best)
        opt.reset()

    residual = {} if cfg.residual == "auto" else {"method": cfg.residual}

    def step_loss(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        loss, fit = fast(
            w,
            x,
            l,
            y,
            lam_scale=scale,
            lam_min=lam_min.view(P, 1),
            alpha=alpha_factor(cfg, alpha, step).view(P, 1, 1),
            lo=lo_t,
            hi=hi_t,
            lam_penalty=cfg.lam_penalty,
            box_penalty=cfg.box_penalty,
            norm=cfg.fit_norm,
            layers=cfg.fit_layers,
            **({"method": "explicit"} if exact.fallback_step >= 0 else residual),
            **({"pairs": "all"} if pairs else {}),
        )
        return loss + prior_terms(x, y, lo_t, cfg, shape), fit

    splitting = cfg.split_every > 0 and start is None
    if splitting and (n_out > 1 or not isinstance(weights, Weights)):
        from bench.errors import BenchInputError

        raise BenchInputError(
            "attack.split_every needs a binary MLP (one output, the closed form); fix: --set attack.split_every=0"
        )
    split_count = np.zeros(P, dtype=int)

    def per_setting(values: np.ndarray) -> np.ndarray:
        """(P R,) member values -> (P,): with restarts, the lowest among a setting's restarts."""
        return values if R == 1 else np.nanmin(values.reshape(-1, R), axis=1)

    def split_step(step: int) -> np.ndarray:
        """Sample splitting at `step` (bench.attack.splitting), from the state just checked."""
        a = alpha_factor(cfg, alpha, step).view(P, 1, 1)

        def objective(xs: torch.Tensor, ls: torch.Tensor) -> torch.Tensor:
            return exact.evaluate(xs, ls, a.view(-1))[0].cpu()

        done = split(w, x.data, l.data, y, scale, a, cfg, objective)
        with torch.no_grad():
            for good, t in zip(last_good, (x, l), strict=True):
                good.copy_(t)
        opt.reset()
        return done.cpu().numpy()

    for step in range(cfg.steps):
        checked = step % cfg.eval_every == 0
        if checked:
            if not flush(step):
                break
            run_monitor(step)
            if cfg.stop == "plateau" and step > 0:
                newly = torch.as_tensor(rule(step), device=dev) & alive & ~stopped
                stopped |= newly
                steps_run[newly.cpu().numpy()] = step
                if not (alive & ~stopped).any():
                    break
            if splitting and 0 < step < 0.8 * cfg.steps and step % cfg.split_every == 0:
                split_count += split_step(step)
        loss, fit = step_loss(step)
        if checked and exact.fallback_step < 0 and exact.gap_too_large(fit, alive & ~stopped):
            fall_back(step)
            loss, fit = step_loss(step)
        finite = torch.isfinite(loss.detach())
        died_at = torch.where(alive & ~finite & ~stopped, step, died_at)
        alive &= finite
        hist[0, :, step] = loss.detach()
        hist[1, :, step] = fit.detach()
        moving = alive & ~stopped
        any_moving[step] = moving.any()
        torch.where(moving, loss, torch.zeros_like(loss)).sum().backward()
        factor = lr_factor(cfg, step)
        for rate, base in zip(opt.lrs, base_lrs, strict=True):
            rate.copy_(base * factor)
        opt.step(moving, last_good)
    else:
        flush(cfg.steps)
    if not mon_steps or mon_steps[-1] != taken:
        run_monitor(taken)
    moving = (alive & ~stopped).cpu().numpy()
    steps_run[moving] = taken
    converged = (stopped.cpu().numpy() & ~exact.degraded()) | (moving & rule(taken))
    # the same rule over the last fifth of the step-size integral, at the end: under cosine decay the
    # default window (a fifth of the steps) sees an optimiser that has all but stopped moving
    # (per setting: one that a plateau stop ended early is judged on the steps it ran)
    converged_movement = converged.copy()
    for n in np.unique(steps_run):  # one evaluation per distinct end, not one per setting
        ends = steps_run == n
        converged_movement[ends] &= rule(int(n), movement_window(cfg, int(n)))[ends]

    steps = np.arange(recorded)
    loss_hist, fit_hist = loss_hist[:, :recorded], fit_hist[:, :recorded]
    curves = {"attack/loss": (steps, loss_hist), "attack/kkt_fit": (steps, fit_hist)}
    for key, values in mon_vals.items():
        curves[key] = (np.asarray(mon_steps), np.stack(values, axis=1))
    best_x, best_l = exact.best_state(dtype, dev)
    objective_relu, fit_relu, layers_relu = exact.evaluate(best_x, best_l, torch.full((P,), 1e9))
    fit_best = exact.evaluate(best_x, best_l, alpha_factor(cfg, alpha, taken))[1]
    result = AttackResult(
        x=best_x.cpu().numpy().copy(),
        y=labels,
        lam=(best_l * scale).cpu().numpy().copy(),
        settings=settings,
        curves=curves,
        diverged=(~alive).cpu().numpy(),
        seconds=time.perf_counter() - began,
        converged=converged,
        converged_movement=converged_movement,
        steps_run=steps_run,
        best_step=exact.best_step.copy(),
        degraded=exact.degraded(),
        fit_check_failed=exact.failed.copy(),
        fallback_step=exact.fallback_step,
        objective=exact.kept_objective.copy(),
        objective_relu=objective_relu.cpu().numpy(),
        fit_relu=fit_relu.cpu().numpy(),
        fit_best=fit_best.cpu().numpy(),
        fit_relu_layers=layers_relu.cpu().numpy(),
    )
    result.split_count = split_count if splitting else None
    return result if R == 1 else best_restarts(result, chosen_settings, R)


def restart_view(values: dict[str, np.ndarray], restarts: int) -> dict[str, np.ndarray]:
    """Monitor values of P R members (setting-major) -> P: the lowest among a setting's restarts (what a
    progress display or a streamed curve shows while the attack runs; the result keeps the chosen one's)."""
    if restarts == 1:
        return values
    return {k: np.nanmin(np.asarray(v, dtype=float).reshape(-1, restarts), axis=1) for k, v in values.items()}


def best_restarts(result: AttackResult, settings: list[dict[str, float]], R: int) -> AttackResult:
    """Of each setting's R restarts (population members s R .. s R + R - 1) the one with the lowest
    float64 objective; every per-member array of `result` cut to those."""
    objective = result.objective.reshape(len(settings), R)
    restart = np.argmin(np.where(np.isfinite(objective), objective, np.inf), axis=1)
    idx = np.arange(len(settings)) * R + restart
    changes = {
        "settings": settings,
        "restart": restart,
        "curves": {k: (t, v[idx]) for k, (t, v) in result.curves.items()},
    }
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if f.name not in changes and isinstance(value, np.ndarray) and f.name != "y":
            changes[f.name] = value[idx]
    return dataclasses.replace(result, **changes)
