"""Classifier training: full-batch gradient descent on the logistic loss (the attack's premise), or on the
cross-entropy for a C-class network (labels 0..C-1; Buzaglo et al.'s multiclass setting).

Knows nothing of MLflow: the loss curve is returned, and progress goes through a callback.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bench.config import ModelConfig, TrainConfig
from bench.models import MLP, SequentialNet, make_model


@dataclass
class TrainResult:
    """The trained model and its record. curve: (epochs (T,), train loss (T,))."""

    model: MLP | SequentialNet
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


def evaluate_classifier(model: MLP | SequentialNet, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(loss, accuracy) of `model` on centred inputs x (n, d) (computed on the model's device); labels y
    in {-1, +1} for a one-output model (logistic loss), class indices for a C-output one (cross-entropy)."""
    param = next(model.parameters())
    dtype, device = param.dtype, param.device
    with torch.no_grad():
        logits = model(torch.as_tensor(x, dtype=dtype, device=device))
        yt = torch.as_tensor(y, dtype=dtype, device=device)
        correct = (logits > 0) == (yt > 0) if logits.dim() == 1 else logits.argmax(-1) == yt.long()
        return float(classification_loss(logits, yt)), float(correct.double().mean())


def _stationarity(model: MLP | SequentialNet, wd: float) -> float:
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
    image_shape: tuple[int, int] | None = None,
) -> TrainResult:
    """Train a fresh network (`model_cfg.arch`: an MLP, or a CNN on images of `image_shape`) on centred
    inputs x (n, d) with labels y (n,) in {-1, +1} (`n_classes` None: one output, logistic loss) or, given
    `n_classes` = C, class indices 0..C-1 (C outputs, cross-entropy).

    Runs until the training loss is below `cfg.target_loss` (or, with `cfg.weight_decay` > 0, the
    regularised objective is stationary) and then `cfg.extra_epochs` more, or for `cfg.max_epochs`
    without reaching it (metrics `reached_target`, `train_extra_epochs`; with weight decay also
    `train_stationarity`, see `_stationarity`). Raises if the loss
    becomes non-finite (lower `train.lr`). `device`: where to train (a name as in bench.device, or a
    torch.device); the weights are initialised on the CPU and moved, so every device starts alike. The
    losses reach the host at log points only (every `cfg.log_every` epochs; see the loop).
    """
    from bench.device import resolve_device

    if cfg.dp:
        check_dp(cfg, len(x))
    start = time.perf_counter()
    dev = resolve_device(device)
    dtype = torch.float64 if cfg.dtype == "float64" else torch.float32
    if dev.type == "mps" and dtype == torch.float64:
        from bench.errors import BenchInputError

        raise BenchInputError(
            "train.dtype=float64 on device mps: MPS has no float64; fix: --set train.dtype=float32"
        )
    n_out = 1 if n_classes is None else n_classes
    model = make_model(
        model_cfg, x.shape[1], cfg.init_scale, seed, dtype, n_out, image_shape, cfg.init_hidden
    ).to(dev)
    xt = torch.as_tensor(x, dtype=dtype, device=dev)
    yt = torch.as_tensor(y, dtype=dtype, device=dev)
    wd = cfg.weight_decay  # SGD's weight_decay adds wd * theta to every gradient: (wd/2)||theta||^2
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, weight_decay=wd)
    if cfg.dp:
        epochs, losses, dp_metrics = _train_dp(model, xt, yt, opt, cfg, seed, on_epoch)
        return _finish(
            model, x, y, x_test, y_test, xt, yt, cfg, epochs, losses, cfg.dp_epochs, 0, start, dp_metrics
        )
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
    return _finish(model, x, y, x_test, y_test, xt, yt, cfg, epochs, losses, epoch, reached, start)


