"""SIGTERM and SIGINT (Ctrl-C) as an exception, so that a series stops in order: the runs in progress and
their parent are marked KILLED with what they logged kept (bench.tracking.Tracker.run), the worker
processes stop, and `bench run` says what finished and how to resume (exit code 128 + the signal: 130 for
SIGINT, 143 for SIGTERM, as a shell reports them).

The first signal raises `Interrupted` in the main thread (in a worker process, only while it works on a
run: between runs it just takes no new one); the second is ignored, so that it cannot interrupt the
marking of the runs (a worker may get two at once: the terminal's and the one its parent passes on); a
third ends the process at once (`os._exit`), its runs left RUNNING for a later `--resume` to find. A batch system sends SIGTERM some time before SIGKILL (Slurm: KillWait, 30 s by
default): enough for this. A run killed without warning stays RUNNING until `bench run --resume` or
`bench summarise` finds its process gone (bench.provenance.process_gone) and marks it KILLED.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)

_state: dict[str, Any] = {"signum": None, "armed": True, "count": 0, "pending": False}


class Interrupted(KeyboardInterrupt):
    """A run or series stopped by SIGINT or SIGTERM (`signum`). A KeyboardInterrupt, so whatever already
    cleans up after Ctrl-C does so after SIGTERM too. `done`/`total`: the series' finished runs, when the
    runner knows them."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum
        self.done: int | None = None
        self.total: int | None = None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def message(self, argv: list[str]) -> str:
        """The one line `bench run` prints when stopped: what finished, and the command that resumes (the
        command line `argv`, with --resume)."""
        import shlex
        from pathlib import Path

        args = argv[1:]
        prog = "bench" if Path(argv[0]).name == "bench" else shlex.quote(argv[0])
        command = " ".join([prog, shlex.join(args), *([] if "--resume" in args else ["--resume"])])
        done = (
            f"{self.done} of {self.total} runs finished and are kept, "
            if self.total is not None
            else "before any run started, "
        )
        return (
            f"interrupted by {self.name}: {done}the runs in progress and the parent are marked KILLED; "
            f"resume with: {command}"
        )


def _handler(signum: int, frame: Any) -> None:
    _state["count"] += 1
    if _state["count"] >= 3:
        os._exit(128 + signum)
    if _state["signum"] is not None:
        return  # a second signal (the terminal's and the parent's, or an impatient one): let cleanup finish
    _state["signum"] = signum
    if _state["armed"]:
        raise Interrupted(signum)
    _state["pending"] = True


def install(armed: bool = True) -> None:
    """Handle SIGINT and SIGTERM in this process (main thread only). `armed=False` (a worker between runs):
    a signal is only recorded, and `armed()` raises it when the next run would start."""
    _state.update(signum=None, armed=armed, count=0, pending=False)
    for sig in SIGNALS:
        signal.signal(sig, _handler)
    if sys.unraisablehook is not _unraisable:
        _state["hook"] = sys.unraisablehook
        sys.unraisablehook = _unraisable


def _unraisable(info: Any) -> None:
    """`sys.unraisablehook`: an `Interrupted` raised where Python cannot pass it on (the signal arrived
    while a finaliser such as a weakref callback ran) is held, not printed as "Exception ignored", and
    `raise_pending` raises it at the next checkpoint; anything else goes to the hook that was there."""
    if isinstance(info.exc_value, Interrupted):
        _state["pending"] = True
        return
    _state.get("hook", sys.__unraisablehook__)(info)


@contextmanager
def handled() -> Iterator[None]:
    """`install` for the duration of the block (the command line's `bench run`), then the handlers
    that were there before."""
    before = {sig: signal.getsignal(sig) for sig in SIGNALS}
    install()
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        sys.unraisablehook = _state.pop("hook", sys.unraisablehook)
        _state.update(signum=None, armed=True, count=0, pending=False)


def received(signum: int) -> None:
    """Count `signum` as received here (a worker stopped by it, its parent stopping too): a signal that
    comes now is the second, ignored while the runs are marked."""
    if _state["signum"] is None:
        _state.update(signum=signum, count=_state["count"] + 1)


@contextmanager
def armed() -> Iterator[None]:
    """A worker's run: a signal during the block raises `Interrupted` at once; one received before it
    raises on entry (no new run starts after a signal)."""
    if _state["signum"] is not None:
        _state["pending"] = False
        raise Interrupted(_state["signum"])
    _state["armed"] = True
    try:
        yield
    finally:
        _state["armed"] = False


@contextmanager
def deferred() -> Iterator[None]:
    """A block a signal must not break into (creating an MLflow run or marking its end: interrupted
    there, the run would be left RUNNING). A signal during it is held; `raise_pending` raises it later."""
    was = _state["armed"]
    _state["armed"] = False
    try:
        yield
    finally:
        _state["armed"] = was


def raise_pending() -> None:
    """Raise the signal a `deferred` block held, if any (and if this process is armed: a worker between
    runs raises it when the next run starts)."""
    if _state["armed"] and _state["pending"]:
        _state["pending"] = False
        raise Interrupted(_state["signum"])


def held(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) with a signal held (`deferred`) and raised right after it (`raise_pending`), in
    the main thread (the only one signals reach; elsewhere a plain call)."""
    if threading.current_thread() is not threading.main_thread():
        return fn(*args, **kwargs)
    with deferred():
        out = fn(*args, **kwargs)
    raise_pending()
    return out


def enter_context(stack: ExitStack, cm: AbstractContextManager[Any]) -> Any:
    """`stack.enter_context(cm)` (a `Tracker.run`) under `held`: a signal landing between the run's creation
    and the stack's holding its end (after `cm` yields, before `enter_context` registers its exit) would
    leave the run RUNNING. A signal that came before raises here, and no run is made."""
    raise_pending()
    return held(stack.enter_context, cm)


class HeldCalls:
    """`target` (the MLflow client) whose method calls run under `held`: an interruption lands between two
    calls to the store, never inside SQLAlchemy's session handling. (A SIGTERM that landed in a worker's
    `log_batch` commit was followed by "database is locked" for 20 s in every process writing to the
    same SQLite store: its runs could not be marked KILLED.) Other attributes pass through."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr
        call = functools.partial(held, attr)
        setattr(self, name, call)  # made once per method: the next lookup finds it without __getattr__
        return call
