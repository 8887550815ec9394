"""`bench perf`: the attack step's speed against the reference formulation and the machine's GEMM peak.

On identical inputs (a random MLP d -> H^(depth-1) -> 1, or with `arch="cnn"` a random CNN on sqrt(d) x
sqrt(d) images; candidates x (P, m, d), multipliers l (P, m)):
- bench's step: the attack loss forward + backward into x and l only, in the chosen dtype, for a
  population of P settings at once, by the chosen engine (`engine`, as `attack.engine`: "closed" the
  closed form, each layer's residual by the route `attack.residual` gives it in that dtype, printed per
  layer: the attack's default "auto" is the Gram expansion where it needs fewer FLOPs, explicit in
  bfloat16; "autograd" bench.attack.engine's double backward; "auto" the closed form for an MLP);
- the reference formulation (Haim et al.'s code): autograd double backward of the same loss in float64,
  with the parameters as leaves that require grad, so the outer backward fills their (unused) gradients;
  for P > 1 it runs the P settings one after another;
- a plain (m, H) @ (H, H) matmul in the same dtype: the machine's GEMM rate at this shape ("peak").
FLOPs per step come from `bench.attack.kkt.flops_per_step` (checked against torch's FLOP counter in the
tests) for the closed form, and from torch's FLOP counter on one step for the autograd engine. The
reference is timed on MLPs only. Times are medians over `repeats` after `warmup` steps. Everything runs on `device` (`--device`;
on a GPU the peak is the GPU's GEMM rate and each timing waits for the GPU to finish); the random inputs
are drawn on the CPU and moved.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from bench.attack.engine import as_engine, from_module, loss_function_for
from bench.attack.kkt import Weights, flops_per_step, lambda_scale, residual_routes, step_method
from bench.attack.multiclass import multiclass_flops_per_step
from bench.attack.network import Network
from bench.attack.reference import reference_fit, reference_multiclass_fit

# the values `bench perf`'s options take (`check_choices`)
CHOICES = {
    "dtype": ("float32", "float64", "bfloat16"),
    "residual": ("explicit", "gram", "auto"),
    "arch": ("mlp", "cnn"),
    "engine": ("auto", "closed", "autograd"),
    "pool": ("avg", "max", "none"),
}


def check_choices(**values: str) -> None:
    """BenchInputError naming the option (`--dtype` ...) whose value is not one of `CHOICES`."""
    from bench.errors import BenchInputError

    for name, value in values.items():
        if value not in CHOICES[name]:
            raise BenchInputError(f"bad --{name} '{value}': use {', '.join(CHOICES[name])}")


@dataclass
class PerfReport:
    depth: int
    width: int
    d: int
    n: int
    m: int
    population: int
    dtype: str
    threads: int
    flops_per_step: int
    s_per_step: float
    gflops: float
    gemm_gflops: float
    fraction_of_peak: float
    reference_s_per_step: float | None
    reference_flops_per_step: int
    speedup_vs_reference: float | None
    sequential_s_per_step: float | None
    population_speedup: float | None
    peak_rss_mb: float
    device: str = "cpu"
    device_model: str = ""
    compiled: bool = False
    classes: int = 1  # network outputs: 1 binary (Haim et al.), C >= 2 multiclass (Buzaglo et al.)
    residual: str = "auto"  # attack.residual asked for
    routes: str = ""  # the route each layer's residual took, comma-separated (layer 1 first)
    arch: str = "mlp"  # "mlp" (depth, width) or "cnn" (`model`)
    engine: str = "closed"  # the engine that formed the residual: "closed" or "autograd"
    model: str = ""  # the network in words

    def as_dict(self) -> dict[str, float | int | str | None]:
        return asdict(self)


def _median_time(
    fn: Callable[[], None], repeats: int, warmup: int, device: torch.device | None = None
) -> float:
    """Median wall time (s) of fn() over `repeats` calls, waiting for `device`'s queued work each time."""
    from bench.device import synchronize

    device = device or torch.device("cpu")
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def random_weights(
    d: int,
    depth: int,
    width: int,
    dtype: torch.dtype,
    seed: int = 0,
    device: torch.device | str = "cpu",
    n_out: int = 1,
) -> Weights:
    """A PyTorch-default-initialised MLP's weights (scale does not change the cost), drawn on the CPU;
    `n_out` outputs (1: binary)."""
    g = torch.Generator().manual_seed(seed)
    sizes = [d] + [width] * (depth - 1) + [n_out]
    mats = tuple(
        ((torch.rand(sizes[i + 1], sizes[i], generator=g, dtype=dtype) * 2 - 1) / sizes[i] ** 0.5).to(device)
        for i in range(depth)
    )
    return Weights(mats)


