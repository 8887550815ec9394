"""Dotted overrides of a run configuration (`--set attack.lr=0.05`): parsed by each field's declared type,
then checked by the config's own `check()` (bench.config), so a typo or an impossible value fails before any
work starts, naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

from bench.errors import ConfigError

RunConfig = Any  # bench.config.RunConfig (not imported: bench.config re-exports this module)


def parse_assignment(text: str) -> tuple[str, str]:
    """Split 'a.b=value' into ('a.b', 'value'), with a clear error for anything else."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"bad --set {text!r}: expected KEY=VALUE, e.g. --set attack.lr=0.05")
    return key.strip(), value.strip()


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a copy of `cfg` with dotted overrides applied (values may be strings or typed), checked."""
    cfg = _deepcopy(cfg)
    for key, value in overrides.items():
        _set(cfg, key, value)
    cfg.check()
    return cfg


def _deepcopy(cfg: Any) -> Any:
    changes = {
        f.name: _deepcopy(getattr(cfg, f.name))
        for f in dataclasses.fields(cfg)
        if dataclasses.is_dataclass(getattr(cfg, f.name))
    }
    return dataclasses.replace(cfg, **changes)


def _set(cfg: Any, key: str, value: Any) -> None:
    *path, leaf = key.split(".")
    node = cfg
    for i, part in enumerate(path):
        node = getattr(node, part, None) if dataclasses.is_dataclass(node) else None
        if node is None or not dataclasses.is_dataclass(node):
            raise ConfigError(f"unknown config key '{key}': '{'.'.join(path[: i + 1])}' is not a section")
    fields = {f.name: f for f in dataclasses.fields(node)} if dataclasses.is_dataclass(node) else {}
    if leaf not in fields or dataclasses.is_dataclass(getattr(node, leaf)):
        section = ".".join(path)
        names = [n for n, f in fields.items() if not dataclasses.is_dataclass(getattr(node, n))]
        where = f"section '{section}'" if section else "the top level"
        raise ConfigError(f"unknown config key '{key}': {where} has {', '.join(sorted(names))}")
    hints = typing.get_type_hints(type(node))
    setattr(node, leaf, coerce(value, hints[leaf], key))


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Parse `value` (a string from the command line, or a typed value) as type `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        text = value if not isinstance(value, str) else value.strip()
        for allowed in args:
            if text == allowed or str(allowed) == str(text):
                return allowed
        raise ConfigError(f"bad value {value!r} for '{key}': expected one of {', '.join(map(str, args))}")
    if origin in (typing.Union, types.UnionType):
        if isinstance(value, str) and value.lower() in ("none", "null", "") and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value {value!r} for '{key}'")
    if origin in (tuple, list):
        items = value
        if isinstance(value, str):
            items = [v for v in value.strip("()[] ").split(",") if v.strip()]
        inner = args[0] if args else str
        return tuple(coerce(v, inner, key) for v in items)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"bad value {value!r} for '{key}': expected true or false")
    if tp in (int, float, str):
        try:
            if tp is int and isinstance(value, str):
                as_float = float(value)
                if not as_float.is_integer():
                    raise ValueError
                return int(as_float)
            if tp is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            return tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"bad value {value!r} for '{key}': expected {tp.__name__}") from None
    raise ConfigError(f"'{key}' has a type bench cannot parse from the command line ({tp})")
