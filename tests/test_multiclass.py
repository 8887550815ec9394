"""The multiclass attack's math (Buzaglo et al. 2023): closed form against autograd, and C = 2 against binary."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from bench.attack.kkt import Weights, kkt_fit
from bench.attack.multiclass import (
    multiclass_attack_loss,
    multiclass_directions,
    multiclass_flops_per_step,
    multiclass_forward,
    multiclass_kkt_fit,
)
from bench.attack.reference import reference_multiclass_fit


def _weights(depth: int, bias: bool, n_out: int, d: int = 12, width: int = 9, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)
    sizes = [d] + [width] * (depth - 1) + [n_out]
    mats = tuple(
        torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) / sizes[i] ** 0.5
        for i in range(depth)
    )
    return Weights(mats, torch.randn(width, generator=g, dtype=torch.float64) if bias else None)


@pytest.mark.parametrize("pairs", ["max", "all"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("depth", [2, 3])
def test_multiclass_fit_and_its_gradients_equal_double_backward(depth: int, bias: bool, pairs: str) -> None:
    C, m = 4, 7
    w = _weights(depth, bias, C)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(m, 12, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2])
    shape = (m,) if pairs == "max" else (m, C)
    c = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_()
    ours = multiclass_kkt_fit(w, x, y, c, 5.0, pairs=pairs)
    ref = reference_multiclass_fit(w, x, y, c, 5.0, pairs=pairs)
    assert float(ref.detach()) > 0.1  # a random point: far from a KKT point, so the check is not of two zeros
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-12)
    for a, b in zip(torch.autograd.grad(ours, (x, c)), torch.autograd.grad(ref, (x, c)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_max_picks_the_largest_other_output() -> None:
    phi = torch.tensor([[3.0, 5.0, 1.0], [3.0, 5.0, 1.0], [0.0, -1.0, -2.0]])
    u = multiclass_directions(phi, torch.tensor([1, 0, 2]), torch.tensor([1.0, 2.0, 0.5]))
    expected = torch.tensor([[-1.0, 1.0, 0.0], [2.0, -2.0, 0.0], [-0.5, 0.0, 0.5]])
    torch.testing.assert_close(u, expected)


def test_the_population_dimension_is_independent_settings() -> None:
    w = _weights(3, True, 5)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 6, 12, generator=g, dtype=torch.float64)
    c = torch.rand(3, 6, generator=g, dtype=torch.float64)
    y = torch.arange(6) % 5
    alpha = torch.tensor([1.0, 10.0, 100.0], dtype=torch.float64)
    batched = multiclass_kkt_fit(w, x, y, c, alpha.view(3, 1, 1))
    single = torch.stack([multiclass_kkt_fit(w, x[p], y, c[p], float(alpha[p])) for p in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("depth", [2, 3])
def test_two_classes_are_the_binary_attack_under_the_sqrt2_map(depth: int, bias: bool) -> None:
    """The binary network (W_1..W_{L-1}, w) and the C = 2 network (W_1..W_{L-1}, [-w/sqrt2; w/sqrt2]):
    with y = +1 <-> class 1 and lambda_C2 = lambda_binary / sqrt2 the residuals and their gradients in x are
    equal to rounding; ||theta||^2 is the same and Phi_1 - Phi_0 = sqrt2 Phi."""
    binary = _weights(depth, bias, 1)
    w_last = binary.mats[-1]
    two = Weights((*binary.mats[:-1], torch.cat([-w_last, w_last]) / math.sqrt(2)), binary.bias)
    torch.testing.assert_close(two.sq_norm(), binary.sq_norm(), rtol=1e-14, atol=0)
    g = torch.Generator().manual_seed(6)
    x = torch.randn(8, 12, generator=g, dtype=torch.float64, requires_grad=True)
    classes = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    sign = 2.0 * classes.double() - 1.0
    lam = torch.rand(8, generator=g, dtype=torch.float64)
    phi2, _, _ = multiclass_forward(two, x, 5.0)
    phib, _, _ = multiclass_forward(binary, x, 5.0)
    torch.testing.assert_close(phi2[:, 1] - phi2[:, 0], math.sqrt(2) * phib[:, 0])
    fit_b = kkt_fit(binary, x, lam * sign, 5.0, method="explicit")
    fit_2 = multiclass_kkt_fit(two, x, classes, lam / math.sqrt(2), 5.0)
    assert float(fit_b.detach()) > 0.1
    torch.testing.assert_close(fit_2, fit_b, rtol=1e-12, atol=1e-14)
    gb, g2 = torch.autograd.grad(fit_b, x), torch.autograd.grad(fit_2, x)
    torch.testing.assert_close(g2[0], gb[0], rtol=1e-10, atol=1e-13)
    # The same multipliers without the map do not agree: the map is needed, not decoration.
    plain = Weights((*binary.mats[:-1], torch.cat([-w_last, w_last]) / 2), binary.bias)
    assert abs(float(multiclass_kkt_fit(plain, x, classes, lam, 5.0)) - float(fit_b.detach())) > 1e-3


def test_the_loss_adds_the_penalties_to_the_fit() -> None:
    w = _weights(2, False, 3)
    x = torch.full((1, 3, 12), 2.0, dtype=torch.float64)  # 1.0 above hi everywhere
    y = torch.tensor([0, 1, 2])
    l = torch.tensor([[0.05, 0.5, 0.0]], dtype=torch.float64)
    lo, hi = -torch.ones(12, dtype=torch.float64), torch.ones(12, dtype=torch.float64)
    loss, fit = multiclass_attack_loss(w, x, l, y, lam_scale=1.0, lam_min=0.1, alpha=5.0, lo=lo, hi=hi)
    expected = fit + 5.0 * (0.05**2 + 0.1**2) + 36.0
    torch.testing.assert_close(loss, expected)
    l_all = torch.full((1, 3, 3), 0.5, dtype=torch.float64)
    l_all[0, 0, 0] = 0.0  # the candidate's own class: unused, no penalty
    l_all[0, 1, 2] = 0.0  # an other class below lam_min: penalised
    loss, fit = multiclass_attack_loss(
        w, x, l_all, y, lam_scale=1.0, lam_min=0.1, alpha=5.0, lo=lo, hi=hi, pairs="all"
    )
    torch.testing.assert_close(loss, fit + 5.0 * 0.1**2 + 36.0)


def test_multiclass_flops_count_every_gemm() -> None:
    # d -> H -> C, m candidates: layer 1 (forward h, G; backward h, G x2), layer 2 (forward Phi, signal U W,
    # G; backward signal, G x2: Phi only chooses the other class).
    d, H, C, m = 10, 20, 3, 4
    gemm1, gemm2 = 2 * m * d * H, 2 * m * H * C
    assert multiclass_flops_per_step(d, [H], C, m) == 5 * gemm1 + 6 * gemm2
    assert multiclass_flops_per_step(d, [H], C, m, population=3) == 3 * (5 * gemm1 + 6 * gemm2)


def _class_runs(step: float, seeds: int = 4) -> list[dict]:
    """Child-run rows of a class-count series, no randomness: memorised/frac = 0.3 + step * C + seed wiggle."""
    rows = []
    for seed in range(seeds):
        for n_classes in (2, 3, 5, 10):
            rows.append(
                {
                    "run_id": f"c{seed}-{n_classes}",
                    "task": "mnist-digits",
                    "profile": "quick",
                    "seed": seed,
                    "data.n_classes": str(n_classes),
                    "data.n_per_class": "10",
                    "train/converged": 1.0,
                    "memorised/frac": 0.3 + step * n_classes + 0.01 * (seed % 2),
                }
            )
    return rows


@pytest.mark.parametrize(
    ("step", "expected"), [(0.05, "reproduced"), (-0.02, "opposite"), (0.0, "not reproduced")]
)
def test_more_classes_more_leak_is_judged_on_seeds(step: float, expected: str) -> None:
    import pandas as pd

    from bench.analysis.claims import get_claim

    claim = get_claim("more-classes-more-leak")
    v = claim.evaluate(pd.DataFrame(_class_runs(step)))
    assert v.verdict == expected, v.bench
    assert v.n_seeds == 4 and "mnist-digits" in v.bench
    if expected != "not reproduced":
        assert np.sign(v.value) == np.sign(step) and v.lo <= v.value <= v.hi
    # unconverged classifiers are left out and counted; too few seeds is inconclusive
    rows = _class_runs(step)
    for r in rows:
        r["train/converged"] = 0.0 if r["seed"] >= 2 else 1.0
    v = claim.evaluate(pd.DataFrame(rows))
    assert v.verdict == "inconclusive" and "left out" in v.note
    assert claim.evaluate(pd.DataFrame()).verdict == "no runs"


@pytest.mark.parametrize(
    ("depth", "width", "d", "C", "m", "population"), [(2, 300, 64, 10, 40, 1), (3, 200, 100, 3, 30, 2)]
)
def test_multiclass_flop_formula_matches_torchs_counter(depth, width, d, C, m, population) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from bench.attack.reconstruct import candidate_labels
    from bench.perf import random_weights, step_fn

    w = random_weights(d, depth, width, torch.float32, n_out=C)
    x = torch.randn(population, m, d).requires_grad_()
    l = torch.rand(population, m).requires_grad_()
    y = torch.as_tensor(candidate_labels(m, C), dtype=torch.float32)
    with FlopCounterMode(display=False) as counter:
        step_fn(w, x, l, y, 100.0)()
    expected = multiclass_flops_per_step(d, [width] * (depth - 1), C, m, population)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)


def test_bench_perf_times_the_multiclass_step(tmp_path) -> None:
    import json

    from typer.testing import CliRunner

    from bench.cli import app

    args = [
        "perf",
        "--depth",
        "3",
        "--width",
        "64",
        "--d",
        "50",
        "--n",
        "12",
        "--classes",
        "4",
        "--repeats",
        "2",
    ]
    out = CliRunner().invoke(app, [*args, "--json", "--tracking-uri", f"sqlite:///{tmp_path}/perf.db"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["classes"] == 4 and report["s_per_step"] > 0 and report["reference_s_per_step"] > 0
    assert report["flops_per_step"] == multiclass_flops_per_step(50, [64, 64], 4, 24)
