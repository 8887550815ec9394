"""`bench perf`: the FLOP formula against torch's FLOP counter, and the command's JSON output."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from bench.attack.kkt import flops_per_step
from bench.cli import app
from bench.perf import random_weights, step_fn


@pytest.mark.parametrize(
    ("depth", "width", "d", "m", "population", "method"),
    [
        (3, 300, 200, 40, 1, "gram"),
        (3, 300, 200, 40, 1, "explicit"),
        (2, 500, 784, 40, 3, "auto"),
        (4, 100, 50, 300, 2, "auto"),
    ],
)
def test_flop_formula_matches_torchs_counter(depth, width, d, m, population, method) -> None:
    w = random_weights(d, depth, width, torch.float32)
    x = torch.randn(population, m, d).requires_grad_()
    l = torch.rand(population, m).requires_grad_()
    y = torch.where(torch.arange(m) < m // 2, -1.0, 1.0)
    with FlopCounterMode(display=False) as counter:
        step_fn(w, x, l, y, 100.0, method)()
    expected = flops_per_step(d, [width] * (depth - 1), m, population, method)
    assert counter.get_total_flops() == pytest.approx(expected, rel=0.01)


def test_perf_prints_one_json_object_and_logs_it(tracking_uri: str) -> None:
    args = [
        "perf",
        "--depth",
        "3",
        "--width",
        "64",
        "--d",
        "50",
        "--n",
        "10",
        "--population",
        "2",
        "--repeats",
        "2",
    ]
    out = CliRunner().invoke(app, [*args, "--json", "--tracking-uri", tracking_uri])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["s_per_step"] > 0 and report["m"] == 20 and report["population"] == 2
    assert report["speedup_vs_reference"] > 0 and report["fraction_of_peak"] > 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("perf").experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["s_per_step"] == pytest.approx(report["s_per_step"])


@pytest.mark.parametrize(
    ("dtype", "residual", "routes"),
    [
        ("float32", "auto", "gram,gram,explicit"),  # the attack's default: the cheaper route per layer
        ("bfloat16", "auto", "explicit,explicit,explicit"),  # explicit in bf16 (a sum of squares)
        ("float32", "explicit", "explicit,explicit,explicit"),
    ],
)
def test_perf_times_and_prints_the_route_each_layer_takes(tracking_uri: str, dtype, residual, routes) -> None:
    """At 784-300-300-1, m = 40 the Gram expansion needs fewer FLOPs in both hidden layers: the default
    takes it in float32, not in bfloat16; the FLOPs reported are those of the routes taken."""
    args = ["perf", "--width", "300", "--n", "20", "--repeats", "1", "--no-reference"]
    args += ["--dtype", dtype, "--residual", residual, "--tracking-uri", tracking_uri]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    expected = ", ".join(
        f"layer {i} ({shape}) {route}"
        for i, (shape, route) in enumerate(
            zip(("300x784", "300x300", "1x300"), routes.split(","), strict=True), 1
        )
    )
    assert f"routes        {expected}   (attack.residual={residual})" in out.output
    report = json.loads(CliRunner().invoke(app, [*args, "--json"]).output.strip().splitlines()[-1])
    assert report["routes"] == routes and report["residual"] == residual
    method = "gram" if routes.startswith("gram") else "explicit"
    assert report["flops_per_step"] == flops_per_step(784, [300, 300], 40, method=method)


@pytest.mark.parametrize("arch,engine", [("mlp", "autograd"), ("cnn", "auto")])
def test_perf_times_the_autograd_engine_on_an_mlp_and_a_cnn(
    tracking_uri: str, arch: str, engine: str
) -> None:
    args = ["perf", "--arch", arch, "--engine", engine, "--d", "64", "--width", "32", "--n", "4"]
    args += ["--channels", "4", "--pool", "max", "--repeats", "2", "--json", "--tracking-uri", tracking_uri]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    report = json.loads(out.output.strip().splitlines()[-1])
    assert report["engine"] == "autograd" and report["arch"] == arch and report["s_per_step"] > 0
    assert report["flops_per_step"] > 0  # counted by torch on one step
    if arch == "mlp":  # the same network as the closed form's: about its FLOPs, and the reference timed
        assert report["flops_per_step"] == pytest.approx(
            flops_per_step(64, [32, 32], 8, 1, "explicit"), rel=0.05
        )
        assert report["reference_s_per_step"] > 0
    else:
        assert report["model"] == "cnn 4 k3 pool max" and report["depth"] == 2
        assert report["reference_s_per_step"] is None
    bad = CliRunner().invoke(app, ["perf", "--arch", "cnn", "--d", "50", "--tracking-uri", tracking_uri])
    assert bad.exit_code == 2 and "not a square image" in bad.output