def _finish(
    model: MLP | SequentialNet,
    x: np.ndarray,
    y: np.ndarray,
    x_test: np.ndarray | None,
    y_test: np.ndarray | None,
    xt: torch.Tensor,
    yt: torch.Tensor,
    cfg: TrainConfig,
    epochs: list[int],
    losses: list[float],
    epoch: int,
    reached: int,
    start: float,
    dp_metrics: dict[str, float] | None = None,
) -> TrainResult:
    """The trained model's metrics. `reached`: the epoch the target was met (0: not met; under DP the
    target is judged on the final model, as the loop never stops on it)."""
    wd = cfg.weight_decay
    model.eval()
    train_loss, train_acc = evaluate_classifier(model, x, y)
    metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "train_epochs": float(epoch)}
    if x_test is not None and y_test is not None and len(x_test):
        metrics["test_loss"], metrics["test_accuracy"] = evaluate_classifier(model, x_test, y_test)
    stationarity = None
    if wd > 0:
        model.zero_grad(set_to_none=True)
        classification_loss(model(xt), yt).backward()
        stationarity = _stationarity(model, wd)
        metrics["train_stationarity"] = stationarity
        model.zero_grad(set_to_none=True)
        # the same in the Clarke sense: samples on a first-layer kink may take any derivative in [0, 1]
        # (weight decay's minimisers put many there, where the gradient never vanishes)
        clarke = clarke_stationarity_of(model, x, y, wd)
        metrics["train_stationarity_clarke"] = clarke
        if not reached and dp_metrics is None and clarke <= cfg.stationary_tol:
            reached = epoch
        stationarity = min(stationarity, clarke)
    if dp_metrics is not None:  # measured, not assumed: a DP model may (at large epsilon) meet the target
        met = train_loss < cfg.target_loss or (
            stationarity is not None and stationarity <= cfg.stationary_tol
        )
        reached = epoch if met else 0
        metrics |= dp_metrics
    metrics["reached_target"] = float(reached > 0)
    metrics["train_extra_epochs"] = float(epoch - reached if reached else 0)
    metrics["train/dp"] = float(cfg.dp)
    return TrainResult(
        model, (np.array(epochs), np.array(losses)), epoch, metrics, time.perf_counter() - start
    )


def clarke_stationarity_of(model: MLP, x: np.ndarray, y: np.ndarray, wd: float) -> float:
    """`bench.attack.truth.clarke_stationarity` of a trained MLP on its centred training set (float64)."""
    from bench.attack.kkt import Weights
    from bench.attack.truth import clarke_stationarity

    weights = Weights(tuple(model.weights()), model.first_bias())
    return clarke_stationarity(weights, x, y, wd)


# --- differentially private full-batch gradient descent ------------------------------------------------


def noise_multiplier(cfg: TrainConfig) -> float:
    """sigma for (cfg.dp_epsilon, cfg.dp_delta)-DP after cfg.dp_epochs full-batch steps (sampling rate 1),
    from Opacus's `get_noise_multiplier` with accountant `cfg.dp_accountant`; 0 for epsilon = inf.
    Raises ConfigError when no sigma reaches the budget."""
    from bench.errors import ConfigError

    if math.isinf(cfg.dp_epsilon):
        return 0.0
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus's notes on the alpha range and log(0) at q = 1
            return float(
                get_noise_multiplier(
                    target_epsilon=cfg.dp_epsilon,
                    target_delta=cfg.dp_delta,
                    sample_rate=1.0,
                    steps=cfg.dp_epochs,
                    accountant=cfg.dp_accountant,
                )
            )
    except ValueError as e:
        raise ConfigError(
            f"bad value {cfg.dp_epsilon!r} for 'train.dp_epsilon': Opacus finds no noise multiplier for it "
            f"({e}) with train.dp_delta={cfg.dp_delta:g}, train.dp_epochs={cfg.dp_epochs}; fix: a larger "
            "train.dp_epsilon or fewer train.dp_epochs"
        ) from None


