"""`bench perf --time-to-quality STEPS`: bench's attack raced against the reference procedure (Haim et al.'s
loss, float64 double backward, SGD momentum) on one trained blob model: the wall time each takes to reach
the reference's best quality (split from `bench.perf`)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from dataclasses import asdict, dataclass

import torch


@dataclass
class QualityRace:
    """Wall time (s, evaluation excluded) for each procedure to reach the reference's best quality."""

    metric: str
    target: float
    reference_steps: int
    reference_s_to_target: float
    reference_s_total: float
    bench_steps_to_target: int | None
    bench_s_to_target: float | None
    speedup: float | None
    reference_curve: list[tuple[int, float, float]]  # (step, seconds, quality)
    bench_curve: list[tuple[int, float, float]]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def time_to_quality(
    task: str = "blobs-rect",
    profile: str = "quick",
    series_value: int = 25,
    seed: int = 0,
    reference_steps: int = 5000,
    reference_settings: dict[str, float] | None = None,
    eval_every: int = 250,
    bench_eval_every: int = 25,
    threads: int = 1,
    device: str = "cpu",
) -> QualityRace:
    """Race bench's default attack against the reference procedure on one trained blob model.

    Reference: Haim et al.'s loss (`bench.attack.reference.haim_loss`, weights as trained, float64 double
    backward), SGD momentum 0.9 for x and lambda (lambda lr 1e-4), at their published MNIST winners
    (init 0.035, lr 0.0305, lam_min 0.447, alpha 149.9) unless `reference_settings` says otherwise, for
    `reference_steps` steps. Target: the best `dssim_topk` (mean of the 10 best DSSIMs) it reaches. bench:
    the task's attack config until it reaches the target (or its own step budget runs out).
    """
    import numpy as np

    from bench.attack.reconstruct import n_candidates, reconstruct
    from bench.attack.reference import haim_loss
    from bench.device import synchronize
    from bench.evaluate import Scorer
    from bench.experiment import prepare, resolve_config
    from bench.tasks import get_task

    cfg = resolve_config(get_task(task), profile, {"device": device, "threads": threads}, series_value, seed)
    prep = prepare(cfg)  # sets the thread count
    dev = prep.weights.mats[0].device
    data, mean, w = prep.data, prep.mean, prep.weights
    xc = data.x_train - mean
    scorer = Scorer(data.x_train, data.y_train, data.image_shape, cfg.eval, data.lo, data.hi)

    def quality(x: np.ndarray) -> float:
        return scorer.scores(x + mean, per_class=False)[0]["dssim_topk"]

    rs = {"init_scale": 0.035, "lr": 0.0305, "lam_min": 0.447, "alpha": 149.9} | (reference_settings or {})
    m = n_candidates(cfg.attack.m_factor, len(xc))
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(m, xc.shape[1], generator=g, dtype=torch.float64) * rs["init_scale"]
    x = x0.to(dev).requires_grad_()
    lam = torch.rand(m, generator=g, dtype=torch.float64).to(dev).requires_grad_()
    y = torch.where(torch.arange(m) < m // 2, -1.0, 1.0).to(dev, torch.float64)
    w64 = w.to(torch.float64)
    opt = torch.optim.SGD([{"params": [x], "lr": rs["lr"]}, {"params": [lam], "lr": 1e-4}], momentum=0.9)
    ref_curve, elapsed = [], 0.0
    for step in range(reference_steps + 1):
        if step % eval_every == 0 or step == reference_steps:
            ref_curve.append((step, elapsed, quality(x.detach().cpu().numpy())))
        if step == reference_steps:
            break
        t0 = time.perf_counter()
        opt.zero_grad()
        haim_loss(w64, x, lam, y, rs["alpha"], rs["lam_min"]).backward()
        opt.step()
        synchronize(dev)
        elapsed += time.perf_counter() - t0
    finite = [c for c in ref_curve if np.isfinite(c[2])]
    target = min(q for _, _, q in finite)
    ref_s_to_target = next(s for _, s, q in finite if q <= target)

    # bench: normalised weights and its own defaults; the monitor's time is excluded from the clock.
    wn = w.margin_normalized(prep.min_margin)
    bench_curve: list[tuple[int, float, float]] = []
    clock = {"start": time.perf_counter(), "eval": 0.0}

    class _Reached(Exception):
        pass

    def monitor(step: int, xs: np.ndarray) -> dict[str, np.ndarray]:
        t0 = time.perf_counter()
        attack_seconds = t0 - clock["start"] - clock["eval"]
        q = quality(xs[0])
        clock["eval"] += time.perf_counter() - t0
        bench_curve.append((step, attack_seconds, q))
        if q <= target:
            raise _Reached
        return {"dssim_topk": np.array([q])}

    acfg = dataclasses.replace(
        cfg.attack, eval_every=bench_eval_every, steps=max(cfg.attack.steps, reference_steps)
    )
    lo, hi = -mean, 1.0 - mean
    with contextlib.suppress(_Reached):
        reconstruct(wn, len(xc), lo, hi, acfg, seed, monitor=monitor, device=dev)
    hit = next(((s, t) for s, t, q in bench_curve if q <= target), None)
    return QualityRace(
        metric="dssim_topk",
        target=float(target),
        reference_steps=reference_steps,
        reference_s_to_target=ref_s_to_target,
        reference_s_total=elapsed,
        bench_steps_to_target=hit[0] if hit else None,
        bench_s_to_target=hit[1] if hit else None,
        speedup=(ref_s_to_target / hit[1]) if hit and hit[1] > 0 else None,
        reference_curve=ref_curve,
        bench_curve=bench_curve,
    )
