"""Everything that touches MLflow.

Default store: embedded SQLite at `mlruns/mlflow.db` (relative to the working directory), artifacts in
`mlruns/artifacts/<experiment>/`. Browse with `mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db`.
Any MLflow tracking URI works too (another SQLite file, a tracking server `http://host:5000`), given by
`--tracking-uri` or, failing that, the environment variable MLFLOW_TRACKING_URI.

Layout: one experiment per task (or `--experiment`); one parent run per invocation; one child run per (series
point, seed, setting), tagged `bench.task`, `bench.series_value`, `bench.seed`, and with the provenance tags
of `bench.provenance`. Curves are sent while the run works: a run that raises is FAILED with them kept.

Safety: a tracking server (http/https) is probed once with a short timeout before anything is logged, so an
unreachable one fails at once (exit 2), not after minutes of retries. The embedded store's folder is made
readable by its owner only (0700): its artifacts are reconstructions of training data.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bench import signals
from bench.errors import BenchInputError

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_DIR = "mlruns"
PROBE_TIMEOUT_S = 5.0
_reachable: set[str] = set()
_warned: set[str] = set()


def default_tracking_uri() -> str:
    """sqlite:///<abs cwd>/mlruns/mlflow.db (MLflow >= 3.7 refuses a bare file store)."""
    return f"sqlite:///{Path(DEFAULT_DIR).resolve() / 'mlflow.db'}"


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI bench uses: `uri`, else $MLFLOW_TRACKING_URI, else `default_tracking_uri()`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _sqlite_path(uri: str) -> Path | None:
    return Path(uri[len("sqlite:///") :]) if uri.startswith("sqlite:///") else None


# The MLflow UI (3.x) opens an untagged experiment in its GenAI view, where runs hide under "Model
# training"; this kind opens bench's experiments in the classic runs table.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