def achieved_epsilon(sigma: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """epsilon of `steps` full-batch Gaussian steps of noise multiplier `sigma` at `delta`, by Opacus's
    accountant (`RDPAccountant` or `PRVAccountant`, history [(sigma, sample rate 1, steps)]); inf for sigma 0."""
    if sigma <= 0:
        return math.inf
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(sigma, 1.0, steps)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(acc.get_epsilon(delta))


def check_dp(cfg: TrainConfig, n: int) -> float:
    """Check a DP training config against a training set of n samples and return its sigma.

    Raises ConfigError (exit 2) when `dp_delta` >= 1/n (a delta that large allows releasing a whole
    sample) or when no sigma reaches the budget. Called before any model is trained."""
    from bench.errors import ConfigError

    if cfg.dp_delta >= 1.0 / n:
        raise ConfigError(
            f"bad value {cfg.dp_delta!r} for 'train.dp_delta': expected below 1/n = {1.0 / n:.3g} for the "
            f"n = {n} training samples; fix: --set train.dp_delta={min(1e-5, 0.1 / n):.1g}"
        )
    return noise_multiplier(cfg)


def per_sample_gradients(
    model: MLP | SequentialNet, x: torch.Tensor, y: torch.Tensor
) -> dict[str, torch.Tensor]:
    """{parameter name: (n, *shape)} gradients of each sample's logistic loss log(1 + exp(-y_i f(x_i))),
    by torch.func (functional_call + vmap + grad). x (n, d), y (n,) in {-1, +1}."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters()}

    def loss(p: dict[str, torch.Tensor], xi: torch.Tensor, yi: torch.Tensor) -> torch.Tensor:
        return F.softplus(-yi * functional_call(model, p, (xi.unsqueeze(0),))[0])

    return vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)


def dp_gradient(
    model: MLP | SequentialNet,
    x: torch.Tensor,
    y: torch.Tensor,
    clip: float,
    sigma: float,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One DP-GD gradient: (sum_i g_i min(1, C / ||g_i||) + N(0, (sigma C)^2 I)) / n, per parameter name,
    and the per-sample gradient norms (n,) before clipping. g_i: sample i's loss gradient over all
    parameters (one L2 norm across them); C = `clip` (inf: no clipping); noise drawn on the CPU from
    `generator` (the same numbers on every device)."""
    grads = per_sample_gradients(model, x, y)
    n = x.shape[0]
    norms = torch.sqrt(sum((g.reshape(n, -1) ** 2).sum(1) for g in grads.values()))
    scale = torch.clamp(clip / (norms + 1e-12), max=1.0) if math.isfinite(clip) else torch.ones_like(norms)
    out = {}
    for name, g in grads.items():
        total = torch.einsum("n,n...->...", scale, g)
        if sigma > 0:
            noise = torch.randn(total.shape, generator=generator, dtype=total.dtype)
            total = total + (sigma * clip) * noise.to(total.device)
        out[name] = total / n
    return out, norms


def _train_dp(
    model: MLP | SequentialNet,
    xt: torch.Tensor,
    yt: torch.Tensor,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    seed: int,
    on_epoch: Callable[[int, float], None] | None,
) -> tuple[list[int], list[float], dict[str, float]]:
    """`cfg.dp_epochs` DP-GD steps (weight decay, if any, through the optimiser: data-independent).
    Returns the logged epochs and losses (loss before the step of that epoch, every `log_every`) and
    the privacy record: `dp/epsilon` (Opacus's accountant for the sigma, steps and sampling rate 1 used),
    `dp/epsilon_target`, `dp/delta`, `dp/sigma`, `dp/clip`, `dp/steps`, `dp/clipped_frac` (share of
    per-sample gradients clipped, over all steps)."""
    n = xt.shape[0]
    sigma = check_dp(cfg, n)
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)  # the noise's own stream
    epochs, losses = [], []
    clipped = 0
    for e in range(1, cfg.dp_epochs + 1):
        if e == 1 or e % cfg.log_every == 0:
            with torch.no_grad():
                value = float(classification_loss(model(xt), yt))
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {e}: lower train.lr")
            epochs.append(e)
            losses.append(value)
            if on_epoch is not None:
                on_epoch(e, value)
        grads, norms = dp_gradient(model, xt, yt, cfg.dp_clip, sigma, gen)
        clipped += int((norms > cfg.dp_clip).sum())
        opt.zero_grad(set_to_none=True)
        for name, p in model.named_parameters():
            p.grad = grads[name]
        opt.step()
    eps = achieved_epsilon(sigma, cfg.dp_epochs, cfg.dp_delta, cfg.dp_accountant)
    record = {
        "dp/epsilon": eps,
        "dp/epsilon_target": cfg.dp_epsilon,
        "dp/delta": cfg.dp_delta,
        "dp/sigma": sigma,
        "dp/clip": cfg.dp_clip,
        "dp/steps": float(cfg.dp_epochs),
        "dp/clipped_frac": clipped / (n * cfg.dp_epochs),
    }
    return epochs, losses, record
