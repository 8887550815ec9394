"""Typed dotted overrides, validated with messages that name the key."""

from __future__ import annotations

import pytest

from bench.config import apply_overrides, parse_assignment, to_dict
from bench.errors import ConfigError
from bench.experiment import resolve_config
from bench.tasks import get_task


def _cfg():
    return resolve_config(get_task("blobs-rect"), "smoke")


def test_overrides_are_typed() -> None:
    cfg = apply_overrides(
        _cfg(),
        {"attack.lr": "0.05", "train.init_scale": "1e-4", "data.blob_size": "4", "attack.optimizer": "sgd"},
    )
    assert cfg.attack.lr == 0.05 and isinstance(cfg.data.blob_size, int) and cfg.attack.optimizer == "sgd"
    assert to_dict(cfg)["attack.lr"] == 0.05


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("attack.lrr", "1", "unknown config key 'attack.lrr'"),
        ("atack.lr", "1", "'atack' is not a section"),
        ("attack.lr", "fast", "expected float"),
        ("attack.lr", "-1", "attack.lr"),
        ("data.blob_size", "2.5", "expected int"),
        ("data.blob_size", "500", "data.blob_size"),
        ("attack.optimizer", "lbfgs", "adam, sgd"),
        ("attack.beta2", "1", "attack.beta2"),
        ("model.bias", "all", "none, first"),
        ("eval.primary", "accuracy", "eval.primary"),
    ],
)
def test_bad_overrides_name_the_key(key: str, value: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        apply_overrides(_cfg(), {key: value})


def test_parse_assignment() -> None:
    assert parse_assignment("a.b = 3") == ("a.b", "3")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_assignment("attack.lr")


def test_profiles_and_series_resolve() -> None:
    task = get_task("blobs-walk")
    cfg = resolve_config(task, "quick", {"attack.steps": "7"}, series_value=25, seed=3)
    assert cfg.data.blob_size == 25 and cfg.data.shape == "walk" and cfg.attack.steps == 7 and cfg.seed == 3
