"""Device plumbing: `--device` / config `device`, thread counts, and where tensors live.

There is no GPU on the CI machine: the resolution, the error for an absent device and the passing of the
device to every component are tested on the CPU (CUDA hidden or faked where needed); the test marked
`cuda` runs the smoke series on a GPU against the CPU wherever one exists.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from bench import device as bdev
from bench.cli import app
from bench.errors import BenchInputError

runner = CliRunner()
TINY = {"data.n_per_class": 3, "model.width": 40, "attack.steps": 20, "attack.eval_every": 10}
TINY_ARGS = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has no CUDA device (whatever it has)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has two CUDA devices (only resolution is tested with it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_auto_is_the_first_cuda_device_else_the_cpu(no_cuda: None) -> None:
    assert bdev.resolve_device("auto") == torch.device("cpu")
    assert bdev.resolve_device(None) == torch.device("cpu")
    assert bdev.resolve_device("cpu") == torch.device("cpu")


def test_cuda_names_resolve_when_gpus_exist(two_gpus: None) -> None:
    assert bdev.resolve_device("auto") == torch.device("cuda:0")
    assert bdev.resolve_device("cuda") == torch.device("cuda:0")
    assert bdev.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(BenchInputError, match=r"cuda:2.*devices found: cpu, cuda:0, cuda:1"):
        bdev.resolve_device("cuda:2")


def test_absent_device_names_the_devices_found(no_cuda: None) -> None:
    with pytest.raises(BenchInputError) as err:
        bdev.resolve_device("cuda")
    msg = str(err.value)
    assert "device 'cuda' is not available" in msg and "devices found: cpu" in msg and "fix:" in msg
    with pytest.raises(BenchInputError, match="auto, cpu, cuda, cuda:N or mps"):
        bdev.resolve_device("gpu0")


@pytest.mark.parametrize(
    "args",
    [
        ["run", "blobs-rect", "--profile", "smoke", "--device", "cuda"],
        ["run", "blobs-rect", "--profile", "smoke", "--set", "device=cuda:0"],
        ["tune", "blobs-rect", "--profile", "smoke", "--device", "cuda"],
        ["perf", "--device", "cuda", "--no-reference"],
    ],
)
def test_cuda_without_cuda_exits_2_naming_the_devices(no_cuda: None, args: list[str], tmp_path) -> None:
    out = runner.invoke(app, [*args, "--tracking-uri", f"sqlite:///{tmp_path}/never.db"])
    assert out.exit_code == 2, out.output
    assert "devices found: cpu" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "never.db").exists()  # nothing was started


def test_device_and_threads_are_checked_config_keys() -> None:
    out = runner.invoke(app, ["run", "blobs-rect", "--set", "device=tpu"])
    assert out.exit_code == 2 and "'device'" in out.output
    out = runner.invoke(app, ["run", "blobs-rect", "--set", "threads=-1"])
    assert out.exit_code == 2 and "'threads'" in out.output


def test_configure_sets_torch_threads_and_zero_keeps_the_machine_default() -> None:
    dev, n = bdev.configure("cpu", 2)
    assert (dev, n, torch.get_num_threads()) == (torch.device("cpu"), 2, 2)
    assert bdev.current_device() == torch.device("cpu")
    torch.set_num_threads(1)
    assert bdev.configure("cpu", 0)[1] == 1 == torch.get_num_threads()


def test_every_component_gets_the_run_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """Training and the attack receive cfg.device; the SDAE and ResNet default to the run's device."""
    import bench.attack.reconstruct as rec
    import bench.train as train
    from bench.experiment import resolve_config, run_experiment
    from bench.tasks import get_task

    seen: dict[str, object] = {}

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name] = kwargs.get("device", args[-1] if args else None)
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(train, "train_classifier", spy("train", train.train_classifier))
    monkeypatch.setattr(rec, "reconstruct", spy("attack", rec.reconstruct))
    cfg = resolve_config(get_task("blobs-rect"), "smoke", TINY | {"device": "cpu"}, 1, 0)
    result = run_experiment(cfg)
    assert str(seen["train"]) == "cpu" and str(seen["attack"]) == "cpu"
    assert next(result.model.parameters()).device == torch.device("cpu")
    assert np.isfinite(result.settings[0].metrics["error"])


def test_sdae_and_resnet_use_the_configured_device() -> None:
    from bench.reduce.sdae import SDAE
    from bench.resnet import train_resnet

    bdev.configure("cpu")
    rng = np.random.default_rng(0)
    x = rng.random((12, 6))
    sdae = SDAE(n_components=2, hidden=(4,), epochs=2, batch_size=4).fit(x)
    assert sdae.device_ == torch.device("cpu")
    assert next(sdae.encoder_.parameters()).device == torch.device("cpu")
    assert sdae.transform(x).shape == (12, 2)
    y = np.array([0, 1] * 6)
    res = train_resnet(x[:, :4], y, x[:, :4], y, image_shape=(2, 2), epochs=1, width=2, batch_size=4)
    assert 0.0 <= res["train_accuracy"] <= 1.0 and len(res["curve"]) == 1


