"""Series runs spread over processes (`--jobs N`) and over machines (`--shard I/N --group NAME`).

`--jobs N`: the (series point, seed) runs of one `bench run` go to N worker processes (a spawn-context
process pool). Every worker opens the same tracking store and logs its child runs under the one parent
run of the invocation; each run uses `threads` torch threads (config key `threads`; 0 = cores // N,
set on the config before the run so it is logged). Rows come back to the parent and are put in plan
order, so the series table is the one `--jobs 1` makes.

`--shard I/N --group NAME`: the plan (series x seeds, in its stable order) is dealt round-robin into N
slices; shard I (1-based) runs the runs with index k where k % N == I - 1. Every shard makes its own
parent run, tagged `bench.group=NAME` and `bench.shard=I/N`, with the series table of its slice; its
children carry `bench.group` too. `group_table` merges the newest finished parent of every shard of a
group into the table the unsharded run would have made (same rows, same order), and `summarise_group`
logs the series summary of the whole group on a run tagged `bench.kind=group` (`bench summarise`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.errors import BenchInputError

Point = tuple[Any, int, Any]  # (series value, seed, resolved RunConfig), as made by bench.runner.plan


def cores() -> int:
    """CPU cores this process may use (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def threads_per_job(jobs: int) -> int:
    """Torch threads for each of `jobs` concurrent runs: the cores shared out, at least 1."""
    return max(1, cores() // max(1, jobs))


def parse_jobs(text: str | int) -> int | str:
    """`--jobs`: 'auto' or a positive integer (BenchInputError otherwise)."""
    value = str(text).strip().lower()
    if value == "auto":
        return "auto"
    if not value.isdigit() or int(value) < 1:
        raise BenchInputError(f"bad --jobs '{text}': use a positive integer or auto (e.g. --jobs 4)")
    return int(value)


def auto_jobs(points: Sequence[Point]) -> tuple[int, list[Point]]:
    """`--jobs auto`: (workers, the points with `threads` set). On the CPU, one worker per `threads`
    cores (at most one per run), each run at `threads` torch threads (1 where the config says 0): the
    thread count of a run does not depend on how many runs there are, so a series resumed with fewer
    runs left computes what it would have uninterrupted. On an accelerator, one process (runs share it
    badly) with the thread count as configured."""
    from bench.device import resolve_device

    if not points or resolve_device(points[0][2].device).type != "cpu":
        return 1, list(points)
    threads = points[0][2].threads or 1
    return max(1, min(len(points), cores() // threads)), with_threads(points, threads)


def with_threads(points: Sequence[Point], threads: int) -> list[Point]:
    """The points with config `threads` set to `threads` where it is 0 (= from the machine)."""
    out = []
    for value, seed, cfg in points:
        if getattr(cfg, "threads", None) == 0:
            cfg = dataclasses.replace(cfg, threads=threads)
        out.append((value, seed, cfg))
    return out


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' -> (I, N), 1 <= I <= N (BenchInputError otherwise)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise BenchInputError(
            f"bad --shard '{text}': expected I/N with 1 <= I <= N, e.g. 2/4; "
            "fix: in a Slurm array use --shard $SLURM_ARRAY_TASK_ID/N with --array=1-N"
        )
    return int(m.group(1)), int(m.group(2))


def shard_points(points: Sequence[Point], shard: tuple[int, int]) -> list[Point]:
    """Shard I of N: the runs with plan index k, k % N == I - 1 (BenchInputError if it has none)."""
    i, n = shard
    mine = [p for k, p in enumerate(points) if k % n == i - 1]
    if not mine:
        raise BenchInputError(
            f"--shard {i}/{n} has no runs: the series x seeds has only {len(points)}; "
            f"fix: use at most {len(points)} shards"
        )
    return mine


def group_tags(group: str | None, shard: tuple[int, int] | None) -> dict[str, str]:
    """Tags of a parent run that belongs to a group (none without one)."""
    if group is None:
        return {}
    if not re.fullmatch(r"[A-Za-z0-9_.:-]+", group):
        raise BenchInputError(
            f"bad --group '{group}': use letters, digits and _ . : - only; fix: e.g. --group paper-2026-11"
        )
    i, n = shard or (1, 1)
    return {"bench.group": group, "bench.shard": f"{i}/{n}"}


# ---------------------------------------------------------------------------------------------------
# --jobs: worker processes


_WORKER: dict[str, Any] = {}


def _init_worker(
    uri: str, task_name: str, tasks_dir: str | None, threads: int, queue: Any, boss: int
) -> None:
    """Runs once in each worker process: open the store, find the task, set the thread count, handle
    SIGINT and SIGTERM (bench.signals: a run in progress ends KILLED, no other starts), and watch the
    `bench run` process `boss`: a worker whose boss was killed without warning stops as if told to."""
    import threading

    import torch

    from bench import signals
    from bench.tasks import get_task
    from bench.tracking import Tracker

    torch.set_num_threads(threads)
    signals.install(armed=False)
    threading.Thread(target=_watch, args=(boss,), daemon=True).start()
    _WORKER.update(tracker=Tracker(uri), task=get_task(task_name, tasks_dir), threads=threads, queue=queue)


def _watch(boss: int, every_s: float = 1.0) -> None:
    """Once process `boss` is gone (SIGKILL, a crash): send this worker SIGTERM, so that its run ends
    KILLED instead of finishing orphaned (a later `--resume` would run it a second time), then end the
    worker, which would otherwise wait for work forever."""
    while True:
        time.sleep(every_s)
        try:
            os.kill(boss, 0)
            continue
        except PermissionError:
            continue
        except ProcessLookupError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)
        while _WORKER.get("busy"):  # the run is being marked KILLED
            time.sleep(0.1)
        os._exit(128 + signal.SIGTERM)


def _work(job: tuple[int, str, str, str, Any, int, Any, Any, dict[str, str]]) -> tuple[int, list, list]:
    """One (series point, seed) in a worker: (plan index, table rows, child run ids)."""
    from bench import signals
    from bench.device import configure
    from bench.work import run_point

    index, exp_id, parent_id, profile, value, seed, cfg, settings, tags = job
    _WORKER["busy"] = True
    try:
        with signals.armed():  # raises at once if a signal came before this queued run started
            configure(cfg.device, cfg.threads or _WORKER["threads"])  # as the parent does: tags read it
            queue = _WORKER["queue"]
            progress = (lambda label, n: _queue_hooks(queue, label)) if queue is not None else None
            task, tracker = _WORKER["task"], _WORKER["tracker"]
            rows, ids = run_point(
                tracker, exp_id, parent_id, task, profile, value, seed, cfg, settings, progress, tags
            )
    finally:
        _WORKER["busy"] = False
    return index, rows, ids


def _queue_hooks(queue: Any, label: str) -> Any:
    """Hooks that send (pid, label, phase, done, total, info) to the parent, at most ~5 times a second."""
    from bench.experiment import Hooks

    pid, state = os.getpid(), {"phase": "", "total": 0, "t": 0.0}

    def send(done: int, info: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - state["t"] > 0.2 or done >= state["total"]:
            state["t"] = now
            queue.put((pid, label, state["phase"], done, state["total"], info))

    def on_phase(phase: str, total: int) -> None:
        state.update(phase=phase, total=total)
        send(0, "", force=True)

    def on_epoch(epoch: int, loss: float) -> None:
        send(epoch, f"loss {loss:.2e}")

    def on_step(step: int, losses: Any) -> None:
        send(step + 1, f"loss {min(losses):.3g}")

    return Hooks(on_epoch=on_epoch, on_step=on_step, on_phase=on_phase)


class WorkerBars:
    """One overall bar (finished runs) and one bar per worker (its current run's phase), on stderr."""

    def __init__(self, total: int) -> None:
        from bench.console import rich_bars

        self.progress = rich_bars()
        self.overall = self.progress.add_task("all runs", total=total, info="")
        self.bars: dict[int, Any] = {}

    def update(self, msg: tuple[int, str, str, int, int, str]) -> None:
        pid, label, phase, done, total, info = msg
        if pid not in self.bars:
            self.bars[pid] = self.progress.add_task("", total=None, info="")
        desc = f"worker {list(self.bars).index(pid) + 1}: {label} {phase}"
        self.progress.update(self.bars[pid], description=desc, total=total, completed=done, info=info)

    def advance(self) -> None:
        self.progress.advance(self.overall)


# imported once by the fork server: workers fork from it instead of importing torch and MLflow each
# (torch._dynamo: torch's optimisers import it when the first one is made, ~1.5 s)
_PRELOAD = ["torch", "torch._dynamo", "mlflow.tracking", "bench.plots", "bench.experiment", "bench.work"]
_PRELOAD += ["bench.tasks", "bench.train", "bench.attack.reconstruct", "bench.evaluate"]
_PRELOAD += ["bench.analysis.baselines", "bench.analysis.memorisation"]


def start_early(jobs: int | str, uri: str | None) -> None:
    """For `jobs` (N or "auto") that may need workers on this machine: start the fork server now (where
    processes start by one), so that it imports torch, MLflow and bench (`_PRELOAD`, seconds of work)
    while this process imports its own and opens or creates the store at `uri`; the workers fork from it
    when the runs start. Harmless if no worker is needed in the end."""
    if jobs == 1 or cores() == 1:
        return
    ctx = _context(uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:")
    if ctx.get_start_method() == "forkserver":
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _context(uri: str) -> Any:
    """forkserver (workers fork from one process that imported torch and mlflow), else spawn (Windows)."""
    import multiprocessing as mp

    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    store = ["mlflow.store.tracking.sqlalchemy_store"] if uri.startswith("sqlite:") else []
    ctx.set_forkserver_preload(_PRELOAD + store)
    return ctx


def run_parallel(
    tracker: Any,
    exp_id: str,
    parent_id: str,
    task: Any,
    profile: str,
    points: Sequence[tuple[Any, int, Any, dict[str, Any]]],
    settings: Sequence[dict[str, float]] | None,
    jobs: int,
    show_progress: bool = False,
) -> list[tuple[list[dict[str, Any]], list[str]]]:
    """Run `points` (series value, seed, config, child tags) in `jobs` processes under `parent_id`:
    (table rows, child run ids) of each point, in the order given.

    On the first failed run, the runs not yet handed to a worker are cancelled (one more may start),
    the running ones finish and are logged, then its exception is raised. SIGINT or SIGTERM (to this
    process, to the workers, or both): the signal is passed on to every worker, each run in progress
    ends KILLED, the workers end, and `bench.signals.Interrupted` is raised with `done` = the runs that
    finished.
    """
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from bench import signals
    from bench.signals import Interrupted

    ctx = _context(tracker.uri)
    queue = ctx.Queue() if show_progress else None
    tasks_dir = str(Path(task.origin).parent) if getattr(task, "origin", "") else None
    init = (tracker.uri, task.name, tasks_dir, threads_per_job(jobs), queue, os.getpid())
    bars = WorkerBars(len(points)) if show_progress else None
    results: dict[int, tuple[list, list]] = {}
    pool = ProcessPoolExecutor(min(jobs, len(points)), ctx, initializer=_init_worker, initargs=init)
    futures = []
    try:
        if bars:
            bars.progress.start()
        futures = [
            pool.submit(_work, (k, exp_id, parent_id, profile, v, s, cfg, settings, tags))
            for k, (v, s, cfg, tags) in enumerate(points)
        ]
        pending = set(futures)
        while pending:
            signals.raise_pending()  # a signal that landed in a finaliser (bench.signals._unraisable)
            done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            while queue is not None and bars is not None:
                try:
                    bars.update(queue.get_nowait())
                except queue_mod.Empty:
                    break
            for fut in done:
                index, rows, ids = fut.result()  # raises the worker's exception
                results[index] = (rows, ids)
                if bars:
                    bars.advance()
    except KeyboardInterrupt as err:  # pass the signal on (if it did not reach the workers): runs end KILLED
        signum = getattr(err, "signum", signal.SIGINT)
        signals.received(signum)  # this process's own signal, or a worker's: the next one must wait
        for proc in list(getattr(pool, "_processes", None) or {}):
            with contextlib.suppress(OSError):
                os.kill(proc, signum)
        pool.shutdown(wait=True, cancel_futures=True)
        stopped = err if isinstance(err, Interrupted) else Interrupted(signum)
        stopped.done = sum(1 for f in futures if f.done() and not f.cancelled() and f.exception() is None)
        raise stopped from None
    except BaseException:  # a run failed: start no other, let the running ones finish and be logged
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        if bars:
            bars.progress.stop()
    pool.shutdown()
    return [results[k] for k in range(len(points))]


# ---------------------------------------------------------------------------------------------------
# groups: merging the shards


def group_parents(tracker: Any, experiment: str, group: str) -> dict[tuple[int, int], Any]:
    """The newest FINISHED parent run of each shard of `group`, keyed by (I, N).

    `experiment`: an experiment name or id. Raises BenchInputError if the group has no finished parent,
    or if its parents disagree on the shard count, task or profile.
    """
    exp_id = _experiment_id(tracker, experiment)
    query = (
        f"tags.`bench.group` = '{group}' and tags.`bench.kind` = 'parent' and attributes.status = 'FINISHED'"
    )
    runs = tracker.client.search_runs(
        [exp_id], query, max_results=10000, order_by=["attributes.start_time DESC"]
    )
    if not runs:
        raise BenchInputError(
            f"group '{group}' has no finished parent run in experiment '{experiment}' of {tracker.uri}; "
            "fix: check --group, --experiment and --tracking-uri, or run the shards first"
        )
    parents: dict[tuple[int, int], Any] = {}
    for run in runs:  # newest first: keep the newest of each shard
        parents.setdefault(parse_shard(run.data.tags.get("bench.shard", "1/1")), run)
    for tag in ("bench.task", "bench.profile"):
        values = {r.data.tags.get(tag) for r in parents.values()}
        if len(values) > 1:
            raise BenchInputError(
                f"group '{group}' mixes {tag} values {sorted(map(str, values))}; fix: use one group per run"
            )
    counts = {n for _, n in parents}
    if len(counts) > 1:
        raise BenchInputError(
            f"group '{group}' mixes shard counts {sorted(counts)}; fix: rerun with one N, or use a new group name"
        )
    return dict(sorted(parents.items()))


def group_table(tracker: Any, experiment: str, group: str, require_all: bool = True) -> pd.DataFrame:
    """The series table of a whole group: the shards' `series.csv` tables merged in plan order.

    Equal to the table of the same series run unsharded (round-robin shards: the k-th run of shard I
    is run k * N + I - 1 of the plan). `require_all`: raise BenchInputError naming the missing shards
    (else merge those present). Also raises if a (series point, seed, setting) occurs twice.
    """
    parents = group_parents(tracker, experiment, group)
    n = next(iter(parents))[1]
    missing = [f"{i}/{n}" for i in range(1, n + 1) if (i, n) not in parents]
    if missing and require_all:
        raise BenchInputError(
            f"group '{group}' lacks finished shards {', '.join(missing)}; fix: rerun them "
            "(e.g. bench run ... --group {group} --shard I/N), then summarise again"
        )
    tables, order = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for (i, n_), run in parents.items():
            path = tracker.client.download_artifacts(run.info.run_id, "series.csv", tmp)
            table = pd.read_csv(path)
            os.remove(path)
            point = np.cumsum(table["setting"].to_numpy() == 0) - 1  # a run's rows: settings 0..P-1
            order.append(point * n_ + (i - 1))  # its index in the unsharded plan
            tables.append(table)
    merged = pd.concat(tables, ignore_index=True)
    merged = merged.iloc[np.lexsort((merged["setting"].to_numpy(), np.concatenate(order)))]
    dup = merged.duplicated(["series_value", "seed", "setting", *merged.filter(like="sweep.").columns])
    if dup.any():
        first = merged[dup].iloc[0]
        raise BenchInputError(
            f"group '{group}' has run series={first['series_value']} seed={first['seed']} twice; "
            "fix: the group mixes different series: use a new group name"
        )
    return merged.reset_index(drop=True)


def summarise_group(
    task: Any,
    group: str,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    echo: Any = None,
) -> Any:
    """Log the series summary of a whole group on a new run tagged `bench.kind=group`; a RunSummary.
    First, the experiment's RUNNING runs whose process is gone are marked KILLED (`echo` says how many)."""
    from bench.summary import log_series_summary
    from bench.sweep import sweep_trends, swept_keys
    from bench.tracking import Tracker
    from bench.work import RunSummary

    tracker = Tracker(tracking_uri)
    exp_id = tracker.experiment(experiment or task.name)
    stale = tracker.end_stale(exp_id)
    if stale and echo is not None:
        echo(
            f"marked KILLED {len(stale)} run(s) left RUNNING by a process that is gone (killed without warning)"
        )
    parents = group_parents(tracker, experiment or task.name, group)
    first = next(iter(parents.values()))
    if first.data.tags.get("bench.task") != task.name:
        raise BenchInputError(
            f"group '{group}' ran task '{first.data.tags.get('bench.task')}', not '{task.name}'; fix: name that task"
        )
    table = group_table(tracker, experiment or task.name, group)
    profile = first.data.tags.get("bench.profile", "")
    tags = {"bench.task": task.name, "bench.profile": profile, "bench.kind": "group", "bench.group": group}
    with tracker.run(exp_id, f"{task.name}-{profile}-group-{group}", tags) as run:
        run.params(
            {"task": task.name, "profile": profile, "group": group, "shards": len(parents)}
            | {f"shard.{i}/{n}": r.info.run_id for (i, n), r in parents.items()}
        )
        trend = log_series_summary(run, table, task)
        swept = swept_keys(table)
        if swept:  # as run_task does: one trend per swept key
            trend_sweep = sweep_trends(table, swept)
            run.metrics(trend_sweep)
            trend.update(trend_sweep)
    return RunSummary(run.run_id, exp_id, table, trend)


def _experiment_id(tracker: Any, experiment: str) -> str:
    exp = tracker.client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    try:
        return tracker.client.get_experiment(experiment).experiment_id
    except Exception:
        raise BenchInputError(
            f"no experiment '{experiment}' in {tracker.uri}; fix: check --experiment and --tracking-uri"
        ) from None
