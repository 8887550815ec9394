"""benchmarks/compare_runs.py: two stores matched run by run on their point (task, profile, swept
classifier params, series value, seed, setting)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlflow.tracking import MlflowClient
from mlflow_store import fresh_store

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str = "compare_runs"):
    """A script of benchmarks/ as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _store(folder: Path, runs: dict[tuple[int, int], dict[str, float]]) -> str:
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exp = client.create_experiment("blobs-rect")
    parent = client.create_run(exp, tags={"bench.kind": "parent"})
    for (size, seed), metrics in runs.items():
        tags = {"bench.kind": "child", "bench.series_value": str(size), "bench.seed": str(seed)}
        run = client.create_run(exp, tags=tags | {"mlflow.parentRunId": parent.info.run_id})
        for key, value in metrics.items():
            client.log_metric(run.info.run_id, key, value)
        client.set_terminated(run.info.run_id)  # bench's runs end FINISHED
    return str(folder)


def test_matches_runs_and_reports_the_differences(tmp_path: Path, capsys) -> None:
    ref = _store(
        tmp_path / "a",
        {(1, 0): {"ncc_dist_mean": 0.30, "memorised/frac": 1.0}, (25, 0): {"ncc_dist_mean": 0.50}},
    )
    other = _store(
        tmp_path / "b",
        {
            (1, 0): {"ncc_dist_mean": 0.40, "memorised/frac": 0.9},
            (25, 0): {"ncc_dist_mean": 0.45},
            (100, 0): {"ncc_dist_mean": 9.0},
        },
    )
    mod = _load()
    mod.main(ref, other)
    out = capsys.readouterr().out
    assert "2 runs in both stores" in out  # the run only in `other` is left out
    line = next(s for s in out.splitlines() if "(ncc_dist_mean)" in s)
    assert "mean +0.025 [" in line and "largest |diff| 0.1" in line  # (+0.10 - 0.05) / 2
    line = next(s for s in out.splitlines() if "(memorised/frac)" in s)
    assert "mean -0.1" in line  # only the run that has it


def _runs(folder: Path, runs: list[tuple[dict[str, str], dict[str, str], float]]) -> str:
    """A store of finished child runs, each (tags, params, ncc_dist_mean)."""
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exps: dict[str, str] = {}
    for tags, params, value in runs:
        task = tags["bench.task"]
        exp = exps.get(task) or exps.setdefault(task, client.create_experiment(task))
        run = client.create_run(exp, tags={"bench.kind": "child", "mlflow.parentRunId": "p"} | tags)
        for key, v in params.items():
            client.log_param(run.info.run_id, key, v)
        client.log_metric(run.info.run_id, "ncc_dist_mean", value)
        client.set_terminated(run.info.run_id)
    return str(folder)


def _point(task: str, profile: str, n: int, seed: int = 0) -> tuple[dict[str, str], dict[str, str]]:
    tags = {"bench.task": task, "bench.profile": profile, "bench.series_value": "4", "bench.seed": str(seed)}
    return tags, {"data.n_per_class": str(n), "data.blob_size": "4"}


def test_two_tasks_a_budget_check_and_a_second_axis_pair_only_with_their_own_point(
    tmp_path: Path, capsys
) -> None:
    """The regime study's store: rect and shuffled, n 10 and 25 (series value = blob size only), and a
    budget check at the same blob size and seed. All six runs share (series value 4, seed 0); each pairs
    with its own point, so every difference is the one built in (+0.01 .. +0.06), not a collision's."""
    points = [
        ("blobs-rect", "study", 10),
        ("blobs-rect", "study", 25),
        ("blobs-rect-shuffled", "study", 10),
        ("blobs-rect-shuffled", "study", 25),
        ("blobs-rect", "study-budget", 25),
        ("blobs-rect-shuffled", "study-budget", 25),
    ]
    ref = _runs(tmp_path / "a", [(*_point(*p), 0.1 * i) for i, p in enumerate(points)])
    # the other store logs a param the reference never did (a config field added since): constant, ignored
    other_runs = [(*_point(*p), 0.1 * i + 0.01 * (i + 1)) for i, p in enumerate(points)]
    for _, params, _ in other_runs:
        params["attack.stop_floor"] = "1.0"
        params["train.new_field"] = "x"
    other = _runs(tmp_path / "b", other_runs)
    _load().main(ref, other)
    out = capsys.readouterr().out
    assert "6 runs in both stores" in out
    line = next(s for s in out.splitlines() if "(ncc_dist_mean)" in s)
    assert "mean +0.035 [" in line and "largest |diff| 0.06" in line
    header = out.splitlines()[1].split()
    assert header[:4] == ["task", "profile", "n_per_class", "series"] and "blob_size" not in header