def random_cnn(
    d: int,
    channels: tuple[int, ...],
    kernel: int,
    pool: str,
    dtype: torch.dtype,
    seed: int = 0,
    device: torch.device | str = "cpu",
    n_out: int = 1,
) -> Network:
    """A PyTorch-default-initialised `bench.models.CNN` on sqrt(d) x sqrt(d) images, as the engine sees it."""
    from bench.config import ModelConfig
    from bench.errors import BenchInputError
    from bench.models import make_model

    side = round(d**0.5)
    if side * side != d:
        raise BenchInputError(f"--arch cnn: --d {d} is not a square image; fix: e.g. --d 784 (28x28)")
    cfg = ModelConfig(arch="cnn", channels=channels, kernel=kernel, pool=pool)
    model = make_model(cfg, d, 0.1, seed, dtype, n_out, (side, side)).to(device)
    return from_module(model, d)


def reference_flops(d: int, widths: list[int], m: int, classes: int = 1) -> int:
    """FLOPs of the reference step as its autograd computes it (after facts.md's count for d -> H -> H -> 1,
    2m(6dH + 9H^2 + 7H)): 6 per first-layer weight, 9 per hidden-to-hidden weight, 7 per output weight
    (`classes` outputs: 7 per weight of the C x H output layer, an extrapolation of the same count)."""
    sizes = [d, *widths]
    first = d * widths[0]
    hidden = sum(sizes[i] * sizes[i + 1] for i in range(1, len(widths)))
    return int(2 * m * (6 * first + 9 * hidden + 7 * widths[-1] * classes))


def step_fn(
    w: Network,
    x: torch.Tensor,
    l: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    method: str = "auto",
    mixed: bool = False,
    compiled: bool = False,
) -> Callable[[], None]:
    """One bench step (loss + backward into x and l) on fixed inputs, by `w`'s engine (closed-form
    `Weights` or a `ModuleNet`); `mixed`: bf16 matrix products; `compiled`: through torch.compile (see
    bench.attack.kkt.loss_function)."""
    scale = lambda_scale(w, x.shape[-2])
    d = x.shape[-1]
    lo = -torch.ones(d, dtype=x.dtype, device=x.device)
    hi = torch.ones(d, dtype=x.dtype, device=x.device)

    loss_fn = loss_function_for(w)(mixed, compiled)
    # the binary closed form has two routes; the multiclass one and the engine are explicit
    extra = {"method": method} if isinstance(w, Weights) and w.n_out == 1 else {}

    def step() -> None:
        loss, _ = loss_fn(w, x, l, y, lam_scale=scale, lam_min=0.1, alpha=alpha, lo=lo, hi=hi, **extra)
        loss.sum().backward()
        x.grad = None
        l.grad = None

    return step


def _counted_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of `step`, by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def reference_step_fn(
    w: Weights, x: torch.Tensor, l: torch.Tensor, y: torch.Tensor, alpha: float
) -> Callable[[], None]:
    """One reference step (double backward, float64, gradients into the parameters as well)."""
    w64 = w.to(torch.float64)
    x64 = x.detach().to(torch.float64).requires_grad_()
    l64 = l.detach().to(torch.float64).requires_grad_()
    scale = float(lambda_scale(w64, x.shape[-2]))

    def step() -> None:
        if w64.mats[-1].shape[0] == 1:
            fit = reference_fit(w64, x64, l64 * scale * y.to(torch.float64), alpha)
        else:
            fit = reference_multiclass_fit(w64, x64, y, l64 * scale, alpha)
        loss = (
            fit
            + 5.0 * torch.relu(0.1 - l64).pow(2).sum()
            + (torch.relu(x64 - 1) ** 2 + torch.relu(-1 - x64) ** 2).sum()
        )
        loss.backward()
        x64.grad = None
        l64.grad = None

    return step


