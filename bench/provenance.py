"""Where and how a run ran: the provenance tags every MLflow run of bench carries.

Tags: `bench.version`, `bench.git_commit` and `bench.git_dirty` (when bench is imported from a git
checkout; dirty = tracked files differ from the commit), `torch.version`, `python`, `device` (the
resolved torch device, e.g. `cuda:0`), `threads` (torch's CPU thread count), `cpu.model`, `cpu.isa`, and
`gpu.model` when the device is an accelerator; `bench.host`, `bench.pid` and `bench.pid_start` (the process
that made the run, its start time in clock ticks since boot on Linux), by which `process_gone` later tells a
RUNNING run whose process was killed without warning (SIGKILL, a lost node). `cpu.isa` (torch's kernel level, and whether the CPU has
AMX or AVX512-BF16) says whether bf16 products have hardware behind them. Neither tag pins the speed: on
this project's machines, all reporting the same `cpu.model`, `bench perf` timed the paper-scale bf16 step
at 9-14, 28 and 11 ms on different days; the run's own metric `attack_step_s` (bench.experiment) is
the speed it saw, and wall times are compared through it. `bench.tracking.Tracker.run` adds the tags to
every run it creates.
"""

from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path


@functools.lru_cache(maxsize=1)
def static_tags() -> dict[str, str]:
    """The tags that do not change within a process (computed once)."""
    import torch

    import bench

    tags = {
        "bench.version": bench.__version__,
        "torch.version": torch.__version__,
        "python": platform.python_version(),
        "cpu.model": cpu_model(),
        "cpu.isa": cpu_isa(),
    }
    tags.update(git_state(Path(bench.__file__).resolve().parent.parent))
    return tags


def provenance_tags() -> dict[str, str]:
    """All provenance tags for a run created now: the static ones plus the device and thread count that
    `bench.device.configure` set for this process."""
    from bench.device import current_device, current_threads, device_model

    device = current_device()
    tags = {**static_tags(), **process_tags(), "device": str(device), "threads": str(current_threads())}
    if device.type != "cpu":
        tags["gpu.model"] = device_model(device)
    return tags


def process_tags() -> dict[str, str]:
    """`bench.host`, `bench.pid` and (Linux) `bench.pid_start` of this process: who made a run."""
    tags = {"bench.host": socket.gethostname(), "bench.pid": str(os.getpid())}
    start = _start_ticks(os.getpid())
    if start is not None:
        tags["bench.pid_start"] = str(start)
    return tags


def process_gone(tags: Mapping[str, str]) -> bool:
    """Whether the process named by a run's `process_tags` no longer exists: True only when it ran on
    this host and its pid is free, or taken by a later process (another start time). A run of another
    host, or one without the tags, is never called gone (this host cannot tell)."""
    if tags.get("bench.host") != socket.gethostname() or not str(tags.get("bench.pid", "")).isdigit():
        return False
    pid = int(tags["bench.pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        pass
    start = tags.get("bench.pid_start")
    now = _read_start(pid)
    return start is not None and now is not None and str(now) != start


@functools.lru_cache(maxsize=64)
def _start_ticks(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot (None off Linux).
    Cached: a pid's start time does not change while it lives (`process_gone` reads it uncached)."""
    return _read_start(pid)


def _read_start(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # the name in (...) may hold spaces


def git_state(root: Path) -> dict[str, str]:
    """{'bench.git_commit': sha, 'bench.git_dirty': 'true'|'false'} for a checkout at `root`, else {}."""
    if not (root / ".git").exists():
        return {}
    try:
        sha = _git(root, "rev-parse", "HEAD")
        status = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"bench.git_commit": sha, "bench.git_dirty": "true" if status else "false"}


def _git(root: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return out.stdout.strip()


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field` line of /proc/cpuinfo (Linux), or None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(field):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else the platform's processor string)."""
    return _cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def cpu_isa() -> str:
    """torch's CPU kernel level and the bf16 matrix units, e.g. "AVX512 amx_bf16 avx512_bf16" (Linux flags;
    elsewhere the kernel level alone)."""
    import torch

    flags = set((_cpuinfo("flags") or "").split())
    return " ".join([torch.backends.cpu.get_cpu_capability(), *sorted(flags & {"amx_bf16", "avx512_bf16"})])