def test_a_point_run_twice_in_one_store_is_an_error_that_names_it(tmp_path: Path) -> None:
    import pytest

    ref = _runs(tmp_path / "a", [(*_point("blobs-rect", "study", 25), 0.1)])
    twice = _runs(
        tmp_path / "b",
        [(*_point("blobs-rect", "study", 10), 0.1)] + [(*_point("blobs-rect", "study", 25), 0.1)] * 2,
    )
    with pytest.raises(SystemExit) as err:
        _load().main(ref, twice)
    msg = str(err.value)
    assert str(tmp_path / "b") in msg and "'blobs-rect'" in msg and "data.n_per_class '25'" in msg
    assert "fix:" in msg


def test_a_single_run_pairs_with_a_pooled_one(tmp_path: Path, capsys) -> None:
    """benchmarks/pool_vs_single.sh: the single store's runs are setting 0, the pooled store's results
    setting "pooled" (constant within each store, so not part of the point)."""
    single = _runs(tmp_path / "a", [(_point("blobs-rect", "quick", 10)[0] | {"bench.setting": "0"}, {}, 0.3)])
    pooled = _runs(
        tmp_path / "b", [(_point("blobs-rect", "quick", 10)[0] | {"bench.setting": "pooled"}, {}, 0.2)]
    )
    _load().main(single, pooled)
    assert "1 runs in both stores" in capsys.readouterr().out


def test_a_task_without_a_series_is_matched_on_its_seeds(tmp_path: Path, capsys) -> None:
    """mnist-parity's runs have no series value (logged as None): they pair by seed, with the CI."""
    ref = _store(tmp_path / "a", {(None, 0): {"ncc_dist_mean": 0.30}, (None, 1): {"ncc_dist_mean": 0.40}})
    other = _store(tmp_path / "b", {(None, 0): {"ncc_dist_mean": 0.20}, (None, 1): {"ncc_dist_mean": 0.30}})
    _load().main(ref, other)
    out = capsys.readouterr().out
    assert "2 runs in both stores" in out
    line = next(s for s in out.splitlines() if "(ncc_dist_mean)" in s)
    assert "mean -0.1 [-0.1, -0.1]" in line


def test_fit_spikes_measures_the_rise_above_the_running_minimum(tmp_path: Path, capsys) -> None:
    """benchmarks/fit_spikes.py: a fit that falls, jumps by 0.5 at step 400 and falls again has one
    excursion of 0.5; a monotone fit has none; the start of the run (<= --skip) never counts."""
    import sys

    import numpy as np

    mod = _load("fit_spikes")
    steps = np.arange(1000)
    falling = 1.0 - 0.5 * steps / 1000
    spiked = falling.copy()
    spiked[400:420] += 0.5  # running min at 399 is 0.8005; at 400 the fit is 0.5 above it
    spiked[50] += 2.0  # inside the skipped start
    rise, at, n = mod.spikes(spiked, steps, 200, 0.1)
    assert at == 400 and abs(rise - 0.5) < 1e-3 and n == 1
    assert mod.spikes(falling, steps, 200, 0.1) == (0.0, 0, 0)

    folder = tmp_path / "s"
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exp = client.create_experiment("blobs-rect")
    parent = client.create_run(exp, tags={"bench.kind": "parent"})
    for seed, curve in ((0, spiked), (1, falling)):
        tags = {"bench.kind": "child", "bench.series_value": "25", "bench.seed": str(seed)}
        run = client.create_run(exp, tags=tags | {"mlflow.parentRunId": parent.info.run_id})
        for s in range(0, 1000, 10):
            client.log_metric(run.info.run_id, "attack/kkt_fit", float(curve[s]), step=s)
        client.set_terminated(run.info.run_id)
    sys.argv = ["fit_spikes.py", str(folder)]
    mod.main()
    out = capsys.readouterr().out
    # logged every 10 steps: the running minimum before step 400 is 0.805 (step 390)
    assert "seed 0: largest rise 0.495 at step 400, 1 excursion" in out
    assert "seed 1: largest rise 0.000" in out
    assert "2 runs: largest rise median 0.248" in out and "1 with an excursion > 0.1" in out


