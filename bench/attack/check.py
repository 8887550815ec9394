"""The attack's float64 check at its monitor points (used by `bench.attack.reconstruct`).

Every `attack.eval_every` steps the state is re-scored in float64 with the explicit residual (a sum of
squares, by the network's own engine: closed form or autograd), whatever path the steps take: the
objective, the fit, the per-layer residual fractions. The check keeps each setting's state to return (the
latest within `attack.degrade_tol` of its best objective), says whether the fast path's fit of the same
state is off by more than `attack.fit_check_tol`, and whether a run ended worse than its best
(`degraded`).
"""

from __future__ import annotations

import numpy as np
import torch

from bench.attack.engine import layer_terms
from bench.attack.kkt import fit_from_terms, lambda_scale, penalties
from bench.attack.multiclass import multiclass_penalties
from bench.attack.network import Network
from bench.attack.priors import prior_terms
from bench.config import AttackConfig


class ExactCheck:
    """The float64 re-scoring at monitor points: objective, fit, per-layer residuals, the fast path's gap,
    and each setting's kept state: the latest within `degrade_tol` of its best objective (kept on the CPU
    or the device, in float64)."""

    def __init__(
        self,
        weights: Network,
        labels: np.ndarray,
        lo: np.ndarray,
        hi: np.ndarray,
        cfg: AttackConfig,
        settings: list[dict[str, float]],
        dev: torch.device,
        shape: tuple[int, int] | None = None,
    ) -> None:
        self.dev = dev if dev.type != "mps" else torch.device("cpu")  # no float64 on MPS
        self.cfg = cfg
        f64 = {"dtype": torch.float64, "device": self.dev}
        self.w = weights.to(torch.float64, self.dev)
        self.scale = lambda_scale(self.w, len(labels))
        self.y = torch.tensor(labels, **f64)
        self.n_out = weights.n_out
        self.pairs = cfg.pairs if self.n_out > 1 else "max"
        self.lo, self.hi = torch.as_tensor(lo, **f64), torch.as_tensor(hi, **f64)
        self.shape = shape
        self.lam_min = torch.tensor([s["lam_min"] for s in settings], **f64).view(-1, 1)
        P = len(settings)
        self.best_objective = np.full(P, np.inf)  # the lowest objective seen
        self.kept_objective = np.full(P, np.inf)  # the objective of the state kept (returned)
        self.best_step = np.zeros(P, dtype=int)
        self.current = np.full(P, np.inf)
        self.last_fit = np.full(P, np.nan)
        self.failed = np.zeros(P, dtype=bool)
        self.fallback_step = -1
        self.best: list[torch.Tensor] | None = None
        self.best_alpha: torch.Tensor | None = None

    def evaluate(
        self, x: torch.Tensor, l: torch.Tensor, alpha: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective (P,), fit (P,), per-layer residual fractions (P, L)) of a state, in float64."""
        x, l = x.to(self.dev, torch.float64), l.to(self.dev, torch.float64)
        alpha = alpha.to(self.dev, torch.float64).view(-1, 1, 1)
        with torch.no_grad():
            cfg = self.cfg
            if self.n_out == 1:
                terms = layer_terms(self.w, x, self.y, l * self.scale * self.y, alpha)
                pen = penalties(x, l, self.lam_min, self.lo, self.hi, cfg.lam_penalty, cfg.box_penalty)
            else:
                terms = layer_terms(self.w, x, self.y, l * self.scale, alpha, self.pairs)
                pen = multiclass_penalties(
                    x, l, self.y, self.lam_min, self.lo, self.hi, cfg.lam_penalty, cfg.box_penalty, self.pairs
                )
            fit = fit_from_terms(terms, self.w, cfg.fit_norm, layers=cfg.fit_layers)
            pen = pen + prior_terms(x, self.y, self.lo, cfg, self.shape)
        return fit + pen, fit, terms / self.w.layer_sq_norms()

    def check(
        self, step: int, x: torch.Tensor, l: torch.Tensor, alpha: torch.Tensor
    ) -> dict[str, np.ndarray]:
        """Score the current state, keep it where it beats the best, and return the curves' values."""
        objective, fit, layers = self.evaluate(x, l, alpha)
        if self.best is None:
            self.best = [x.to(self.dev, torch.float64).clone(), l.to(self.dev, torch.float64).clone()]
        elif self.cfg.alpha_final > 0:  # the objective moved with alpha: re-score the kept states
            self.kept_objective = self.evaluate(*self.best, alpha)[0].cpu().numpy()
            self.best_objective = self.kept_objective.copy()
        obj = objective.cpu().numpy()
        obj = np.where(np.isfinite(obj), obj, np.inf)
        self.best_objective = np.minimum(self.best_objective, obj)
        # keep the latest state within `degrade_tol` of the best: the objective is nearly flat late in a
        # run (most of it is the part of theta no gradient sum explains) while the candidates still
        # improve, so its last digits should not pick an older state
        keep = obj <= self.best_objective + self.cfg.degrade_tol * np.abs(self.best_objective)
        if keep.any():
            mask = torch.as_tensor(keep, device=self.dev)
            for kept, cur in zip(self.best, (x, l), strict=True):
                cur = cur.to(self.dev, torch.float64)
                kept.copy_(torch.where(mask.view(-1, *([1] * (cur.dim() - 1))), cur, kept))
            self.kept_objective = np.where(keep, obj, self.kept_objective)
            self.best_step = np.where(keep, step, self.best_step)
        self.current = obj
        self.last_fit = fit.cpu().numpy()
        out = {"attack/objective": obj, "attack/fit_check": self.last_fit}
        for i, col in enumerate(layers.cpu().numpy().T):
            out[f"attack/kkt_fit_layer{i + 1}"] = col
        return out

    def gap_too_large(self, fast_fit: torch.Tensor, moving: torch.Tensor) -> bool:
        """Whether the fast path's fit of the state just checked is off by more than the tolerance in a
        setting that still moves (marks those settings `failed`)."""
        fast = fast_fit.detach().double().cpu().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.abs(fast - self.last_fit) / np.maximum(np.abs(self.last_fit), 1e-12)
        bad = moving.cpu().numpy() & np.isfinite(self.last_fit) & ~(gap <= self.cfg.fit_check_tol)
        self.failed |= bad
        return bool(bad.any())

    def degraded(self) -> np.ndarray:
        """(P,) the last checked state is worse than the best by more than `degrade_tol` (relative)."""
        tol = self.cfg.degrade_tol
        return self.current > self.best_objective + tol * np.abs(self.best_objective)

    def best_state(self, dtype: torch.dtype, dev: torch.device) -> list[torch.Tensor]:
        assert self.best is not None, "no monitor point has run"
        return [t.to(dev, dtype) for t in self.best]
