"""`bench run --sweep KEY=V1,V2,...`: any config key as an axis of a run, crossed with the task's series.

Pure helpers (no MLflow, no training): parse the command-line text, check every key and value against the
typed configs of `bench.config` (so a typo exits 2 before anything runs), expand several sweeps into their
cross product, and read the trend of a metric against each swept key from the finished series table.

How a sweep meets the task's series (`bench.runner.plan`):
- a swept key that is not the series key is crossed with the series: sweeps `a=1,2` and `b=x,y` on a series
  of 3 values give 2 x 2 x 3 points, each x the seeds;
- a swept key that is the series key (e.g. `data.blob_size`) replaces a series of values, as `--set`
  pins it;
- on a grid series (dict points: the study's n x blob size, the defence grid) a swept or pinned key leaves
  the grid points it is in, its values taking over, and the rest of the grid stays (`--set
  data.blob_size=100` runs the whole defence grid at blob size 100).

Each child run is tagged `bench.sweep.<key>` = its value, and the series table gets a column
`sweep.<key>`. The parent's trend per swept key (`sweep_trends`) pools everything else (the series and the
other swept keys) at each value: a marginal trend, with seeds as the unit (`bench.analysis.trends`).
Values are split on commas, so a tuple-valued key cannot be swept; use `--set` for it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.config import RunConfig, apply_overrides, parse_assignment
from bench.errors import ConfigError

TAG_PREFIX = "bench.sweep."  # child run tag: bench.sweep.<key>
COLUMN_PREFIX = "sweep."  # series.csv column: sweep.<key>
TREND_METRICS = ("error", "memorised/frac", "membership/auc")  # trended against each key where present


def parse_sweeps(texts: Iterable[str] | None) -> dict[str, tuple[str, ...]]:
    """Parse repeated `KEY=V1,V2,...` texts into {key: raw values}, in the order given.

    Raises ConfigError for a missing '=', an empty value list, an empty value, a repeated value or a key
    given twice. Values stay strings here; `check_sweeps` types them against the config.
    """
    out: dict[str, tuple[str, ...]] = {}
    for text in texts or []:
        if "=" not in text:
            raise ConfigError(
                f"bad --sweep {text!r}: expected KEY=V1,V2,...; fix: e.g. --sweep train.weight_decay=0,1e-3"
            )
        key, raw = parse_assignment(text)
        values = tuple(v.strip() for v in raw.split(","))
        if not raw or any(not v for v in values):
            raise ConfigError(
                f"bad --sweep {text!r}: empty value in the list; fix: give values like {key}=1,2,3"
            )
        if key in out:
            raise ConfigError(
                f"'--sweep {key}' given twice; fix: list all its values in one --sweep {key}=..."
            )
        out[key] = values
    return out


def check_sweeps(
    base: RunConfig, sweeps: Mapping[str, Sequence[Any]], overrides: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, ...]]:
    """Type and check every swept value on `base` (the run's resolved config): {key: typed values}.

    Raises ConfigError (naming the key) for an unknown key, a value of the wrong type or out of range,
    the key `seed` (use --seeds), a key also pinned with --set, or two values that are the same once typed.
    """
    typed: dict[str, tuple[Any, ...]] = {}
    for key, values in sweeps.items():
        if key == "seed":
            raise ConfigError("'--sweep seed=...' is not an axis; fix: use --seeds N (seeds 0..N-1)")
        if overrides and key in overrides:
            raise ConfigError(f"'{key}' is given with both --set and --sweep; fix: drop one of them")
        if not values:
            raise ConfigError(f"'--sweep {key}' has no values; fix: give --sweep {key}=V1,V2,...")
        out = []
        for value in values:
            try:
                out.append(get_value(apply_overrides(base, {key: value}), key))
            except ConfigError as e:
                raise ConfigError(f"--sweep {key}: {e}; fix: change or drop that value") from None
        if len(set(map(repr, out))) < len(out):
            raise ConfigError(
                f"'--sweep {key}' repeats a value ({', '.join(map(str, values))}); fix: list each once"
            )
        typed[key] = tuple(out)
    return typed


def expand(sweeps: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """The cross product of the swept values as override dicts, first key slowest; [{}] without sweeps."""
    if not sweeps:
        return [{}]
    keys = list(sweeps)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(sweeps[k] for k in keys))]


def get_value(cfg: Any, key: str) -> Any:
    """The value at dotted `key` in a config tree (e.g. 'train.weight_decay')."""
    node = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def sweep_trends(
    table: pd.DataFrame, keys: Iterable[str], metrics: Sequence[str] = TREND_METRICS, n_boot: int = 2000
) -> dict[str, float]:
    """{`trend/sweep/<key>/<metric>/<stat>`: value} for every swept key with numeric values and every
    metric column of `table` in `metrics` (see `bench.analysis.trends.seed_trend` for the statistics;
    `n_boot` bootstrap draws over seeds for the intervals' standard errors).

    All rows count, converged or not: a factor such as weight decay may itself stop the classifier short
    of the loss target, and dropping those rows would hide its effect (the table keeps the flags).
    """
    from bench.analysis.trends import seed_trend

    out: dict[str, float] = {}
    for key in keys:
        col = COLUMN_PREFIX + key
        if col not in table or pd.to_numeric(table[col], errors="coerce").isna().any():
            continue  # a categorical axis (e.g. model.bias): the table is the summary
        for metric in metrics:
            if metric not in table:
                continue
            stats = seed_trend(table, col, metric, n_boot=n_boot)
            out.update({f"trend/sweep/{key}/{metric}/{k}": float(v) for k, v in stats.items()})
    return out


def sweep_tags(cfg: RunConfig, keys: Iterable[str]) -> dict[str, Any]:
    """The child-run tags of one point: {`bench.sweep.<key>`: its value in `cfg`}."""
    return {TAG_PREFIX + key: get_value(cfg, key) for key in keys}


def swept_from_tags(tags: Mapping[str, Any] | None) -> dict[str, Any]:
    """The swept {key: value} named by a point's tags (the inverse of `sweep_tags`; other tags ignored)."""
    return {k.removeprefix(TAG_PREFIX): v for k, v in (tags or {}).items() if k.startswith(TAG_PREFIX)}


def swept_keys(table: pd.DataFrame) -> list[str]:
    """The swept keys of a series table, from its `sweep.<key>` columns (e.g. shards merged later)."""
    return [str(c).removeprefix(COLUMN_PREFIX) for c in table.columns if str(c).startswith(COLUMN_PREFIX)]
