"""Provenance tags on every run, fail-fast tracking servers, and keeping raw data out of the store."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

import bench
from bench.cli import app
from bench.errors import BenchInputError

runner = CliRunner()
TINY = ["--set", "data.n_per_class=3", "--set", "model.width=40", "--set", "attack.steps=20"]
TINY += ["--set", "attack.eval_every=10"]
PROVENANCE = ("bench.version", "torch.version", "python", "device", "threads", "cpu.model", "cpu.isa")


def _artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    out: set[str] = set()
    for a in client.list_artifacts(run_id, folder):
        out |= _artifacts(client, run_id, a.path) if a.is_dir else {a.path}
    return out


def test_runs_carry_provenance_and_log_switches_keep_raw_data_out(tracking_uri: str) -> None:
    args = ["run", "blobs-rect", "--profile", "smoke", "--tracking-uri", tracking_uri, "--device", "cpu"]
    args += [*TINY, "--set", "threads=1", "--set", "log.arrays=false", "--set", "log.images=false"]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("blobs-rect").experiment_id])
    children = [r for r in runs if r.data.tags.get("bench.kind") == "child"]
    assert len(children) == 2 and len(runs) == 3
    root = Path(bench.__file__).resolve().parent.parent
    for r in runs:  # parent and children alike
        tags = r.data.tags
        assert all(tags.get(k) for k in PROVENANCE), {k: tags.get(k) for k in PROVENANCE}
        assert tags["bench.version"] == bench.__version__ and tags["torch.version"] == torch.__version__
        assert tags["python"] == "{}.{}.{}".format(*sys.version_info[:3])
        assert tags["device"] == "cpu" and tags["threads"] == "1" and "gpu.model" not in tags
        assert tags["cpu.isa"].split()[0] == torch.backends.cpu.get_cpu_capability()
        if (root / ".git").exists():
            head = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True
            )
            assert tags["bench.git_commit"] == head.stdout.strip()
            assert tags["bench.git_dirty"] in ("true", "false")
    for r in children:
        files = _artifacts(client, r.info.run_id)
        assert not any(f.startswith(("arrays/", "model/")) for f in files), files
        assert not any(f.endswith("reconstructions.png") for f in files), files
        assert "config.json" in files
        metrics = r.data.metrics  # every metric is still there
        for key in ("error", "dssim_mean", "train_loss", "baseline/heldout/dssim_mean", "attack/converged"):
            assert key in metrics, key
        assert len(client.get_metric_history(r.info.run_id, "attack/kkt_fit")) == 20
        assert r.data.params["log.arrays"] == "False" and r.data.params["device"] == "cpu"


@pytest.mark.parametrize("command", ["run", "tune"])
def test_unreachable_tracking_server_exits_2_fast_naming_url_and_fix(command: str) -> None:
    """A fresh `bench` process, as a user starts it (imports included)."""
    exe = Path(sys.executable).parent / "bench"
    args = [str(exe)] if exe.exists() else [sys.executable, "-c", "from bench.cli import app; app()"]
    t0 = time.monotonic()
    out = subprocess.run(
        [*args, command, "blobs-rect", "--profile", "smoke", "--tracking-uri", "http://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    elapsed = time.monotonic() - t0
    assert out.returncode == 2, out.stderr
    assert elapsed < 15, elapsed
    assert "http://127.0.0.1:1" in out.stderr and "fix:" in out.stderr and "Traceback" not in out.stderr


def test_probe_accepts_any_http_answer_and_skips_non_http(monkeypatch: pytest.MonkeyPatch) -> None:
    import urllib.error
    import urllib.request

    from bench import tracking

    calls: list[str] = []

    def answer_401(url: str, timeout: float):
        calls.append(url)
        raise urllib.error.HTTPError(url, 401, "Unauthorized", None, None)  # type: ignore[arg-type]

    monkeypatch.setattr(urllib.request, "urlopen", answer_401)
    monkeypatch.setattr(tracking, "_reachable", set())
    tracking.probe_tracking_uri("http://mlflow.internal:5000/")
    tracking.probe_tracking_uri("http://mlflow.internal:5000/")  # probed once per process
    tracking.probe_tracking_uri("sqlite:///x.db")
    tracking.probe_tracking_uri("postgresql://db/mlflow")
    assert calls == ["http://mlflow.internal:5000/health"]

    def refused(url: str, timeout: float):
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", refused)
    with pytest.raises(BenchInputError, match=r"https://other:443.*Connection refused.*fix:"):
        tracking.probe_tracking_uri("https://other:443")


def test_raw_real_data_to_a_remote_store_is_announced_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from bench import tracking

    monkeypatch.setattr(tracking, "_warned", set())
    tracking.warn_raw_data("sqlite:///local.db", "GDC STAR counts")  # local: silent
    tracking.warn_raw_data("http://server:5000", "synthetic rect blobs")  # synthetic: silent
    assert capsys.readouterr().err == ""
    tracking.warn_raw_data("http://server:5000", "GDC STAR counts")
    tracking.warn_raw_data("http://server:5000", "GDC STAR counts")
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "log.arrays=false" in err and "http://server:5000" in err


def test_embedded_store_folder_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow.tracking

    from bench.tracking import Tracker

    monkeypatch.setattr(mlflow.tracking, "MlflowClient", lambda tracking_uri: None)  # no tables needed
    old = os.umask(0o022)
    try:
        Tracker(f"sqlite:///{tmp_path}/mlruns/sub/mlflow.db")
        (tmp_path / "shared").mkdir(mode=0o755)
        Tracker(f"sqlite:///{tmp_path}/shared/store.db")  # an existing folder keeps its permissions
    finally:
        os.umask(old)
    for folder in ("mlruns", "mlruns/sub"):
        assert stat.S_IMODE((tmp_path / folder).stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "shared").stat().st_mode) == 0o755