class Tracker:
    """A connection to one tracking store, with bench's run layout."""

    def __init__(self, uri: str | None = None, must_exist: bool = False, missing: str = "") -> None:
        """`must_exist`: a SQLite store whose file is missing is bad input (BenchInputError), not created
        (for readers such as `bench report`; `missing` replaces the end of its message)."""
        import logging

        from mlflow.tracking import MlflowClient

        for name in ("mlflow", "alembic"):  # table migrations of a new store print INFO lines
            logging.getLogger(name).setLevel(logging.WARNING)
        self.uri = resolve_uri(uri)
        check_tracking_uri(self.uri)
        path = _sqlite_path(self.uri)
        if must_exist and path is not None and not path.is_file():
            raise BenchInputError(
                f"no tracking store at '{path}' ({self.uri}); fix: check --tracking-uri (or "
                f"MLFLOW_TRACKING_URI){missing or '; `bench run` creates a store, reading one does not'}"
            )
        if path is not None:
            try:
                make_private_dir(path.parent)
            except OSError as e:
                raise BenchInputError(
                    f"cannot create the folder of tracking store '{self.uri}': {e}"
                ) from None
        probe_tracking_uri(self.uri)
        self.client = signals.HeldCalls(MlflowClient(tracking_uri=self.uri))

    def experiment(self, name: str) -> str:
        """The id of experiment `name`, created (with artifacts beside a SQLite store) if absent."""
        try:
            exp = self.client.get_experiment_by_name(name)
            if exp is not None:
                for key, value in EXPERIMENT_TAGS.items():
                    if key not in exp.tags:  # an experiment made before bench tagged its experiments
                        self.client.set_experiment_tag(exp.experiment_id, key, value)
                return exp.experiment_id
            path = _sqlite_path(self.uri)
            location = (path.parent / "artifacts" / name).resolve().as_uri() if path else None
            try:
                return self.client.create_experiment(name, artifact_location=location, tags=EXPERIMENT_TAGS)
            except Exception:  # another process created it meanwhile (`bench tune` workers start together)
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
                return exp.experiment_id
        except Exception as e:  # the first call that reaches the store: report it as bad input
            raise BenchInputError(f"cannot use tracking URI '{self.uri}': {type(e).__name__}: {e}") from None

    @contextmanager
    def run(
        self,
        experiment_id: str,
        name: str,
        tags: dict[str, Any],
        parent_id: str | None = None,
        resume_id: str | None = None,
    ) -> Iterator[RunLog]:
        """A run that ends FINISHED, or FAILED (keeping what was logged) when the block raises, or KILLED
        when it is interrupted (KeyboardInterrupt: Ctrl-C, or SIGTERM through bench.signals).

        `resume_id`: reopen that existing run (status RUNNING again, tags updated) instead of creating one.
        The provenance tags (`bench.provenance`, with the host and pid of this process) are added; a tag
        given in `tags` takes precedence. A signal while the run is made or marked is held till it is marked
        (`bench.signals.deferred`); one held while it is marked FINISHED is raised at the next store call.
        """
        from bench.provenance import provenance_tags

        all_tags = provenance_tags() | {k: str(v) for k, v in tags.items()}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        log: RunLog | None = None
        try:
            signals.raise_pending()  # held while the last run was marked FINISHED: make no other
            with signals.deferred():
                if resume_id:
                    self.client.update_run(resume_id, status="RUNNING")
                    log = RunLog(self.client, resume_id, self.client.get_run(resume_id).data.params)
                    log.tags(all_tags)
                else:
                    run = self.client.create_run(experiment_id, run_name=name, tags=all_tags)
                    log = RunLog(self.client, run.info.run_id)
            signals.raise_pending()
            yield log
            with signals.deferred():  # a signal stays pending, the run kept FINISHED (a failed send: FAILED)
                log.flush()
                self.client.set_terminated(log.run_id, "FINISHED")
        except BaseException as err:
            if log is None:  # no run was made: nothing to mark
                raise
            with signals.deferred():
                with suppress(Exception):  # a send the store refused: the run is marked all the same
                    log.flush()
                status = "KILLED" if isinstance(err, KeyboardInterrupt) else "FAILED"
                self.client.set_terminated(log.run_id, status)
            raise

    def find_run(self, experiment_id: str, tags: dict[str, Any]) -> str | None:
        """The newest run of the experiment carrying all these tags, or None."""
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        runs = self.client.search_runs(
            [experiment_id], query, max_results=1, order_by=["attributes.start_time DESC"]
        )
        return runs[0].info.run_id if runs else None

    def run_exists(self, run_id: str, experiment_id: str | None = None) -> bool:
        """Whether run_id is a run of this store (and of that experiment, if given)."""
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        return experiment_id is None or run.info.experiment_id == experiment_id

    def experiment_id(self, name: str) -> str | None:
        """The id of experiment `name`, or None when the store has none of that name (nothing created)."""
        exp = self.client.get_experiment_by_name(name)
        return exp.experiment_id if exp is not None else None

    def search(self, experiment_id: str, query: str) -> list[Any]:
        """Every run of the experiment matching the MLflow filter `query`, newest first (all pages)."""
        out: list[Any] = []
        token = None
        while True:
            page = self.client.search_runs(
                [experiment_id],
                query,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            out.extend(page)
            token = page.token
            if not token:
                return out

    def read_text(self, run_id: str, name: str) -> str | None:
        """The text artifact `name` of a run, or None if it has none (no progress bar on the terminal)."""
        from mlflow.environment_variables import MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR as BAR

        before = os.environ.get(BAR.name)
        os.environ[BAR.name] = "false"
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return Path(self.client.download_artifacts(run_id, name, tmp)).read_text()
        except Exception:
            return None
        finally:
            if before is None:
                del os.environ[BAR.name]
            else:
                os.environ[BAR.name] = before

    def end_stale(self, experiment_id: str) -> list[Any]:
        """Mark KILLED every RUNNING run of the experiment whose process is gone (it ran on this host and
        its pid no longer names it: SIGKILL, a crash; bench.provenance.process_gone). Returns those runs.
        A RUNNING run of another host is left as it is: this host cannot tell whether it lives."""
        from bench.provenance import process_gone

        stale = [
            r
            for r in self.search(experiment_id, "attributes.status = 'RUNNING'")
            if process_gone(r.data.tags)
        ]
        for run in stale:
            self.mark(run.info.run_id, "KILLED", {"bench.ended_by": "its process was gone (found stale)"})
        return stale

    def mark(self, run_id: str, status: str, tags: dict[str, Any] | None = None) -> None:
        """End a run another process left open (e.g. a killed worker's): status FAILED, FINISHED or KILLED."""
        for k, v in (tags or {}).items():
            self.client.set_tag(run_id, k, str(v))
        self.client.set_terminated(run_id, status)


class RunLog:
    """Buffered logging into one run (metrics go out in batches of up to 1000)."""

    def __init__(self, client: Any, run_id: str, params: dict[str, str] | None = None) -> None:
        """`params`: those the run already has (a reopened run): `params` leaves them as they are."""
        self.client, self.run_id = client, run_id
        self._metrics: list[Any] = []
        self._logged = set(params or {})
        self._sent = time.monotonic()

    def metric(self, key: str, value: float, step: int = 0) -> None:
        from mlflow.entities import Metric

        value = float(value)
        if np.isfinite(value):
            self._metrics.append(Metric(_key(key), value, 0, int(step)))
        if len(self._metrics) >= 1000:
            self.flush()

    def metrics(self, values: dict[str, float], step: int = 0) -> None:
        for key, value in values.items():
            self.metric(key, value, step)
        self.flush()

    def curve(self, key: str, steps: np.ndarray, values: np.ndarray) -> None:
        """A whole curve; it goes out with the next `metrics` or `flush` (or 1000 values at a time)."""
        for s, v in zip(steps, values, strict=True):
            self.metric(key, v, int(s))

    def flush(self, every_s: float = 0.0) -> None:
        """Send the buffered metrics (one transaction). `every_s` > 0: only if the last send is at least
        that old, so curves streamed at every monitor point cost a transaction every few seconds, not at
        each point (a SQLite commit is ~20-100 ms; a quick run has 11 monitor points)."""
        if not self._metrics or (every_s > 0 and time.monotonic() - self._sent < every_s):
            return
        batch, self._metrics, self._sent = self._metrics, [], time.monotonic()  # not resent
        try:
            self.client.log_batch(self.run_id, metrics=batch)
        except Exception:
            self._metrics[:0] = batch  # not sent: kept for the next flush
            raise

    def params(self, values: dict[str, Any]) -> None:
        from mlflow.entities import Param

        # a reopened run keeps its first values (MLflow's params cannot change): `--set threads=1` on a
        # resume, say, or `60.0` for `60`, which resolve to the same config
        items = [Param(_key(k), str(v)[:6000]) for k, v in values.items() if _key(k) not in self._logged]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def tags(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            self.client.set_tag(self.run_id, k, str(v))

    def artifact(self, local: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(local), folder)

    def figure(self, fig: Any, name: str) -> None:
        self.client.log_figure(self.run_id, fig, name)

    def text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def arrays(self, name: str, **arrays: np.ndarray) -> None:
        """Save arrays as `<name>.npz` under the run's artifacts (name may contain a folder)."""
        folder, _, stem = name.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{stem}.npz"
            np.savez_compressed(path, **arrays)
            self.artifact(path, folder or None)

    def torch_state(self, state: dict[str, Any], name: str) -> None:
        import torch

        folder, _, stem = name.rpartition("/")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / stem
            torch.save(state, path)
            self.artifact(path, folder or None)


# Tracking URI schemes bench accepts: the embedded SQLite store, an MLflow tracking server, Databricks, and
# the databases of MLflow's SQLAlchemy store (a dialect may name its driver: postgresql+psycopg2://).
URI_SCHEMES = ("sqlite", "http", "https", "postgresql", "mysql", "mssql", "databricks")


def check_tracking_uri(uri: str) -> None:
    """BenchInputError unless `uri` is a tracking URI bench can use (`URI_SCHEMES`); no I/O, so the CLI
    checks it before any work."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if uri.startswith("sqlite:") and _sqlite_path(uri) is None:
        raise BenchInputError(f"bad tracking URI '{uri}': use sqlite:///PATH/TO/FILE.db (three slashes)")
    if uri.startswith("file:") or not scheme:
        raise BenchInputError(
            f"unusable tracking URI '{uri}': MLflow refuses plain file stores; "
            "use sqlite:///PATH.db or http://HOST:PORT"
        )
    if scheme.split("+", 1)[0] not in URI_SCHEMES:
        raise BenchInputError(
            f"unsupported tracking URI scheme '{scheme}' in '{uri}': bench accepts "
            f"{', '.join(s + '://' for s in URI_SCHEMES)}; fix: e.g. --tracking-uri sqlite:///mlruns/mlflow.db "
            "or http://HOST:5000"
        )


def make_private_dir(folder: Path) -> None:
    """Create `folder` (and missing parents) readable by its owner only (0700); existing folders keep
    their permissions."""
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    folder.mkdir(parents=True, exist_ok=True)
    for p in missing:
        os.chmod(p, 0o700)


def probe_tracking_uri(uri: str, timeout: float = PROBE_TIMEOUT_S) -> None:
    """For an http(s) tracking URI: one request with a short timeout, BenchInputError when nothing answers
    (any HTTP answer, 401 included, counts as reachable). Other URIs, and URIs already reached, pass."""
    import urllib.error
    import urllib.request

    if not uri.lower().startswith(("http://", "https://")) or uri in _reachable:
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # the server answered (e.g. 401 without credentials)
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise BenchInputError(
            f"cannot reach the MLflow tracking server at {uri} ({reason}); fix: start it (mlflow server "
            "--host HOST --port PORT, see docs/tuning.md), correct --tracking-uri / MLFLOW_TRACKING_URI, "
            "or leave both unset for the local store mlruns/"
        ) from None
    _reachable.add(uri)


def warn_raw_data(uri: str, source: str) -> None:
    """Say once per process (on stderr) that raw arrays of a non-synthetic task go to a remote store (a
    server or a database: not sqlite/file)."""
    import sys

    remote = not uri.lower().startswith(("sqlite:", "file:")) and "://" in uri
    if source.startswith("synthetic") or not remote or uri in _warned:
        return
    _warned.add(uri)
    print(
        f"warning: raw arrays of real data ({source}: training samples, reconstructions, model weights) "
        f"are being logged to the remote store {uri}; use --set log.arrays=false --set log.images=false "
        "to keep them out (metrics are still logged)",
        file=sys.stderr,
    )


def _key(key: str) -> str:
    # MLflow keys allow alphanumerics, _ - . space / : keep ours that way.
    return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in key)


def load_arrays(client: Any, run_id: str, name: str) -> dict[str, np.ndarray]:
    """Read back an `arrays/<name>.npz` artifact of a run (for tests and re-analysis)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, f"arrays/{name}.npz", tmp)
        with np.load(local) as f:
            return {k: f[k] for k in f.files}


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, default=str)


