"""The classifier cache behind `$BENCH_CLASSIFIER_CACHE` (`bench.experiment.prepare`): a trained classifier
(data, network, metrics) stored per data/model/train config, seed, device, threads and torch version."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from bench.config import RunConfig, to_dict


def cached_prepare(cfg: RunConfig, train: Callable[[], Any], folder: str) -> Any:
    """`bench.experiment.prepare`'s result for `cfg` from the cache in `folder`, or `train()` stored there."""
    key = {k: v for k, v in to_dict(cfg).items() if not k.startswith(("attack.", "eval.", "log."))}
    key |= {"data_class": type(cfg.data).__qualname__, "torch": torch.__version__}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    path = Path(folder) / f"{digest}.pkl"
    if path.exists():
        with path.open("rb") as f:
            prep = pickle.load(f)
        timings = dict(prep.timings) | {"train_cached": 1.0}
        return dataclasses.replace(prep, config=cfg, timings=timings)
    prep = train()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    with tmp.open("wb") as f:
        pickle.dump(prep, f)
    tmp.replace(path)  # atomic: a concurrent reader sees the whole file or none
    return prep