def test_attack_reports_every_step_in_order_with_monitors_between() -> None:
    """Losses reach the host at monitor points only, but every step is still reported, in order, and the
    history equals the per-step record."""
    from bench.attack.kkt import Weights
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    g = torch.Generator().manual_seed(0)
    w = Weights((torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randn(1, 8, generator=g)))
    events: list[tuple[str, int]] = []
    losses: dict[int, float] = {}

    def on_step(step: int, loss: np.ndarray) -> None:
        events.append(("step", step))
        losses[step] = float(loss[0])

    def monitor(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        events.append(("monitor", step))
        return {"attack/norm": np.linalg.norm(x.reshape(len(x), -1), axis=1)}

    cfg = AttackConfig(steps=25, eval_every=10, m_factor=1)
    res = reconstruct(w, 3, -np.ones(5), np.ones(5), cfg, 0, None, monitor, on_step, device="cpu")
    steps = [s for kind, s in events if kind == "step"]
    assert steps == list(range(25))
    for mon in (10, 20):  # a monitor point comes after every step before it
        assert events.index(("monitor", mon)) > events.index(("step", mon - 1))
    assert [s for kind, s in events if kind == "monitor"] == [0, 10, 20, 25]
    assert np.array_equal(res.curves["attack/loss"][1][0], np.array([losses[s] for s in range(25)]))


def test_divergence_found_at_monitor_points_ends_where_a_per_step_check_would() -> None:
    from bench.attack.kkt import Weights
    from bench.attack.reconstruct import reconstruct
    from bench.config import AttackConfig

    g = torch.Generator().manual_seed(0)
    w = Weights((torch.randn(8, 5, generator=g), torch.randn(1, 8, generator=g)))
    cfg = AttackConfig(steps=30, eval_every=10, m_factor=1, optimizer="sgd")
    box = (-np.ones(5), np.ones(5))
    steps: list[int] = []
    mons: list[int] = []

    def monitor(step: int, x: np.ndarray) -> dict[str, np.ndarray]:
        mons.append(step)
        return {}

    # one setting blows up at step 1, the other goes on: every step is reported, the loop runs to the end
    res = reconstruct(w, 3, *box, cfg, 0, [{"lr": 1e36}, {"lr": 1e-3}], monitor, lambda s, _: steps.append(s))
    assert res.diverged.tolist() == [True, False] and res.steps_run.tolist() == [1, 30]
    assert steps == list(range(30)) and mons == [0, 10, 20, 30]
    assert not np.isfinite(res.curves["attack/loss"][1][0, 1]) and np.isfinite(res.x).all()
    # every setting blows up at step 1: the loop ends there (step 1 recorded, not taken), as before
    steps.clear(), mons.clear()
    res = reconstruct(w, 3, *box, cfg, 0, [{"lr": 1e36}, {"lr": 1e37}], monitor, lambda s, _: steps.append(s))
    assert res.diverged.all() and res.steps_run.tolist() == [1, 1]
    assert steps == [0] and mons == [0, 1] and res.curves["attack/loss"][1].shape == (2, 2)


@pytest.mark.parametrize("extra", [0, 3])
def test_training_reads_losses_at_log_points_and_stops_where_a_per_epoch_check_would(extra: int) -> None:
    """log_every=1 reads every epoch's loss (no chunk, no rewind); log_every=10 reads them in chunks and
    rewinds when the target is met inside one: the same model, epochs and values, bit for bit."""
    from bench.config import ModelConfig, TrainConfig
    from bench.train import train_classifier

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((12, 20)), np.where(np.arange(12) < 6, -1.0, 1.0)
    base = TrainConfig(lr=1.0, init_scale=1e-2, target_loss=1e-2, max_epochs=400, extra_epochs=extra)
    runs = []
    for log_every in (1, 10):
        seen: dict[int, float] = {}
        cfg = dataclasses.replace(base, log_every=log_every)
        r = train_classifier(x, y, ModelConfig(width=30), cfg, 0, on_epoch=seen.__setitem__)
        runs.append((r, seen))
    (every, per_epoch), (chunked, logged) = runs
    assert every.epochs == chunked.epochs and every.epochs % 10 not in (0, 1)  # the stop is mid-chunk
    assert every.metrics == chunked.metrics and every.metrics["reached_target"] == 1.0
    for a, b in zip(every.model.parameters(), chunked.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert chunked.epochs in logged and all(per_epoch[e] == v for e, v in logged.items())


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (needs one)")
def test_smoke_series_on_gpu_matches_cpu(tracking_uri: str) -> None:
    from bench.runner import run_task
    from bench.tasks import get_task

    task = get_task("blobs-rect")
    cpu = run_task(task, "smoke", None, TINY | {"device": "cpu"}, tracking_uri, "cpu")
    gpu = run_task(task, "smoke", None, TINY | {"device": "cuda"}, tracking_uri, "gpu")
    assert len(cpu.table) == len(gpu.table) == 2
    for col in ("train_accuracy", "test_accuracy", "reached_target"):
        assert np.array_equal(cpu.table[col], gpu.table[col]), col
    # float64 training agrees closely; the float32 attack may round differently on the GPU
    assert np.allclose(cpu.table["train_loss"], gpu.table["train_loss"], rtol=1e-3, atol=1e-8)
    assert np.allclose(cpu.table["error"], gpu.table["error"], atol=0.05)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    for run_id in gpu.child_run_ids:
        tags = client.get_run(run_id).data.tags
        assert tags["device"] == "cuda:0" and tags["gpu.model"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (needs one)")
def test_perf_reports_the_gpu_gemm_rate() -> None:
    from bench.perf import format_report, measure

    r = measure(depth=3, width=256, d=64, n=32, repeats=3, reference=False, device="cuda")
    assert r.device == "cuda:0" and r.device_model and r.gemm_gflops > 0 and r.fraction_of_peak > 0
    assert "on cuda:0" in format_report(r)
