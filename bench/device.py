"""Where a run computes: the torch device (`--device`, config `device`) and the CPU thread count (`threads`).

Names: `auto` (the first CUDA device if there is one, else the CPU), `cpu`, `cuda` (= `cuda:0`), `cuda:N`,
`mps`. `resolve_device` turns a name into a `torch.device` and raises `BenchInputError` (exit 2 on the
command line) naming the devices this machine has when the one asked for is absent.

`configure(device, threads)` is called where a run starts: it sets torch's thread count and records the
process's device, which components without a config of their own (the SDAE reducer, the ResNet baseline)
use by default, and which the provenance tags report. Random draws everywhere stay on CPU generators and
are moved to the device, so a CPU run and a GPU run start from the same numbers.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from typing import TYPE_CHECKING

from bench.errors import BenchInputError

if TYPE_CHECKING:  # torch is imported where it is used: config checks stay light
    import torch

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

_state: dict[str, object] = {"device": None, "threads": None}


def valid_device_name(name: str) -> bool:
    """Whether `name` is one of auto | cpu | cuda | cuda:N | mps (syntax only, not availability)."""
    return bool(DEVICE_PATTERN.match(str(name).strip()))


def available_devices() -> list[str]:
    """The devices torch can use on this machine, e.g. ['cpu', 'cuda:0', 'cuda:1'] or ['cpu', 'mps']."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch.device for a device name (None = auto); BenchInputError when it is absent or malformed."""
    import torch

    if isinstance(name, torch.device):
        return name
    text = "auto" if name is None else str(name).strip().lower()
    if not valid_device_name(text):
        raise BenchInputError(
            f"bad device '{name}' for '--device'/'device': fix: use auto, cpu, cuda, cuda:N or mps"
        )
    found = available_devices()
    if text == "auto":
        return torch.device("cuda:0" if "cuda:0" in found else "cpu")
    if text == "cuda":
        text = "cuda:0"
    if text not in found:
        raise BenchInputError(
            f"device '{name}' is not available on this machine (devices found: {', '.join(found)}); "
            "fix: use --device cpu (or auto), or run where that device exists"
        )
    return torch.device(text)


def resolve_threads(threads: int = 0) -> int:
    """The CPU thread count a run uses: `threads` if positive, else torch's current count (which defaults
    to the machine's cores), else os.cpu_count()."""
    import torch

    if threads and threads > 0:
        return int(threads)
    return int(torch.get_num_threads() or os.cpu_count() or 1)


def configure(device: str | torch.device | None = "auto", threads: int = 0) -> tuple[torch.device, int]:
    """Resolve and apply a run's device and thread count (torch.set_num_threads, and numpy's BLAS through
    threadpoolctl: left at the machine's cores, OpenBLAS's threads wait on each other's small products,
    and two runs side by side at 2 BLAS threads each took ~65 ms for a 20 x 40 correlation that takes
    0.7 ms at one); returns both.

    Recorded for the process: `current_device()` and the provenance tags read them. Also keeps freed
    memory for reuse (`keep_freed_memory`)."""
    import torch

    keep_freed_memory()
    dev = resolve_device(device)
    n = resolve_threads(threads)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    if _state.get("blas") != n:  # numpy's BLAS (scoring, matching) at the same count
        from threadpoolctl import threadpool_limits

        threadpool_limits(n, user_api="blas")
        _state["blas"] = n
    _state["device"], _state["threads"] = dev, n
    return dev, n


def keep_freed_memory() -> None:
    """Under glibc (Linux), serve allocations below 256 MiB from the heap and keep what is freed there
    (mallopt M_MMAP_THRESHOLD, M_TRIM_THRESHOLD) instead of mapping fresh pages and returning them each
    time: a training epoch allocates its gradients anew (set_to_none), and a fresh 6 MB float64 gradient
    page-faults its way in. Quick blob training (784-1000-1, n = 20, float64): 2.29-2.61 s -> 2.08-2.36 s
    (medians of 4, 4 A/B pairs, this 2-core machine). Values are unchanged; only where memory comes from.
    Once per process; elsewhere a no-op."""
    if _state.get("malloc") or not sys.platform.startswith("linux"):
        return
    _state["malloc"] = True
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 256 << 20)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl, ...): leave the allocator alone
        pass


def current_device() -> torch.device:
    """The device the last `configure` call chose (the CPU before any)."""
    import torch

    return _state["device"] or torch.device("cpu")  # type: ignore[return-value]


def current_threads() -> int:
    """The thread count torch uses now."""
    import torch

    return int(torch.get_num_threads())


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (timing); a no-op on the CPU."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def device_model(device: torch.device | None = None) -> str:
    """A human-readable name of the accelerator, e.g. 'NVIDIA H100 80GB HBM3' ('' for the CPU)."""
    import torch

    device = device or current_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "mps":
        return "Apple MPS"
    return ""
