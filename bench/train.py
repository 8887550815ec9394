"""Classifier training: full-batch gradient descent on the logistic loss (the attack's premise), or on the
cross-entropy for a C-class network (labels 0..C-1; Buzaglo et al.'s multiclass setting).

Knows nothing of MLflow: the loss curve is returned, and progress goes through a callback.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.config import ModelConfig, TrainConfig
from bench.models import MLP, make_mlp


@dataclass
class TrainResult:
    """The trained model and its record. curve: (epochs (T,), train loss (T,))."""

    model: MLP
    curve: tuple[np.ndarray, np.ndarray]
    epochs: int
    metrics: dict[str, float]
    seconds: float


def logistic_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean log(1 + exp(-y f)), y in {-1, +1} (= BCE-with-logits on {0, 1} labels)."""
    return F.softplus(-y * logits).mean()


def classification_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss the output's shape calls for: logistic on logits (n,) with y in {-1, +1}; mean cross-entropy
    on logits (n, C) with y (n,) class indices 0..C-1."""
    return logistic_loss(logits, y) if logits.dim() == 1 else F.cross_entropy(logits, y.long())


def margins_of(logits: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-sample margins (n,): y f(x) for logits (n,) and y +-1; Phi_y(x) - max_{j != y} Phi_j(x) for
    logits (n, C) and class indices y (the quantity the multiclass max-margin problem bounds below by 1)."""
    f = np.asarray(logits.detach().cpu() if isinstance(logits, torch.Tensor) else logits, dtype=np.float64)
    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)
    if f.ndim == 1:
        return y * f
    rows, own = np.arange(len(f)), y.astype(np.int64)
    others = f.copy()
    others[rows, own] = -np.inf
    return f[rows, own] - others.max(axis=1)