def measure(
    depth: int = 3,
    width: int = 1000,
    d: int = 784,
    n: int = 100,
    m: int | None = None,
    dtype: str = "float32",
    threads: int = 1,
    population: int = 1,
    repeats: int = 5,
    warmup: int = 2,
    reference: bool = True,
    sequential: bool = True,
    method: str = "auto",
    device: str | torch.device = "cpu",
    compiled: bool = False,
    classes: int = 1,
    arch: str = "mlp",
    engine: str = "auto",
    channels: tuple[int, ...] | str = (64,),
    kernel: int = 3,
    pool: str = "none",
) -> PerfReport:
    """Time bench's step, the reference step and the GEMM peak on one configuration, on `device`
    (the reference step needs float64 and is skipped on MPS, which has none, and for a CNN). `classes`:
    1 times the binary attack; C >= 2 the multiclass one (pairs "max") on a C-output network. `arch`:
    "mlp" (`depth`, `width`) or "cnn" (`channels`, `kernel`, `pool`, on sqrt(d) x sqrt(d) images);
    `engine`: "auto" | "closed" | "autograd" (as attack.engine); `channels` also as text ("32,32").
    `method`: `attack.residual` (the attack's default "auto"), applied as the attack applies it
    (`bench.attack.kkt.step_method`: explicit under bfloat16 unless "gram" is asked for).
    Bad choices raise BenchInputError naming the option."""
    from bench.attack.reconstruct import candidate_labels
    from bench.device import device_model, resolve_device
    from bench.errors import BenchInputError

    check_choices(dtype=dtype, residual=method, arch=arch, engine=engine, pool=pool)
    if isinstance(channels, str):
        try:
            channels = tuple(int(c) for c in channels.split(","))
        except ValueError:
            raise BenchInputError(f"bad --channels '{channels}': use positive integers, e.g. 32,32") from None
    dev = resolve_device(device)
    torch.set_num_threads(threads)
    tdtype = torch.float64 if dtype == "float64" else torch.float32
    gemm_dtype = torch.bfloat16 if dtype == "bfloat16" else tdtype  # bfloat16: mixed, as the attack runs it
    m = m or 2 * n
    mixed = dtype == "bfloat16"
    route = step_method(method, mixed)
    if arch == "cnn":
        w = as_engine(random_cnn(d, channels, kernel, pool, tdtype, device=dev, n_out=classes), engine)
        model = f"cnn {','.join(map(str, channels))} k{kernel} pool {pool}"
    else:
        mlp = random_weights(d, depth, width, tdtype, device=dev, n_out=classes)
        w = as_engine(mlp, engine)
        model = f"mlp {d}-{width}x{depth - 1}-{classes}"
    closed = isinstance(w, Weights)
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(population, m, d, generator=g, dtype=tdtype) * 0.1).to(dev).requires_grad_()
    l = torch.rand(population, m, generator=g, dtype=tdtype).to(dev).requires_grad_()
    y = torch.as_tensor(candidate_labels(m, classes)).to(dev, tdtype)
    alpha = 100.0

    step = step_fn(w, x, l, y, alpha, route, mixed=mixed, compiled=compiled)
    s_step = _median_time(step, repeats, warmup, dev)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    widths = [width] * (depth - 1)
    routes: list[str] = []  # the closed form's routes per layer (the autograd engine's residual is explicit)
    if not closed:  # counted on the eager step (the counter does not see inside a compiled one)
        flops = _counted_flops(step_fn(w, x, l, y, alpha, route, mixed=mixed))
    elif classes == 1:
        flops = flops_per_step(d, widths, m, population, route)
        routes = residual_routes([tuple(mat.shape) for mat in w.mats], m, route)
    else:
        flops = multiclass_flops_per_step(d, widths, classes, m, population)
        routes = ["explicit"] * depth  # the multiclass residual has one route

    a = torch.randn(m, width, generator=g).to(dev, gemm_dtype)
    b = torch.randn(width, width, generator=g).to(dev, gemm_dtype)
    gemm_s = _median_time(lambda: torch.mm(a, b), max(repeats, 10), warmup, dev)
    gemm_gflops = 2 * m * width * width / gemm_s / 1e9

    seq_s = None
    if sequential and population > 1:
        x1 = x[:1].detach().clone().requires_grad_()
        l1 = l[:1].detach().clone().requires_grad_()
        one = step_fn(w, x1, l1, y, alpha, route, mixed=mixed, compiled=compiled)
        seq_s = population * _median_time(one, repeats, warmup, dev)

    ref_s = None
    if reference and dev.type != "mps" and arch == "mlp":
        ref_fn = reference_step_fn(mlp, x[0], l[0], y, alpha)
        ref_s = population * _median_time(ref_fn, max(2, repeats // 2), 1, dev)
    gflops = flops / s_step / 1e9
    return PerfReport(
        depth=w.depth,
        width=width if arch == "mlp" else max(channels),
        d=d,
        n=n,
        m=m,
        population=population,
        dtype=dtype,
        threads=threads,
        flops_per_step=flops,
        s_per_step=s_step,
        gflops=gflops,
        gemm_gflops=gemm_gflops,
        fraction_of_peak=gflops / gemm_gflops,
        reference_s_per_step=ref_s,
        reference_flops_per_step=population * reference_flops(d, widths, m, classes) if arch == "mlp" else 0,
        speedup_vs_reference=(ref_s / s_step) if ref_s else None,
        sequential_s_per_step=seq_s,
        population_speedup=(seq_s / s_step) if seq_s else None,
        peak_rss_mb=rss,
        device=str(dev),
        device_model=device_model(dev),
        compiled=compiled,
        classes=classes,
        residual=method,
        routes=",".join(routes),
        arch=arch,
        engine="closed" if closed else "autograd",
        model=model,
    )


def log_report(report: PerfReport, tracking_uri: str | None = None) -> str:
    """Log a report as one run of the MLflow experiment `perf`; returns the run id."""
    from bench.tracking import Tracker

    tracker = Tracker(tracking_uri)
    exp = tracker.experiment("perf")
    values = report.as_dict()
    keys = (
        "depth",
        "width",
        "d",
        "n",
        "m",
        "population",
        "dtype",
        "threads",
        "device",
        "device_model",
        "compiled",
        "residual",
        "routes",
        "arch",
        "engine",
        "model",
    )
    params = {k: values[k] for k in keys}
    name = f"perf {report.model or report.arch} m={report.m} P={report.population} {report.dtype} {report.engine}"
    with tracker.run(exp, name, {"bench.kind": "perf"}) as log:
        log.params(params)
        log.metrics({k: float(v) for k, v in values.items() if k not in params and v is not None})
        return log.run_id


def format_report(r: PerfReport) -> str:
    lines = [
        f"network       {r.model} ({r.engine} engine)",
        f"config        d={r.d} width={r.width} depth={r.depth} n={r.n} m={r.m} population={r.population} "
        f"{r.dtype}{' compiled' if r.compiled else ''} threads={r.threads} device={r.device}"
        + (f" classes={r.classes}" if r.classes > 1 else "")
        + (f" ({r.device_model})" if r.device_model else ""),
        *(
            [
                "routes        "
                + ", ".join(
                    f"layer {i} ({shape}) {route}"
                    for i, (shape, route) in enumerate(zip(_shapes(r), r.routes.split(","), strict=True), 1)
                )
                + f"   (attack.residual={r.residual})"
            ]
            if r.routes
            else []
        ),
        f"FLOPs/step    {r.flops_per_step / 1e9:.3f} GFLOP (bench)   "
        + (
            f"{r.reference_flops_per_step / 1e9:.3f} GFLOP (reference)"
            if r.arch == "mlp"
            else "(no reference: MLPs only)"
        ),
        f"bench step    {r.s_per_step * 1e3:.2f} ms   {r.gflops:.1f} GFLOP/s   {100 * r.fraction_of_peak:.0f}% of GEMM peak",
        f"GEMM peak     {r.gemm_gflops:.1f} GFLOP/s  ({r.m} x {r.width}) @ ({r.width} x {r.width}) {r.dtype} "
        f"on {r.device}",
    ]
    if r.reference_s_per_step is not None:
        lines.append(
            f"reference     {r.reference_s_per_step * 1e3:.2f} ms (double backward, float64)   "
            f"speed-up {r.speedup_vs_reference:.2f}x"
        )
    if r.sequential_s_per_step is not None:
        lines.append(
            f"population    {r.population} settings batched {r.s_per_step * 1e3:.2f} ms vs one after another "
            f"{r.sequential_s_per_step * 1e3:.2f} ms: {r.population_speedup:.2f}x throughput"
        )
    lines.append(f"peak memory   {r.peak_rss_mb:.0f} MB resident (process peak after bench's step)")
    return "\n".join(lines)


def _shapes(r: PerfReport) -> list[str]:
    """The weight matrices' shapes "H_l x H_{l-1}" of a report's network, layer 1 first."""
    sizes = [r.d] + [r.width] * (r.depth - 1) + [r.classes]
    return [f"{sizes[i + 1]}x{sizes[i]}" for i in range(r.depth)]