# --- reading runs back (bench report, benchmarks/compare_runs.py) --------------------------------------


def load_runs(
    client: Any, experiments: Sequence[str] | None = None, parents: Sequence[str] | None = None
) -> pd.DataFrame:
    """Finished child runs as a table: run_id, parent_id, task, profile, seed, setting, series_value,
    every metric by name and every param by its dotted key. `experiments`: names (default: all);
    `parents`: parent run ids (their children only). Unknown names or ids raise BenchInputError."""
    import pandas as pd

    query = "tags.`bench.kind` = 'child' and attributes.status = 'FINISHED'"
    searches: list[tuple[list[str], str]] = []
    if parents:
        for pid in parents:
            try:
                exp = client.get_run(pid).info.experiment_id
            except Exception:
                raise BenchInputError(
                    f"no run '{pid}' in the tracking store; fix: pass a parent run id"
                ) from None
            searches.append(([exp], f"{query} and tags.`mlflow.parentRunId` = '{pid}'"))
    else:
        if experiments:
            ids = []
            for name in experiments:
                exp = client.get_experiment_by_name(name)
                if exp is None:
                    raise BenchInputError(
                        f"no experiment '{name}' in the tracking store; fix: use a task name"
                    )
                ids.append(exp.experiment_id)
        else:
            ids = [e.experiment_id for e in client.search_experiments()]
        if ids:
            searches.append((ids, query))
    rows = []
    for ids, text in searches:
        token = None
        while True:
            page = client.search_runs(ids, text, max_results=1000, page_token=token)
            rows.extend(_row(r) for r in page)
            token = page.token
            if not token:
                break
    return pd.DataFrame(rows)


