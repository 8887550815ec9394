"""Search spaces of `bench tune`: the default spaces of both stages and the user's `--space` entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from bench.config import RunConfig, apply_overrides
from bench.errors import BenchInputError

Stage = Literal["classifier", "attack"]


@dataclass(frozen=True)
class Dim:
    """One searched config key. kind: 'log' (log-uniform), 'float' (uniform), 'int' or 'cat'.

    `points`: how many values a continuous range contributes to `--sampler grid` (ends included).
    """

    kind: Literal["log", "float", "int", "cat"]
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()
    points: int = 3

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "cat":
            return trial.suggest_categorical(name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high))
        return trial.suggest_float(name, self.low, self.high, log=self.kind == "log")

    def grid(self) -> list[Any]:
        """The values `--sampler grid` tries."""
        if self.kind == "cat":
            return list(self.choices)
        if self.kind == "int":
            return sorted({int(round(v)) for v in np.linspace(self.low, self.high, self.points)})
        space = np.geomspace if self.kind == "log" else np.linspace
        return [float(f"{v:.6g}") for v in space(self.low, self.high, self.points)]

    def describe(self) -> str:
        if self.kind == "cat":
            return "cat:" + ",".join(map(str, self.choices))
        return f"{self.kind}:{self.low:g}:{self.high:g}"


# Haim et al.'s sweep (random search): sigma log-uniform [1e-6, 0.1], lr log-uniform [1e-5, 1],
# lambda_min uniform [0.01, 0.5], alpha uniform [10, 500].
ATTACK_SPACE: dict[str, Dim] = {
    "attack.init_scale": Dim("log", 1e-6, 0.1),
    "attack.lr": Dim("log", 1e-5, 1.0),
    "attack.lam_min": Dim("float", 0.01, 0.5),
    "attack.alpha": Dim("float", 10.0, 500.0),
}
CLASSIFIER_SPACE: dict[str, Dim] = {
    "train.lr": Dim("log", 1e-2, 3.0),
    "train.init_scale": Dim("log", 1e-6, 1e-2),
    "model.width": Dim("cat", choices=(100, 250, 500, 1000)),
}


def parse_dim(key: str, text: str) -> Dim | None:
    """'log:1e-4:1', 'float:0.01:0.5', 'int:10:500', 'cat:100,500' (a range may end ':POINTS' for
    grid search), or 'off' (None: drop the key from the search)."""
    parts = text.strip().split(":")
    kind = parts[0].strip().lower()
    usage = (
        f"bad --space '{key}={text}': use KEY=log:LOW:HIGH, float:LOW:HIGH, int:LOW:HIGH "
        "(each optionally :GRID_POINTS), cat:A,B,C or off"
    )
    if kind == "off" and len(parts) == 1:
        return None
    if kind == "cat" and len(parts) == 2:
        choices = tuple(_number_or_text(c) for c in parts[1].split(",") if c.strip())
        if not choices:
            raise BenchInputError(usage)
        return Dim("cat", choices=choices)
    if kind not in ("log", "float", "int") or len(parts) not in (3, 4):
        raise BenchInputError(usage)
    try:
        low, high = float(parts[1]), float(parts[2])
        points = int(parts[3]) if len(parts) == 4 else 3
    except ValueError:
        raise BenchInputError(usage) from None
    if not low < high or (kind == "log" and low <= 0) or points < 2:
        raise BenchInputError(f"bad --space '{key}={text}': need LOW < HIGH (> 0 for log) and POINTS >= 2")
    return Dim(kind, low, high, points=points)  # type: ignore[arg-type]


def _number_or_text(text: str) -> Any:
    text = text.strip()
    for tp in (int, float):
        try:
            return tp(text)
        except ValueError:
            pass
    return text


def parse_space(pairs: list[str] | None) -> dict[str, Dim | None]:
    """`--space KEY=SPEC` entries -> {key: Dim or None (= off)}."""
    from bench.config import parse_assignment

    out: dict[str, Dim | None] = {}
    for text in pairs or []:
        key, value = parse_assignment(text)
        out[key] = parse_dim(key, value)
    return out


def stage_space(stage: Stage, user: dict[str, Dim | None], pinned: set[str]) -> dict[str, Dim]:
    """The stage's default space, minus keys the user pinned with --set, with the user's --space entries
    for this stage (attack.* keys belong to the attack stage, all others to the classifier stage)."""
    default = ATTACK_SPACE if stage == "attack" else CLASSIFIER_SPACE
    space = {k: d for k, d in default.items() if k not in pinned}
    for key, dim in user.items():
        if (key.startswith("attack.")) != (stage == "attack"):
            continue
        if dim is None:
            space.pop(key, None)
        else:
            space[key] = dim
    return space


def check_space(cfg: RunConfig, space: dict[str, Dim], stage: Stage) -> None:
    """Every key must exist and accept its range's ends (raises BenchInputError naming the key)."""
    for key, dim in space.items():
        if stage == "attack" and not key.startswith(("attack.", "eval.")):
            raise BenchInputError(f"bad --space key '{key}' for the attack stage: use attack.* keys")
        if key.startswith("eval."):
            raise BenchInputError(f"bad --space key '{key}': eval.* defines the error and cannot be tuned")
        ends = dim.choices if dim.kind == "cat" else (dim.low, dim.high)
        for value in ends:
            apply_overrides(cfg, {key: value})
    if not space:
        raise BenchInputError(f"nothing to search in the {stage} stage: every key is pinned or off")


def check_batchable(space: dict[str, Dim]) -> None:
    """`--batch > 1` runs trials as one attack population: only its per-setting keys may be searched."""
    from bench.attack.reconstruct import SETTING_KEYS

    for key in space:
        if key.removeprefix("attack.") not in SETTING_KEYS:
            allowed = ", ".join(f"attack.{k}" for k in SETTING_KEYS)
            raise BenchInputError(
                f"bad --batch with --space key '{key}': a batch shares everything but {allowed}; "
                f"use --batch 1, or pin it with --set {key}=VALUE"
            )
