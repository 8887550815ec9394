"""Optuna storages for `bench tune`, both with heartbeats: a journal file (default) or an RDB URL.

A trial whose worker stops beating (killed) is failed and re-enqueued with the same parameters, up to
MAX_RETRY times, by the next worker that looks (`optuna.storages.fail_stale_trials`).

Optuna implements heartbeats for RDB storages only; `HeartbeatJournalStorage` adds them to the journal
storage through Optuna internals (private, or public but undocumented), checked against Optuna 5.0 and
pinned in pyproject.toml (`optuna>=5.0,<5.1`):
- `optuna.storages._heartbeat.BaseHeartbeat`: the abstract methods `record_heartbeat`,
  `_get_stale_trial_ids`, `get_heartbeat_interval` and `get_heartbeat_stale_trial_callback` (this last
  one is named so since Optuna 4.9; before, `get_failed_trial_callback`), and `fail_stale_trials` /
  `get_heartbeat_thread` recognising a storage as heartbeat-enabled by `isinstance(.., BaseHeartbeat)`;
- `FrozenTrial._trial_id` and `FrozenTrial.system_attrs` (the beat is a trial system attribute);
- `optuna.storages.RetryHeartbeatStaleTrialCallback` (Optuna >= 4.9).
Elsewhere bench.tune uses `get_heartbeat_thread`, `Study._storage` and `Trial._trial_id` (batch.py) and
the message of the RuntimeError `Study.tell` raises when a GridSampler stops the study (batch.py); and
Optuna 5's default TPE sampler (multivariate, constant liar; study.py).
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.errors import BenchInputError

MAX_RETRY = 3  # re-enqueues of a trial whose worker died
_HEARTBEAT_KEY = "bench:heartbeat"


def _journal_storage_class() -> type:
    """JournalStorage with heartbeats (Optuna implements them for RDB storages only).

    A heartbeat is a trial system attribute holding the worker's wall-clock time; a RUNNING trial whose
    last beat (or start) is older than the grace period is stale. Clocks of the processes sharing the
    file must agree (one machine, or NFS hosts kept in sync).
    """
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.trial import TrialState

    class HeartbeatJournalStorage(JournalStorage, BaseHeartbeat):
        def __init__(self, backend: Any, interval: int, grace: int, callback: Callable) -> None:
            super().__init__(backend)
            self._interval, self._grace, self._callback = interval, grace, callback

        def record_heartbeat(self, trial_id: int) -> None:
            # (a trial another worker already failed as stale cannot be updated any more)
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError, KeyError):
                self.set_trial_system_attr(trial_id, _HEARTBEAT_KEY, time.time())

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            now, stale = time.time(), []
            for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
                beat = t.system_attrs.get(_HEARTBEAT_KEY)
                if beat is None and t.datetime_start is not None:
                    beat = t.datetime_start.timestamp()
                if beat is not None and now - beat > self._grace:
                    stale.append(t._trial_id)
            return stale

        def get_heartbeat_interval(self) -> int | None:
            return self._interval

        def get_heartbeat_stale_trial_callback(self) -> Callable | None:
            return self._callback

    return HeartbeatJournalStorage


def default_storage_path(study: str, tracking_uri: str | None) -> Path:
    """`optuna/<study>.journal` beside a SQLite tracking store, else under ./mlruns."""
    from bench.tracking import DEFAULT_DIR, default_tracking_uri

    uri = tracking_uri or default_tracking_uri()
    base = Path(uri[len("sqlite:///") :]).parent if uri.startswith("sqlite:///") else Path(DEFAULT_DIR)
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in study)
    return base.resolve() / "optuna" / f"{safe}.journal"


def open_storage(url: str | None, study: str, tracking_uri: str | None, heartbeat: int) -> tuple[Any, str]:
    """(Optuna storage with heartbeats and retry of stale trials, description with the password hidden).

    url: None (journal file, see default_storage_path), `journal:PATH` or a path ending in .journal,
    or an RDB URL (`sqlite:///f.db`, `postgresql+psycopg2://user:pw@host/db`, `mysql+pymysql://...`).
    """
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    retry = RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
    interval, grace = max(1, int(heartbeat)), 3 * max(1, int(heartbeat))
    if url is None or url.startswith("journal:") or url.endswith(".journal"):
        path = (
            default_storage_path(study, tracking_uri)
            if url is None
            else Path(url[len("journal:") :] if url.startswith("journal:") else url)
        )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BenchInputError(f"cannot create the folder of --storage '{path}': {e}") from None
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return _journal_storage_class()(backend, interval, grace, retry), f"journal:{path}"
    if "://" not in url:
        raise BenchInputError(
            f"bad --storage '{url}': use an Optuna RDB URL (postgresql+psycopg2://USER:PW@HOST/DB, "
            "sqlite:///FILE.db) or journal:PATH"
        )
    shown = _hide_password(url)
    for attempt in range(3):  # workers starting together on a new database race to create its tables
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                storage = optuna.storages.RDBStorage(
                    url,
                    heartbeat_interval=interval,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=retry,
                    engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None,
                )
            return storage, shown
        except Exception as e:
            if attempt == 2:
                msg = f"{type(e).__name__}: {_first_line(e)}"
                raise BenchInputError(f"cannot open --storage '{shown}': {msg}") from None
            time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]