def evaluate_classifier(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of `model` on centred inputs x (n, d) (computed on the model's device); labels y
    in {-1, +1} for a one-output model (logistic loss), class indices for a C-output one (cross-entropy)."""
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=dtype, device=device))
        yt = torch.as_tensor(y, dtype=dtype, device=device)
        correct = (logits > 0) == (yt > 0) if logits.dim() == 1 else logits.argmax(-1) == yt.long()
        return float(classification_loss(logits, yt)), float(correct.double().mean())


def _stationarity(model: MLP, wd: float) -> float:
    """||grad L + wd theta|| / ||wd theta||: relative stationarity of the regularised objective, from the
    data-loss gradients in `.grad` (0 at a stationary point; bench.attack.kkt.stationarity_residual is the
    same quantity, written as the KKT condition)."""
    num = den = 0.0
    with torch.no_grad():
        for p in model.parameters():
            num += float(((p.grad + wd * p) ** 2).sum())
            den += float(((wd * p) ** 2).sum())
    return (num / den) ** 0.5 if den > 0 else float("inf")


def train_classifier(
    x: np.ndarray,
    y: np.ndarray,
    model_cfg: ModelConfig,
    cfg: TrainConfig,
    seed: int,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    device: str | torch.device = "cpu",
    n_classes: int | None = None,
) -> TrainResult:
    """Train a fresh MLP on centred inputs x (n, d) with labels y (n,) in {-1, +1} (`n_classes` None: one
    output, logistic loss) or, given `n_classes` = C, class indices 0..C-1 (C outputs, cross-entropy).

    Runs until the training loss is below `cfg.target_loss` (or, with `cfg.weight_decay` > 0, the
    regularised objective is stationary) and then `cfg.extra_epochs` more, or for `cfg.max_epochs`
    without reaching it (metrics `reached_target`, `train_extra_epochs`; with weight decay also
    `train_stationarity`, see `_stationarity`). Raises if the loss
    becomes non-finite (lower `train.lr`). `device`: where to train (a name as in bench.device, or a
    torch.device); the weights are initialised on the CPU and moved, so every device starts alike. The
    losses reach the host at log points only (every `cfg.log_every` epochs; see the loop).
    """
    from bench.device import resolve_device

    start = time.perf_counter()
    dev = resolve_device(device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    if dev.type == "mps" and dtype == torch.float64:
        from bench.errors import BenchInputError

        raise BenchInputError(
            "train.dtype=float64 on device mps: MPS has no float64; fix: --set train.dtype=float32"
        )
    model = make_mlp(
        x.shape[1],
        model_cfg.depth,
        model_cfg.width,
        model_cfg.bias,
        cfg.init_scale,
        seed,
        dtype,
        n_out=1 if n_classes is None else n_classes,
    ).to(dev)
    xt = torch.as_tensor(x, dtype=dtype, device=dev)
    yt = torch.as_tensor(y, dtype=dtype, device=dev)
    wd = cfg.weight_decay  # SGD's weight_decay adds wd * theta to every gradient: (wd/2)||theta||^2
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=wd)
    epochs, losses = [], []
    epoch, reached, stop_at = 0, 0, cfg.max_epochs  # reached: the epoch the target was met (0: not yet)
    params = list(model.parameters())
    while epoch < stop_at:
        # One chunk: the epochs up to the next log point (or the known stop) run without reading the
        # loss; their losses reach the host once, at the chunk's end, and the stopping rule reads them
        # epoch by epoch as if it had each time. A stop inside the chunk (the target met, extra_epochs
        # short) rewinds to the chunk's start and reruns the steps before it: the same model, curve and
        # callbacks as a loop that reads the loss every epoch, without waiting for the device each time.
        first, last = epoch + 1, min(stop_at, (epoch // cfg.log_every + 1) * cfg.log_every)
        saved = [p.detach().clone() for p in params]
        saved_opt = copy.deepcopy(opt.state_dict())
        values = []
        for e in range(first, last + 1):
            opt.zero_grad(set_to_none=True)
            loss = classification_loss(model(xt), yt)
            values.append(loss.detach())
            if e < last:
                loss.backward()
                opt.step()
        stop = None
        for e, value in zip(range(first, last + 1), torch.stack(values).cpu().tolist(), strict=True):
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {e}: lower train.lr")
            if not reached and value < cfg.target_loss:
                reached, stop_at = e, e + cfg.extra_epochs
            if e % cfg.log_every == 0 or e in (1, reached, stop_at):
                epochs.append(e)
                losses.append(value)
                if on_epoch is not None:
                    on_epoch(e, value)
            if e >= stop_at:
                stop = e
                break
        if stop is not None:
            epoch = stop
            if stop < last:  # rewind: the model is the one after stop - 1 steps
                with torch.no_grad():
                    for p, kept in zip(params, saved, strict=True):
                        p.copy_(kept)
                opt.load_state_dict(saved_opt)
                for _ in range(first, stop):
                    opt.zero_grad(set_to_none=True)
                    classification_loss(model(xt), yt).backward()
                    opt.step()
            break
        epoch = last
        loss.backward()
        check = wd > 0 and not reached and epoch % cfg.log_every == 0
        if check and _stationarity(model, wd) <= cfg.stationary_tol:  # the regularised problem's target
            reached, stop_at = epoch, epoch + cfg.extra_epochs
            if epoch >= stop_at:
                break
        opt.step()
    model.eval()
    train_loss, train_acc = evaluate_classifier(model, x, y)
    metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "train_epochs": float(epoch)}
    if x_test is not None and y_test is not None and len(x_test):
        metrics["test_loss"], metrics["test_accuracy"] = evaluate_classifier(model, x_test, y_test)
    metrics["reached_target"] = float(reached > 0)
    metrics["train_extra_epochs"] = float(epoch - reached if reached else 0)
    if wd > 0:
        model.zero_grad(set_to_none=True)
        classification_loss(model(xt), yt).backward()
        metrics["train_stationarity"] = _stationarity(model, wd)
        model.zero_grad(set_to_none=True)
    return TrainResult(
        model, (np.array(epochs), np.array(losses)), epoch, metrics, time.perf_counter() - start
    )