def test_replay_plateau_rejudges_stored_runs(tmp_path: Path, capsys) -> None:
    """benchmarks/replay_plateau.py: two stored 1,000-step runs with the old fixed window (1,000 steps, the
    whole run), one that moved and then stopped, one that never moved. Under their own window the rule
    cannot judge either (only the random start lies before it); with --fifth --floor 1 (200 steps) the one with a
    flat last fifth is converged, and a degraded run never is."""
    import sys

    mod = _load("replay_plateau")
    folder = tmp_path / "s"
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exp = client.create_experiment("blobs-rect")
    parent = client.create_run(exp, tags={"bench.kind": "parent"})
    moved = {s: (2.0 if s == 0 else 1.0) for s in range(0, 1001, 100)}
    still = {s: 1.0 - s / 2000 for s in range(0, 1001, 100)}  # -17% over the last 200 steps
    for seed, (curve, degraded) in enumerate(((moved, 0.0), (still, 0.0), (moved, 1.0))):
        tags = {"bench.kind": "child", "bench.series_value": "25", "bench.seed": str(seed)}
        run = client.create_run(exp, tags=tags | {"mlflow.parentRunId": parent.info.run_id})
        rid = run.info.run_id
        for key, value in (
            ("attack.steps", "1000"),
            ("attack.stop_window", "1000"),
            ("attack.stop_tol", "0.01"),
        ):
            client.log_param(rid, key, value)
        for s, v in curve.items():
            client.log_metric(rid, "attack/objective", v, step=s)
            client.log_metric(rid, "attack/error", v, step=s)
        for key, value in (
            ("attack/steps_run", 1000),
            ("attack/converged", 0),
            ("attack/degraded", degraded),
        ):
            client.log_metric(rid, key, value)
        client.set_terminated(rid)
    for flag, expect in (([], "0 replayed converged"), (["--fifth", "--floor", "1"], "1 replayed converged")):
        sys.argv = ["replay_plateau.py", str(folder), *flag]
        mod.main()
        out = capsys.readouterr().out
        assert f"3 attacks: 0 logged converged, {expect}" in out, out
    assert "seed 0: logged 0, replayed 1 (window 200)" in out
    assert "seed 1: logged 0, replayed 0 (window 200)" in out and "seed 2: logged 0, replayed 0" in out


def test_replay_with_the_movement_window_sees_a_run_that_settled_only_as_its_step_size_decayed(
    tmp_path: Path, capsys
) -> None:
    """--movement: the window is the last fifth of the step-size integral. Under cosine decay (1,000 steps,
    100 of warm-up) that is the last 484 steps, against 200 for --fifth: a run whose error fell until step
    800 and then sat still is converged by --fifth, not by --movement. A constant step size without warm-up
    gives a fifth of the steps either way."""
    import sys

    from bench.config import AttackConfig

    mod = _load("replay_plateau")
    assert mod.movement_window(AttackConfig(steps=1000, schedule="constant", warmup=0)) == 200
    assert mod.movement_window(AttackConfig(steps=1000)) == 484
    assert mod.movement_window(AttackConfig(steps=5000)) == 2555

    folder = tmp_path / "s"
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exp = client.create_experiment("blobs-rect")
    parent = client.create_run(exp, tags={"bench.kind": "parent"})
    tags = {"bench.kind": "child", "bench.series_value": "25", "bench.seed": "0"}
    rid = client.create_run(exp, tags=tags | {"mlflow.parentRunId": parent.info.run_id}).info.run_id
    params = {"attack.steps": "1000", "attack.schedule": "cosine", "attack.warmup": "100"}
    for key, value in params.items():
        client.log_param(rid, key, value)
    for s in range(0, 1001, 100):
        client.log_metric(rid, "attack/objective", 1.0, step=s)
        client.log_metric(rid, "attack/error", max(1.0 - s / 1000, 0.2), step=s)
    client.log_metric(rid, "attack/steps_run", 1000)
    client.set_terminated(rid)
    for flag, expect in (("--fifth", "replayed 1 (window 200)"), ("--movement", "replayed 0 (window 484)")):
        sys.argv = ["replay_plateau.py", str(folder), flag, "--floor", "1"]
        mod.main()
        assert expect in capsys.readouterr().out


def test_series_order_sorts_a_two_axis_value_numerically_on_each_axis() -> None:
    from bench.tracking import series_order

    values = ["25/100", "10/4", "25/25", "10/100", "25/4"]
    assert sorted(values, key=lambda v: series_order(v, 0)) == ["10/4", "10/100", "25/4", "25/25", "25/100"]
    assert series_order("4", 1) < series_order("16", 0) < series_order(None, 0)  # text after numbers