def series_parents(client: Any, run_id: str) -> list[str]:
    """The parent runs whose children a series summary covers: `run_id` itself, or for the summary of a
    group of shards (`bench summarise`, params `shard.I/N` = each shard's parent) the shards' parents."""
    params = client.get_run(run_id).data.params
    return sorted(v for k, v in params.items() if k.startswith("shard.")) or [run_id]


def _row(run: Any) -> dict[str, Any]:
    import pandas as pd

    tags = run.data.tags
    row: dict[str, Any] = dict(run.data.params)
    row.update(run.data.metrics)
    seed = pd.to_numeric(tags.get("bench.seed"), errors="coerce")
    row.update(
        run_id=run.info.run_id,
        parent_id=tags.get("mlflow.parentRunId", ""),
        task=tags.get("bench.task", ""),
        profile=tags.get("bench.profile", ""),
        seed=int(seed) if np.isfinite(seed) else 0,
        setting=tags.get("bench.setting", "0"),
        series_value=tags.get("bench.series_value", ""),
    )
    return row


def series_order(series_value: Any, seed: Any) -> tuple:
    """Sort key for a child run's (series value, seed): numeric series values in numeric order, a two-axis
    sweep's "25/100" by each axis in turn, then any other (a task without a series logs None) as text."""
    try:
        return (0, tuple(float(v) for v in str(series_value).split("/")), "", int(seed))
    except (TypeError, ValueError):
        return (1, (), str(series_value), int(seed))


def in_series_order(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of `load_runs` as records, by series value then seed (`series_order`)."""
    return sorted(runs.to_dict("records"), key=lambda r: series_order(r["series_value"], r["seed"]))


def metric_history(client: Any, run_id: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """A run's logged curve `key`: (steps (k,), values (k,)) sorted by step; empty arrays if none."""
    hist = sorted(client.get_metric_history(run_id, key), key=lambda m: m.step)
    return np.array([m.step for m in hist], dtype=int), np.array([m.value for m in hist], dtype=float)
