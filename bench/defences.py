"""The defence grid (`--profile defences`): differential privacy crossed with weight decay and early stopping.

Every point is a dict of training overrides (see bench.registry.Profile), so the defences are training
options of the one pipeline (bench.train), not a second one. Each point sets every defence key, so a run's
cell can be read back from its config alone (bench.analysis.defences):

* `train.dp` / `train.dp_epsilon`: DP gradient descent at each epsilon of `EPSILONS` (inf: clipping
  without noise), and one point without DP (`train.dp=false`, plain training to the loss target);
* `train.weight_decay`: 0 or `WEIGHT_DECAY`;
* early stopping, a stated number of epochs (`EARLY`): `train.max_epochs` for plain training and
  `train.dp_epochs` under DP (the accountant's step count; sigma is calibrated for it, so epsilon stays
  the axis). "off" trains plain models to the target loss and DP models `DP_EPOCHS` steps.
"""

from __future__ import annotations

import math
from typing import Any

EPSILONS = (0.5, 1.0, 2.0, 4.0, 8.0, math.inf)
# Weight decay 1e-2: plain training on digits-pair (width 200) reaches the regularised stationary point in
# ~3,000 epochs; at 1e-3 it had not after 20,000 (stationarity 1.6e-3 > train.stationary_tol).
WEIGHT_DECAY = 1e-2
# Each defence crossed with the privacy axis, one at a time: none, weight decay, early stopping (3 x 7 points;
# the full 2 x 2 cross is `defence_series(cells=FULL_CROSS)`).
CELLS = ((0.0, "off"), (WEIGHT_DECAY, "off"), (0.0, "on"))
FULL_CROSS = ((0.0, "off"), (WEIGHT_DECAY, "off"), (0.0, "on"), (WEIGHT_DECAY, "on"))
# Full-batch DP-GD at lr 1 on digits-pair (n = 20, width 200): 20 noise-free clipped steps reach a training
# loss of ~0.03; more steps need more noise per step for the same epsilon (sigma grows ~ sqrt(steps)).
DP_EPOCHS = 20
EARLY = {
    "off": {"train.max_epochs": 20000, "train.dp_epochs": DP_EPOCHS},
    # plain digits-pair at 20 epochs: training loss ~0.03, test accuracy 1 (the target 1e-4 takes ~1,200)
    "on": {"train.max_epochs": DP_EPOCHS, "train.dp_epochs": DP_EPOCHS // 2},
}
KEYS = ("train.dp", "train.dp_epsilon", "train.weight_decay", "train.max_epochs", "train.dp_epochs")


def defence_series(
    epsilons: tuple[float, ...] = EPSILONS,
    cells: tuple[tuple[float, str], ...] = CELLS,
    early: dict[str, dict[str, Any]] | None = None,
    base: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], ...]:
    """The grid: (each epsilon with DP, and no DP) x the (weight decay, early stopping) `cells`.
    `early`: the overrides of each stopping name (default `EARLY`); `base`: overrides every point shares."""
    points = []
    for wd, stop in cells:
        for eps in (*epsilons, None):
            dp = {"train.dp": eps is not None, "train.dp_epsilon": math.inf if eps is None else eps}
            points.append({**(base or {}), **dp, "train.weight_decay": wd, **(early or EARLY)[stop]})
    return tuple(points)