def test_curve_agreement_counts_points_within_tolerance_and_within_the_controls_own_drift() -> None:
    """benchmarks/compare_curves.py's criterion for a fast path over a long attack: within 0.01 of the
    reference at each monitor point after step 0, or within the distance a control run of the reference's
    own precision (its rounding reordered) drifts from the reference."""
    mod = _load("compare_curves")
    ref = {0: 0.9, 500: 0.40, 1000: 0.30, 1500: 0.25}
    fast = {0: 0.9, 500: 0.405, 1000: 0.315, 1500: 0.29}  # misses by 0.015 and 0.04
    control = {0: 0.9, 500: 0.41, 1000: 0.28, 1500: 0.26}  # drifts by 0.01, 0.02 and 0.01
    text = mod.agreement(ref, fast, 0.01)
    assert text == "within 0.01 of the reference at 1 of 3 monitor points (largest miss 0.0400 at step 1500)"
    text = mod.agreement(ref, fast, 0.01, control)
    assert text.endswith("; within max(0.01, the control's own distance) at 2 of 3")  # 0.015 <= 0.02
    assert mod.agreement(ref, ref, 0.01, control) == (
        "within 0.01 of the reference at 3 of 3 monitor points; "
        "within max(0.01, the control's own distance) at 3 of 3"
    )


def test_compare_curves_pairs_three_stores_by_point_and_prints_the_envelope(tmp_path: Path, capsys) -> None:
    """compare_curves.main on stores holding monitored curves: the control's drift is looked up on the
    same point (series value, seed) and the agreement line counts against it."""
    mod = _load("compare_curves")

    def store(name: str, curve: dict[int, float]) -> str:
        folder = tmp_path / name
        folder.mkdir()
        client = MlflowClient(fresh_store(folder))
        exp = client.create_experiment("blobs-rect")
        tags = {
            "bench.kind": "child",
            "bench.series_value": "25",
            "bench.seed": "0",
            "mlflow.parentRunId": "p",
        }
        run = client.create_run(exp, tags=tags)
        for step, value in curve.items():
            client.log_metric(run.info.run_id, "attack/ncc_dist_mean", value, step=step)
        client.set_terminated(run.info.run_id)
        return str(folder)

    ref = store("f32", {0: 0.9, 500: 0.40, 1000: 0.30})
    fast = store("bf16", {0: 0.9, 500: 0.40, 1000: 0.315})
    ctl = store("ctl", {0: 0.9, 500: 0.40, 1000: 0.28})
    mod.main(ref, fast, ("attack/ncc_dist_mean",), ctl)
    line = next(s for s in capsys.readouterr().out.splitlines() if "within" in s)
    assert line == (
        "attack/ncc_dist_mean: within 0.01 of the reference at 1 of 2 monitor points (largest miss 0.0150 at "
        "step 1000); within max(0.01, the control's own distance) at 2 of 2"
    )


def test_budget_pairs_pairs_each_attack_with_its_longer_rerun_on_the_same_classifier(
    tmp_path: Path, capsys
) -> None:
    """benchmarks/budget_pairs.py: a 5,000-step attack and its 10,000-step re-run (same task, seed, series
    value and classifier params) form one pair; a longer attack of another classifier (other train.*) and a
    point with one budget pair with nothing. The shorter attack's curve is flat after its start, so the
    rule holds over the step-size integral's last fifth too."""
    mod = _load("budget_pairs")
    folder = tmp_path / "s"
    folder.mkdir()
    client = MlflowClient(fresh_store(folder))
    exp = client.create_experiment("blobs-rect")

    def run(size: str, steps: int, decay: str, ncc: float, curve: dict[int, float]) -> None:
        tags = {
            "bench.kind": "child",
            "bench.task": "blobs-rect",
            "bench.series_value": size,
            "bench.seed": "0",
        }
        rid = client.create_run(exp, tags=tags | {"mlflow.parentRunId": "p"}).info.run_id
        for key, value in (("attack.steps", str(steps)), ("train.weight_decay", decay)):
            client.log_param(rid, key, value)
        for s, v in curve.items():
            client.log_metric(rid, "attack/objective", v, step=s)
        for key, value in (("ncc_dist_mean", ncc), ("attack/steps_run", steps), ("attack/converged", 1)):
            client.log_metric(rid, key, value)
        client.set_terminated(rid)

    flat = {0: 1.3} | {s: 0.34 for s in range(500, 5001, 500)}
    run("25", 5000, "0", 0.20, flat)
    run("25", 10000, "0", 0.17, {10000: 0.339})
    run("25", 10000, "0.001", 0.05, {10000: 0.2})  # another classifier: no 5,000-step twin
    run("100", 5000, "0", 0.40, flat)  # one budget only
    mod.main([str(folder)], "ncc_dist_mean")
    out = capsys.readouterr().out
    assert f"== {folder}: 1 pairs" in out
    assert (
        "blobs-rect 25 seed 0: ncc_dist_mean 0.2000 at 5000 -> 0.1700 at 10000 (-0.0300); objective fell "
        "0.0010; converged 1, over the step-size integral 1"
    ) in out
    assert (
        "ncc_dist_mean moved by -0.0300 to -0.0300 (median |change| 0.0300; lower at 1 of 1); objective fell "
        "by at most 0.0010; converged at the shorter budget 1 of 1, over the step-size integral 1"
    ) in out
