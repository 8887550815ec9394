"""`bench run --resume`: what a tracking store already holds of a series.

A series' runs are known by hashes: every child run carries `bench.config_hash` (what it computes,
`bench.work.config_hash`), its parent `bench.plan_hash` (the task, profile, group and shard, and every
run's config hash in plan order, `plan_hash`). `look_back` finds, in an experiment, the (series point,
seed) pairs with FINISHED runs of the same config hash (a query per pair) and their logged rows of the
series table, and the series' earlier parent to reopen; first it marks KILLED the RUNNING runs whose
process is gone (`Tracker.end_stale`). Without `--resume` it only says, in one line, that runs are
already there (looking at the series' first and last runs).
The runner (bench.runner) then runs the rest under that parent. Knows nothing of MLflow beyond the
`Tracker` it is given.
"""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.errors import BenchInputError
from bench.registry import Task
from bench.work import ROW_ARTIFACT, read_row

Rows = tuple[list[dict[str, Any]], list[str]]  # a pair's rows of the series table, its child run ids


def plan_hash(task: Task, profile: str, hashes: Sequence[str], group_tags: dict[str, str]) -> str:
    """A series as a 16-hex-digit hash (tag `bench.plan_hash` of its parent): the task, profile, group and
    shard, and the `config_hash` of every run in plan order. `--resume` reopens the parent of this hash."""
    text = json.dumps([task.name, profile, sorted(group_tags.items()), list(hashes)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Earlier:
    """What a store holds of a series: the experiment's id (None: no such experiment yet), `done`
    {plan index: (rows, child run ids)} of the pairs with FINISHED runs, and the series' earlier parent
    (`parent_id`, its `status`) to reopen, if any."""

    exp_id: str | None = None
    done: dict[int, Rows] = field(default_factory=dict)
    parent_id: str | None = None
    status: str | None = None

    def nothing_left(self, n_points: int) -> bool:
        """Every pair finished and the parent, if any, FINISHED too: nothing to run or to summarise."""
        return len(self.done) == n_points and self.status in (None, "FINISHED")


def look_back(
    tracker: Any,
    experiment: str,
    points: Sequence[tuple[Any, int, Any]],
    hashes: Sequence[str],
    plan_id: str,
    settings: Sequence[dict[str, float]] | None,
    resume: bool,
    say: Callable[[str], None],
) -> Earlier:
    """The earlier runs of a series (`points` with config `hashes`, plan `plan_id`) in `experiment`.

    `resume`: mark the stale runs KILLED, find the parent to reopen (BenchInputError when it still runs on
    this host), read the rows of the finished pairs. Without it: `say` one line if some pairs are already
    finished, and return nothing to reuse (the run makes them all again)."""
    earlier = Earlier(exp_id=tracker.experiment_id(experiment))
    if earlier.exp_id is None:
        if resume:
            say(f"note: no experiment '{experiment}' in this store yet: running all {len(points)} runs")
        return earlier
    exp_id = earlier.exp_id
    if resume:
        stale = tracker.end_stale(exp_id)
        if stale:
            say(
                f"marked KILLED {len(stale)} run(s) left RUNNING by a process that is gone (killed without warning)"
            )
        earlier.parent_id, earlier.status = _parent(tracker, exp_id, plan_id, say)
    # a plain run checks its first and last runs only (two queries): enough to see a command repeated
    for k in range(len(points)) if resume else sorted({0, len(points) - 1}):
        n_rows = 1 if points[k][2].attack.pool > 0 else len(settings or [None])
        found = _finished(tracker, exp_id, hashes[k], n_rows, earlier.parent_id, read=resume)
        if found is not None:
            earlier.done[k] = found
    if not resume:
        if earlier.done:
            say(
                f"note: runs of this series are already FINISHED in experiment '{experiment}' of this store; "
                "--resume runs only the others (this command runs them all again)"
            )
        earlier.done = {}
    elif not earlier.done and earlier.parent_id is None:
        say(f"note: no earlier runs of this series in experiment '{experiment}': running all {len(points)}")
    return earlier


def _parent(
    tracker: Any, exp_id: str, plan_id: str, say: Callable[[str], None]
) -> tuple[str | None, str | None]:
    """The newest parent run of the plan (id, status), or (None, None). One RUNNING on this host (its
    process alive: the stale ones are KILLED by now) is BenchInputError; on another host, a note."""
    parents = tracker.search(exp_id, f"tags.`bench.kind` = 'parent' and tags.`bench.plan_hash` = '{plan_id}'")
    if not parents:
        return None, None
    parent = parents[0]
    tags = parent.data.tags
    if parent.info.status == "RUNNING":
        where = f"pid {tags.get('bench.pid', '?')} on {tags.get('bench.host', '?')}"
        if tags.get("bench.host") == socket.gethostname():
            raise BenchInputError(
                f"this series is still running: parent run {parent.info.run_id} ({where}); "
                f"fix: wait for it, or stop it (kill {tags.get('bench.pid', 'PID')}) and resume"
            )
        say(f"note: resuming parent run {parent.info.run_id}, RUNNING by {where} (not checkable from here)")
    return parent.info.run_id, parent.info.status


def _finished(
    tracker: Any, exp_id: str, h: str, n_rows: int, parent_id: str | None, read: bool
) -> Rows | None:
    """A pair's FINISHED child runs of config hash `h` (`n_rows` of them, under one parent: `parent_id`'s
    if it has them, else the newest) as (rows, run ids), or None; `read`: read the rows (else empty)."""
    query = (
        f"tags.`bench.config_hash` = '{h}' and tags.`bench.kind` = 'child' and attributes.status = 'FINISHED'"
    )
    by_parent: dict[str, list[Any]] = {}
    for run in tracker.search(exp_id, query):  # newest first
        by_parent.setdefault(run.data.tags.get("mlflow.parentRunId", ""), []).append(run)
    for parent in sorted(by_parent, key=lambda p: p != parent_id):  # the reopened parent's first
        runs = sorted(by_parent[parent], key=lambda r: _setting(r.data.tags))
        if len(runs) != n_rows:
            continue
        texts = [tracker.read_text(r.info.run_id, ROW_ARTIFACT) for r in runs] if read else []
        if None not in texts:
            return [read_row(t) for t in texts], [r.info.run_id for r in runs]
    return None


def _setting(tags: dict[str, str]) -> int:
    """A child run's setting number (its order among a pair's runs); a pooled run's 'pooled' first."""
    value = tags.get("bench.setting", "0")
    return int(value) if value.isdigit() else -1


def resumed_line(summary: Any) -> str:
    """What `bench run --resume` says of a series it resumed (`summary`: bench.work.RunSummary)."""
    if summary.nothing_left:
        where = f" (parent run {summary.parent_run_id})" if summary.parent_run_id else ""
        return f"all {len(summary.table)} runs of this series are already FINISHED{where}: nothing to run"
    return (
        f"resumed parent run {summary.parent_run_id}: {summary.reused} run(s) had finished before and "
        "were not run again; the table counts each run once"
    )
