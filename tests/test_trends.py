"""Trend statistics with seeds as the unit: a planted trend is found, a flat one is not."""

import numpy as np
import pandas as pd
import pytest

from bench.analysis.trends import boot_intervals, mean_ci, seed_trend, usable


def _table(slope: float, noise: float, seeds: int = 6, settings: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    rows = []
    for seed in range(seeds):
        offset = rng.normal(0, noise)  # a seed-level effect shared by all its points
        for x in (1, 4, 25, 100):
            for s in range(settings):
                rows.append({"series_value": x, "seed": seed, "setting": s, "m": slope * x + offset})
    return pd.DataFrame(rows)


def test_planted_trend_is_found_with_a_ci_that_excludes_zero():
    t = seed_trend(_table(0.01, 0.05), "series_value", "m")
    assert t["spearman_rho"] == 1.0
    assert abs(t["slope"] - 0.01) < 1e-9  # the seed offsets cancel in the per-x means
    assert 0 < t["slope_lo"] <= t["slope"] <= t["slope_hi"]
    assert abs(t["diff"] - 0.99) < 1e-9 and t["diff_lo"] > 0
    assert t["n_seeds"] == 6 and t["n_points"] == 4


def test_flat_series_has_a_ci_that_covers_zero():
    # each seed has a random curve and a partner seed with its mirror image: the per-x means are flat,
    # while single seeds slope both ways
    rng = np.random.default_rng(3)
    tab = _table(0.0, 0.0)
    for seed in range(0, 6, 2):
        curve = {x: rng.normal() for x in (1, 4, 25, 100)}
        for s, sign in ((seed, 1), (seed + 1, -1)):
            rows = tab["seed"] == s
            tab.loc[rows, "m"] = sign * tab.loc[rows, "series_value"].map(curve)
    t = seed_trend(tab, "series_value", "m")
    assert abs(t["slope"]) < 1e-12 and abs(t["diff"]) < 1e-12
    assert t["slope_lo"] < 0 < t["slope_hi"]
    assert t["diff_lo"] < 0 < t["diff_hi"]


def test_settings_do_not_count_as_seeds():
    # 1 seed with many settings: no interval can be given (a seed is the unit)
    t = seed_trend(_table(0.01, 0.0, seeds=1, settings=10), "series_value", "m")
    assert np.isnan(t["slope_lo"]) and np.isfinite(t["slope"])


def test_usable_drops_unconverged_runs():
    tab = pd.DataFrame({"train/converged": [1.0, 0.0, 1.0], "attack/converged": [1.0, 1.0, 0.0]})
    assert len(usable(tab)) == 1
    # a fixed step budget (no stopping rule): the attack flag is reported, not used to drop runs
    assert len(usable(tab.assign(**{"attack/stop_rule": 0.0}))) == 2
    assert len(usable(tab.assign(**{"attack/stop_rule": 1.0}))) == 1


def test_mean_ci_is_clipped_to_the_metrics_range():
    """A fraction's mean cannot leave [0, 1]: its t interval is clipped there (no coverage lost), the
    metrics without a known range are not."""
    from bench.analysis.verdicts import metric_range

    v = np.array([1.0, 1.0, 0.9])
    assert mean_ci(v)[2] > 1.0  # the plain t interval runs past 1
    m, lo, hi = mean_ci(v, metric_range("memorised/frac"))
    assert hi == 1.0 and lo == mean_ci(v)[1] and m == mean_ci(v)[0]
    assert mean_ci(np.array([0.0, 0.0, 0.1]), metric_range("membership/auc"))[1] == 0.0
    assert metric_range("test_accuracy") == (0.0, 1.0) and metric_range("ncc_dist_mean") is None
    outside = np.array([1.02, 0.98, 1.01])  # not a fraction after all: the range is not applied
    assert mean_ci(outside, (0.0, 1.0)) == mean_ci(outside)


def test_mean_ci_against_known_answer():
    m, lo, hi = mean_ci(np.array([1.0, 2.0, 3.0, 4.0]))
    # mean 2.5, s = 1.291, t(0.975, 3) = 3.182: 2.5 ± 2.054
    assert m == 2.5 and lo == pytest.approx(0.4457, abs=1e-4) and hi == pytest.approx(4.5543, abs=1e-4)
    assert np.isnan(mean_ci(np.array([1.0]))[1]) and mean_ci(np.array([2.0, 2.0, 2.0]))[1:] == (2.0, 2.0)


@pytest.mark.parametrize("k", [3, 5, 10])
def test_intervals_over_seeds_cover_the_truth_95_percent_of_the_time(k: int) -> None:
    """The point of a 95% interval. Normal per-seed values (true mean 0) and complete grids of k seeds
    at 3 x values (true slope 0.5, difference 1): mean_ci's and seed_trend's (boot_intervals) must cover the
    truth in 93-97% of 1,000 draws (binomial sd 0.7%). The percentile bootstrap they replaced covered
    76% at 3 seeds, 83% at 5, 89% at 10."""
    rng = np.random.default_rng(k)
    xs = np.array([0.0, 1.0, 2.0])
    hit_mean = hit_slope = hit_diff = 0
    trials = 1000
    for _ in range(trials):
        _, lo, hi = mean_ci(rng.standard_normal(k))
        hit_mean += lo <= 0 <= hi
        grid = 0.5 * xs + rng.standard_normal((k, 3))
        tr = boot_intervals(xs, grid, n_boot=400, rng_seed=int(rng.integers(1 << 30)))
        hit_slope += tr["slope_lo"] <= 0.5 <= tr["slope_hi"]
        hit_diff += tr["diff_lo"] <= 1.0 <= tr["diff_hi"]
    for hits in (hit_mean, hit_slope, hit_diff):
        assert 0.93 <= hits / trials <= 0.97


def test_two_groups_is_welchs_interval() -> None:
    from scipy import stats

    from bench.analysis.verdicts import two_groups

    a, b = np.array([1.0, 2.5, 3.0, 4.2]), np.array([0.1, 0.4, 2.0])
    diff, lo, hi = two_groups(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert diff == pytest.approx(a.mean() - b.mean())
    assert (lo, hi) == pytest.approx((ci.low, ci.high), rel=1e-9)
