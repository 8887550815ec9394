"""The defence grid: its declaration, its table and figure, and the claims judged on it."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.analysis import defences as dfn
from bench.analysis.claims import get_claim
from bench.defences import CELLS, EPSILONS, defence_series

SEEDS = (0, 1, 2)


def test_series_crosses_every_epsilon_and_plain_training_with_each_cell() -> None:
    points = defence_series()
    assert len(points) == len(CELLS) * (len(EPSILONS) + 1)
    for k, (wd, _) in enumerate(CELLS):  # one block of levels per cell, in order
        block = points[k * (len(EPSILONS) + 1) : (k + 1) * (len(EPSILONS) + 1)]
        assert {p["train.weight_decay"] for p in block} == {wd}
        assert len({(p["train.max_epochs"], p["train.dp_epochs"]) for p in block}) == 1
    dp = [p["train.dp_epsilon"] for p in points[: len(EPSILONS) + 1] if p["train.dp"]]
    assert dp == list(EPSILONS) and not points[len(EPSILONS)]["train.dp"]
    assert {tuple(sorted(p)) for p in points} == {tuple(sorted(points[0]))}  # every point sets every key


def _runs(
    auc: dict[str, float], acc: dict[str, float], wd_effect: float = 0.0, seed_sd: float = 0.01
) -> pd.DataFrame:
    """A runs table as `bench report` reads it (params as strings): one cell (wd 0, long training) with
    the given membership AUC and test accuracy per level, plus wd = 0.01 rows with memorised/frac raised
    by `wd_effect`. Every DP run is unconverged."""
    rng = np.random.default_rng(0)
    rows = []
    for wd in (0.0, 0.01):
        for level in [*(f"{e:g}" for e in EPSILONS[:-1]), "inf", "none"]:
            for seed in SEEDS:
                dp = level != "none"
                eps = math.inf if level in ("inf", "none") else float(level)
                key = "∞" if level == "inf" else ("no DP" if level == "none" else level)
                rows.append(
                    {
                        "run_id": f"{wd}-{level}-{seed}",
                        "task": "digits-pair",
                        "profile": "defences",
                        "seed": seed,
                        "train.dp": str(dp),
                        "train.dp_epsilon": str(eps),
                        "train.weight_decay": str(wd),
                        "train.max_epochs": "20000",
                        "train.dp_epochs": "20",
                        "membership/auc": auc[key] + seed_sd * rng.standard_normal(),
                        "test_accuracy": acc[key] + seed_sd * rng.standard_normal(),
                        "memorised/frac": 0.2 + (wd_effect if wd else 0.0) + seed_sd * rng.standard_normal(),
                        "gain/heldout/ncc_dist": 0.0,
                        "ncc_dist_mean": 0.3,
                        "train/converged": 0.0 if dp and key != "∞" else 1.0,
                        "dp/epsilon": eps if dp else float("nan"),
                    }
                )
    return pd.DataFrame(rows)


LEVELS = ("0.5", "1", "2", "4", "8", "∞", "no DP")


def _by_level(*values: float) -> dict[str, float]:
    return dict(zip(LEVELS, values, strict=True))


def test_table_has_one_row_per_cell_and_level_with_seed_cis() -> None:
    runs = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.7, 0.9, 0.95, 1, 1))
    tab = dfn.defence_table(runs)
    assert len(tab) == 2 * len(LEVELS)
    assert list(tab["epsilon"][: len(LEVELS)]) == list(LEVELS)  # ordered by privacy, plain training last
    row = tab[(tab["epsilon"] == "2") & (tab["weight_decay"] == 0.0)].iloc[0]
    assert row["seeds"] == 3
    assert row["test_accuracy lo"] < row["test_accuracy"] < row["test_accuracy hi"]
    assert row["test_accuracy"] == pytest.approx(0.7, abs=0.03)
    assert row["converged"] == 0.0  # the unconverged DP runs are in the table, not dropped
    assert dfn.figure(runs, "t") is not None


def test_dp_claim_finds_the_stopping_epsilon_and_its_cost() -> None:
    claim = get_claim("dp-stops-reconstruction-at-a-cost")
    # AUC at chance up to epsilon 2, leaks from 4; accuracy 0.7 at epsilon 2 against 1.0 without DP
    runs = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.7, 0.9, 0.95, 1, 1))
    v = claim.evaluate(runs)
    assert v.verdict == "reproduced", v.bench
    assert "stopped at ε=2" in v.bench and v.value == pytest.approx(0.3, abs=0.03)
    assert v.n_seeds == 3 and len(v.run_ids) == len(runs)  # unconverged DP runs were judged
    # the same stop at no cost: not reproduced
    cheap = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(0.97, 0.98, 0.98, 1, 1, 1, 1))
    assert claim.evaluate(cheap).verdict == "not reproduced"
    # a cost whose interval straddles 5 points: inconclusive
    edge = _runs(
        _by_level(0.4, 0.4, 0.4, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.925, 1, 1, 1, 1), seed_sd=0.03
    )
    v = claim.evaluate(edge)
    assert v.lo < 0.05 < v.hi and v.verdict == "inconclusive", v.bench
    # a leak at epsilon 1 breaks the scan: epsilon 2 (at chance again) is not the stopping level
    gap = _runs(_by_level(0.49, 0.8, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.7, 0.9, 0.95, 1, 1))
    assert "stopped at ε=0.5" in claim.evaluate(gap).bench
    # no epsilon stops it: the claim holds within the grid
    leaky = _runs(_by_level(0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.7, 0.9, 0.95, 1, 1))
    v = claim.evaluate(leaky)
    assert v.verdict == "reproduced" and "no ε of the grid stops" in v.bench
    # without a defences profile: no runs
    assert claim.evaluate(runs.assign(profile="quick")).verdict == "no runs"


def test_a_budget_check_of_the_defence_grid_counts_every_run_and_keeps_its_own_table_rows() -> None:
    """The grid re-run with a 4x longer attack (every run, DP ones unconverged): the DP claim's budget
    check substitutes all of them, not only the converged classifiers. DP stops membership at epsilon 2
    for 2 points of accuracy (not reproduced); where the longer attack breaks through DP at every epsilon
    (reproduced: no epsilon of the grid stops it), the verdict changes and is inconclusive. The report's table keeps the
    two budgets apart (the main budget's rows unchanged by the longer runs), the figure draws the main
    budget."""
    claim = get_claim("dp-stops-reconstruction-at-a-cost")
    acc = _by_level(0.9, 0.95, 0.98, 0.99, 1, 1, 1)
    main = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), acc).assign(**{"attack.steps": "250"})
    same = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), acc).assign(**{"attack.steps": "1000"})
    leaks = _runs(_by_level(0.8, 0.8, 0.8, 0.8, 0.8, 0.9, 0.9), acc).assign(**{"attack.steps": "1000"})
    for longer in (same, leaks):
        longer["run_id"] = longer["run_id"] + "-long"
    n = len(main)
    v = claim.evaluate(pd.concat([main, same], ignore_index=True))
    assert (
        v.verdict == "not reproduced"
        and f"Budget check passed: {n} of {n} runs re-run at 1000 steps" in v.note
    )
    assert len(v.run_ids) == n and all(not r.endswith("-long") for r in v.run_ids)
    v = claim.evaluate(pd.concat([main, leaks], ignore_index=True))
    assert v.verdict == "inconclusive" and f"Budget check failed: {n} of {n} runs" in v.note
    assert "'reproduced' there against 'not reproduced'" in v.note

    both = pd.concat([main, leaks], ignore_index=True)
    tab = dfn.defence_table(both)
    assert len(tab) == 2 * len(dfn.defence_table(main)) and set(tab["attack steps"]) == {250, 1000}
    short = tab[tab["attack steps"] == 250].drop(columns="attack steps").reset_index(drop=True)
    pd.testing.assert_frame_equal(short, dfn.defence_table(main).drop(columns="attack steps"))
    at = tab[(tab["epsilon"] == "1") & (tab["weight_decay"] == 0.0)].set_index("attack steps")
    assert at.loc[250, "membership/auc"] == pytest.approx(0.49, abs=0.02)
    assert at.loc[1000, "membership/auc"] == pytest.approx(0.8, abs=0.02)
    fig = dfn.figure(both, "t")
    assert "attack 250 steps" in fig._suptitle.get_text()


def test_weight_decay_claim_is_rejudged_on_the_defence_runs_unconverged_included() -> None:
    claim = get_claim("weight-decay-raises")
    runs = _runs(
        _by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(1, 1, 1, 1, 1, 1, 1), wd_effect=0.3
    )
    v = claim.evaluate(runs)
    assert v.verdict == "reproduced" and "ε=no DP" in v.bench and "defences profile" in v.bench
    groups = {r["group"] for r in v.rows if r["metric"] == "memorised/frac"}
    assert {f"ε={lv} max/dp epochs 20000/20" for lv in LEVELS} == groups  # every level, DP ones too
    assert len(v.run_ids) == len(runs)
    # no effect, and seeds that agree closely enough (sd 0.003) for 3 seeds' t interval to exclude 10%
    flat = _runs(_by_level(*(0.49,) * 7), _by_level(*(1.0,) * 7), wd_effect=0.0, seed_sd=0.003)
    assert claim.evaluate(flat).verdict == "not reproduced"


def test_parent_logs_the_defence_table_and_figure_from_the_series_table() -> None:
    """`series.csv` names the defence keys `grid.train.*` (the grid point's overrides, as the runner writes
    them); the parent gets defences.csv and defences.png, unconverged DP runs included."""
    from io import StringIO

    from bench.runner import log_series_summary
    from bench.tasks import get_task

    class Parent:
        def __init__(self) -> None:
            self.texts: dict[str, str] = {}
            self.figures: list[str] = []

        def metrics(self, values: dict[str, float]) -> None:
            pass

        def text(self, text: str, name: str) -> None:
            self.texts[name] = text

        def figure(self, fig, name: str) -> None:
            self.figures.append(name)

    runs = _runs(_by_level(0.49, 0.49, 0.49, 0.8, 0.8, 0.9, 0.9), _by_level(0.6, 0.6, 0.7, 0.9, 0.95, 1, 1))
    params = ("train.dp", "train.dp_epsilon", "train.weight_decay", "train.max_epochs", "train.dp_epochs")
    table = runs.drop(columns=["task", "profile", "run_id"]).rename(columns={k: f"grid.{k}" for k in params})
    table["grid.train.dp"] = table["grid.train.dp"] == "True"  # typed in the series table
    table = table.assign(series_value="x", setting=0, primary="ncc_dist_mean")
    parent = Parent()
    log_series_summary(parent, table, get_task("digits-pair"))
    assert "defences.png" in parent.figures
    tab = pd.read_csv(StringIO(parent.texts["defences.csv"]))
    assert len(tab) == 2 * len(LEVELS) and tab["seeds"].eq(3).all()
    assert set(tab["epsilon"].astype(str)) == set(LEVELS)
