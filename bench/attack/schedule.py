"""The attack's schedules and its stopping rule (`bench.attack.reconstruct`): the step size over the run, the
surrogate slope's annealing, and the plateau rule that says when a setting has stopped improving."""

from __future__ import annotations

import math

import numpy as np
import torch

from bench.config import AttackConfig


def lr_factor(cfg: AttackConfig, step: int) -> float:
    """The step-size multiplier of `cfg.schedule` at `step` (linear warm-up over `cfg.warmup` steps, at
    most a tenth of the run)."""
    warmup = min(cfg.warmup, cfg.steps // 10)
    if step < warmup:
        return (step + 1) / warmup
    if cfg.schedule == "cosine":
        progress = (step - warmup) / max(1, cfg.steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return 0.1 if step >= 2 * cfg.steps // 3 else 1.0
    return 1.0


def movement_window(cfg: AttackConfig, upto: int | None = None, share: float = 0.2) -> int:
    """Steps back from step `upto` (default: the end of the run) to where the remaining step-size integral
    of the steps run (`lr_factor` summed over [0, upto)) is `share` of it: a fifth of the steps for a
    constant step size without warm-up; 2,555 of 5,000 under the default cosine decay (100 steps of
    warm-up), whose last fifth of the steps carries only ~1.3% of the integral. An attack that a plateau
    stop ended early is judged on the steps it ran."""
    n = max(1, min(cfg.steps, upto if upto is not None else cfg.steps))
    f = np.array([lr_factor(cfg, s) for s in range(n)])
    remaining = np.cumsum(f[::-1])[::-1]  # remaining[s]: the integral from step s to `upto`
    return max(1, n - int(np.argmax(remaining <= share * f.sum())))


def alpha_factor(cfg: AttackConfig, alpha: torch.Tensor, step: int) -> torch.Tensor:
    """The surrogate's slope at `step`: `alpha` (P,), annealed geometrically to `cfg.alpha_final`."""
    if cfg.alpha_final <= 0:
        return alpha
    return alpha * (cfg.alpha_final / alpha) ** (step / cfg.steps)


def plateau(
    objective: tuple[np.ndarray, np.ndarray],
    errors: tuple[np.ndarray, np.ndarray] | None,
    at: int,
    window: int,
    tol: float,
    floor: float = 1.0,
) -> np.ndarray:
    """The plateau rule: (P,) True where a setting has stopped improving by step `at`.

    objective: (monitor steps (K,), values (P, K)) of the exact objective; errors: the same for the
    monitored primary error (lower is better), or None. Improvement is measured on the best value so far,
    from the best before `at - window` to the best up to `at`, and both must be below `tol`:
    - the error's relative to itself (errors have no common scale: ncc_dist, l2, DSSIM);
    - the objective's relative to max(|best before|, `floor`); with the default 1 the convention of
      scipy's L-BFGS-B `ftol` (0: relative to itself, the rule before 2026-12-04). The
      objective is a fraction of ||theta||^2 (1: the random start explains nothing), so below 1 this is an
      absolute drop of that fraction. A drop relative to the objective alone asks ever finer fits of an
      attack whose fit nears 0: at n = 25 a fit of 0.003 still falls by ~1.5% a window at 10,000 steps,
      a change of 5e-5 of ||theta||^2, and no attack of the study's paper design converged.
    False everywhere until a monitor point after step 0 lies before the window: the state at step 0 is the
    random start, and a drop measured from it says that an attack moved, not that it stopped. (Whether the
    current state is at its best is `degraded`'s part, see `reconstruct`.)
    """
    steps, values = objective
    P = values.shape[0]
    if not ((steps > 0) & (steps <= at - window)).any():
        return np.zeros(P, dtype=bool)

    def drop(values: np.ndarray, steps: np.ndarray, floor: float) -> np.ndarray:
        v = np.where(np.isfinite(values), values, np.inf)
        upto = steps <= at
        before, now = v[:, steps <= at - window].min(axis=1), v[:, upto].min(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = (before - now) / np.maximum(np.abs(before), floor)
        return np.where(np.isfinite(out), out, np.inf)

    ok = drop(values, steps, max(floor, 1e-30)) < tol
    if errors is not None and len(errors[0]):
        ok &= drop(errors[1], errors[0], 1e-30) < tol
    return ok
