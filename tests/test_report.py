"""Claims as data and `bench report`: planted effects get the right verdict; a real store gives a report."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.analysis.claims import CLAIMS, evaluate_all, get_claim
from bench.analysis.verdicts import VERDICTS

REQUIRED = (
    "medmnist-reconstructs",
    "dssim-steadier-than-l2",
    "interclass-variance",
    "dissimilar-lowers-loss",
    "pca-dissimilar-best",
    "resnet-dissimilar-beats-random",
    "blob-error-falls-rect",
    "blob-error-falls-walk",
    "blob-trend-linear",
    "genetic-worse-than-images",
    "width-vs-dn",
    "weight-decay-raises",
    "longer-training-lowers",
    "margin-predicts-quality",
    "haim-mnist-reconstructs",
)


def blob_runs(
    slope: float, seeds: int = 5, noise: float = 0.01, task: str = "blobs-rect", n: int = 50
) -> list:
    """Child-run rows of a blob study, no randomness: ncc_dist = 0.5 + slope * size + a seed offset + a
    wiggle of +-noise/5 at the largest size (sign alternating with the seed)."""
    rows = []
    for seed in range(seeds):
        offset = noise * (seed - 2) / 2
        wiggle = noise / 5 * (1 if seed % 2 == 0 else -1)
        for size in (1, 4, 25, 100):
            rows.append(
                {
                    "run_id": f"{task}-{n}-{seed}-{size}",
                    "task": task,
                    "profile": "study",
                    "seed": seed,
                    "setting": "0",
                    "data.blob_size": str(size),
                    "data.n_per_class": str(n),
                    "ncc_dist_mean": 0.5 + slope * size + offset + wiggle * size / 100,
                    "train/converged": 1.0,
                    "attack/converged": 1.0,
                }
            )
    return rows


def test_seed_trend_intervals_equal_a_plain_bootstrap_loop() -> None:
    """The vectorised bootstrap of bench.analysis.trends against a loop over the same draws."""
    from scipy import stats

    from bench.analysis.trends import per_seed, seed_trend

    t = pd.DataFrame(blob_runs(-0.002, noise=0.05)).drop(index=[3, 7])  # two seeds lack one size
    t["x"] = pd.to_numeric(t["data.blob_size"])
    fast = seed_trend(t, "x", "ncc_dist_mean", n_boot=300)
    grid_df = per_seed(t, "x", "ncc_dist_mean")
    xs, grid = grid_df.columns.to_numpy(dtype=float), grid_df.to_numpy(dtype=float)
    rng = np.random.default_rng(0)
    slopes, diffs = [], []
    for idx in rng.integers(0, len(grid), (300, len(grid))):
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = np.nanmean(grid[idx], axis=0)
        ok = np.isfinite(means)
        slopes.append(np.polyfit(xs[ok], means[ok], 1)[0])
        diffs.append(means[ok][-1] - means[ok][0])
    k = len(grid)  # the interval: the estimate ± t(k - 1) × the draws' sd rescaled by sqrt(k / (k - 1))
    t = stats.t.ppf(0.975, k - 1) * np.sqrt(k / (k - 1))
    for name, draws in (("slope", slopes), ("diff", diffs)):
        half = t * np.std(draws, ddof=1)
        assert fast[f"{name}_lo"] == pytest.approx(fast[name] - half, rel=1e-9)
        assert fast[f"{name}_hi"] == pytest.approx(fast[name] + half, rel=1e-9)


def test_the_claims_are_declared_as_data() -> None:
    ids = [c.id for c in CLAIMS]
    assert len(ids) == len(set(ids)) and set(REQUIRED) <= set(ids)
    for c in CLAIMS:
        assert c.statement and c.source and c.paper and c.tasks and c.metric and c.direction and c.rule
        assert all(cmd.startswith("bench run ") for cmd in c.commands())
    assert (
        "1273.13" in get_claim("blob-error-falls-rect").paper
        and "0.408" in get_claim("pca-dissimilar-best").paper
    )
    assert "arXiv" in get_claim("weight-decay-raises").source
    with pytest.raises(KeyError, match="blob-error-falls-rect"):
        get_claim("nope")


def test_no_runs_is_a_verdict_not_an_error() -> None:
    for table in (pd.DataFrame(), pd.DataFrame(blob_runs(-0.001, task="blobs-walk"))):
        verdicts = evaluate_all(table)
        assert len(verdicts) == len(CLAIMS) and all(v.verdict in VERDICTS for v in verdicts)
    assert {v.verdict for v in evaluate_all(pd.DataFrame())} == {"no runs"}
    assert verdicts[[c.id for c in CLAIMS].index("blob-error-falls-rect")].verdict == "no runs"


@pytest.mark.parametrize(
    ("slope", "seeds", "expected"),
    [
        (-0.002, 5, "reproduced"),
        (0.002, 5, "opposite"),
        (0.0, 5, "not reproduced"),
        (-0.002, 2, "inconclusive"),
    ],
)
def test_blob_trend_verdicts(slope: float, seeds: int, expected: str) -> None:
    runs = pd.DataFrame(blob_runs(slope, seeds) + blob_runs(0.0, seeds, task="blobs-rect-shuffled"))
    v = get_claim("blob-error-falls-rect").evaluate(runs)
    assert v.verdict == expected, v.bench
    assert v.n_seeds == seeds and len(v.run_ids) == len(runs)
    assert "blobs-rect-shuffled" in v.note  # the control's verdict beside the design's
    if expected == "reproduced":
        assert v.hi < 0 and "Δ" in v.bench and "n=50" in v.bench


def test_headline_is_the_largest_n_and_disagreeing_metrics_are_named() -> None:
    rows = blob_runs(-0.002, n=50) + blob_runs(0.002, n=10)
    for r in rows:  # DSSIM rises where NCC falls: the note must say the metrics disagree
        r["dssim_mean"] = 0.2 + 0.002 * float(r["data.blob_size"]) + 0.001 * r["seed"]
    v = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(rows))
    assert v.verdict == "reproduced" and "n=50" in v.bench
    assert "metrics disagree" in v.note and "dssim_mean" in v.note
    assert {(r["group"], r["verdict"]) for r in v.rows if r["metric"] == "ncc_dist_mean"} == {
        ("n=50", "reproduced"),
        ("n=10", "opposite"),
    }


def test_unconverged_runs_are_left_out_and_counted() -> None:
    rows = blob_runs(-0.002)
    for r in rows[:4]:
        r["attack/converged"] = 0.0
    v = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(rows))
    assert "4 of 20 runs left out" in v.note and len(v.run_ids) == 16


def test_linear_claim_needs_a_line() -> None:
    rows = blob_runs(-0.002)
    v = get_claim("blob-trend-linear").evaluate(pd.DataFrame(rows))
    assert v.verdict == "reproduced" and "R² of the per-size means 1.00" in v.bench
    for r in rows:  # a step down at the largest size only: falls, but not on a line in blob size
        r["ncc_dist_mean"] = 0.5 - (
            0.2 if r["data.blob_size"] == "4" else 0.25 if r["data.blob_size"] != "1" else 0
        )
        r["ncc_dist_mean"] += 0.001 * r["seed"]
    v = get_claim("blob-trend-linear").evaluate(pd.DataFrame(rows))
    assert v.verdict == "not reproduced" and "not on a line" in v.note


def _genetic_runs(loss_gap: float) -> pd.DataFrame:
    rows = []
    for seed in range(4):
        for red in ("pca", "deg"):
            for sel in ("random", "dissimilar"):
                good = sel == "dissimilar"
                rows.append(
                    {
                        "run_id": f"g{seed}{red}{sel}",
                        "task": "genetic-grid",
                        "profile": "quick",
                        "seed": seed,
                        "data.reduce.name": red,
                        "data.selection": sel,
                        "test_loss": 1.0 - loss_gap * good + 0.01 * seed,
                        "mae_mean": 0.3 - 0.1 * (good and red == "pca") + 0.002 * seed,
                        "train_accuracy": 1.0,
                        "test_accuracy": 0.6,
                        "resnet/test_accuracy": 0.6 + 0.3 * good + 0.01 * seed,
                    }
                )
    return pd.DataFrame(rows)


def test_genetic_claims_on_planted_tables() -> None:
    runs = _genetic_runs(0.5)
    assert get_claim("dissimilar-lowers-loss").evaluate(runs).verdict == "reproduced"
    assert get_claim("dissimilar-lowers-loss").evaluate(_genetic_runs(-0.5)).verdict == "opposite"
    best = get_claim("pca-dissimilar-best").evaluate(runs)
    assert best.verdict == "reproduced" and "test error 0.4" in best.bench
    assert get_claim("resnet-dissimilar-beats-random").evaluate(runs).verdict == "reproduced"
    assert get_claim("genetic-worse-than-images").evaluate(runs).verdict == "inconclusive"  # no image runs
    unconverged = runs.assign(**{"train/converged": 0.0})  # claims about training keep every run
    assert get_claim("dissimilar-lowers-loss").evaluate(unconverged).verdict == "reproduced"
    assert get_claim("pca-dissimilar-best").evaluate(unconverged).verdict == "inconclusive"


def test_factor_claims_use_swept_runs_of_any_profile() -> None:
    rows = []
    for seed in range(4):
        for width in (50, 200, 800):
            rows.append(
                {
                    "run_id": f"w{seed}{width}",
                    "task": "blobs-rect",
                    "profile": "quick",
                    "seed": seed,
                    "model.width": str(width),
                    "data.n_per_class": "10",
                    "memorised/frac": 0.2 + width / 1000 + 0.01 * seed,
                }
            )
    runs = pd.DataFrame(rows)
    assert get_claim("width-vs-dn").evaluate(runs).verdict == "reproduced"
    flat = get_claim("weight-decay-raises").evaluate(runs)  # runs of its tasks, but nothing varies it
    assert flat.verdict == "inconclusive" and "do not record train.weight_decay" in flat.note
    # a weight-decay sweep at width 800 stays out of the width trend (held fixed: one trend per decay)
    sweep = [r | {"run_id": f"{r['run_id']}wd{wd}", "train.weight_decay": wd, "memorised/frac": 0.0}
             for r in rows if r["model.width"] == "800" for wd in ("0.001", "0.01")]  # fmt: skip
    runs = pd.DataFrame([r | {"train.weight_decay": "0"} for r in rows] + sweep)
    v = get_claim("width-vs-dn").evaluate(runs)
    assert v.verdict == "reproduced" and {r["group"] for r in v.rows} == {"n=10 weight_decay=0"}
    assert get_claim("weight-decay-raises").evaluate(runs).verdict == "opposite"


def test_stand_in_images_and_baselines() -> None:
    rows = []
    for seed in range(4):
        row = {"run_id": f"d{seed}", "task": "digits-pair", "profile": "quick", "seed": seed}
        for c in (0, 1):
            row[f"class{c}/ncc_dist_mean"] = 0.2 + 0.01 * seed
            row[f"baseline/mean/class{c}/ncc_dist_mean"] = 0.6
            row[f"baseline/heldout/class{c}/ncc_dist_mean"] = 0.4 if c == 0 else 0.1  # class 1: held-out wins
        rows.append(row)
    v = get_claim("medmnist-reconstructs").evaluate(pd.DataFrame(rows))
    assert v.verdict == "opposite" and "stand-in" in v.note and len(v.rows) == 4


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A real (tiny) smoke run of blobs-rect in a fresh copy of the prepared store."""
    import torch
    from mlflow_store import fresh_store

    from bench.runner import run_task
    from bench.tasks import get_task

    torch.set_num_threads(1)
    uri = fresh_store(tmp_path_factory.mktemp("report"))
    small = {"data.n_per_class": 3, "model.width": 40, "attack.steps": 40, "attack.eval_every": 10}
    run_task(get_task("blobs-rect"), "smoke", seeds=1, overrides=small, tracking_uri=uri)
    return uri


def test_bench_report_writes_both_files_with_a_verdict_per_claim(store: str, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient
    from typer.testing import CliRunner

    from bench.cli import app

    start = time.perf_counter()
    res = CliRunner().invoke(app, ["report", "--out", str(tmp_path / "rep"), "--tracking-uri", store])
    assert res.exit_code == 0, res.output
    assert time.perf_counter() - start < 60
    md = (tmp_path / "rep" / "report.md").read_text()
    page = (tmp_path / "rep" / "report.html").read_text()
    # the claims the runs test first (summary row, then a section with the figure beside it), the others
    # as one list at the end, each with the command that runs it
    end = md.index("## Claims these runs do not test")
    for c in CLAIMS:
        assert f"id='{c.id}'" in page
        row = [ln for ln in md.splitlines() if ln.startswith(f"| {c.id} |")]
        if row:
            assert any(f"| {c.id} | {w} |" in row[0] for w in VERDICTS), row
            at = page.index(f"<h3 id='{c.id}'>")
            section = page[at : page.index("</section>", at)]
            assert "<figure><img" in section and "data:image/png;base64," in section
            assert md.index(f"### {c.id}:") < end
        else:
            item = next(ln for ln in md[end:].splitlines() if ln.startswith(f"- **{c.id}**"))
            assert f"Run: `{c.commands()[0]}`" in item
            assert page.index(f"<li id='{c.id}'>") > page.rindex("<section class='claim'>")
    assert "src='figures/" not in page  # self-contained
    blob = next(ln for ln in md.splitlines() if ln.startswith("| blob-error-falls-rect |"))
    assert "| inconclusive |" in blob and "ncc_dist_mean" in blob  # one seed: no interval
    assert "![blob-error-falls-rect](figures/blobs-rect.png)" in md  # the blob study's figure beside it
    assert "- **blobs-walk" not in md and "- **blob-error-falls-walk** " in md  # no walk runs
    client = MlflowClient(store)
    exp = client.get_experiment_by_name("report")
    logged = client.search_runs([exp.experiment_id])
    assert len(logged) == 1 and logged[0].data.tags["claim.blob-error-falls-rect"] == "inconclusive"
    names = {a.path for a in client.list_artifacts(logged[0].info.run_id)}
    assert {"report.md", "report.html"} <= names


def test_report_claims_lists_without_a_store_and_bad_input_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    res = CliRunner().invoke(app, ["report", "--claims"])
    assert res.exit_code == 0 and all(c.id in res.output for c in CLAIMS)
    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    res = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path), "--tracking-uri", uri, "--run", "deadbeef"]
    )
    assert res.exit_code == 2 and "fix:" in res.output


def test_a_metric_at_its_ceiling_is_inconclusive_not_a_negative_result() -> None:
    from bench.analysis.verdicts import trend

    rows = pd.DataFrame([{"seed": s, "x": x, "memorised/frac": 1.0} for s in range(5) for x in (10, 40, 400)])
    got = trend(rows, "x", "memorised/frac", +1, 0.1)
    assert got["verdict"] == "inconclusive" and "ceiling" in got["bench"]
    # a fall from the ceiling can show: judged as usual
    assert trend(rows, "x", "memorised/frac", -1, 0.1)["verdict"] == "not reproduced"


def test_a_verdict_that_changes_with_the_attack_budget_is_inconclusive() -> None:
    """The study at 5,000 steps shows the fall; its budget check re-runs blob size 100 at 10,000 steps for
    every seed, and there the error is back at the size-1 level: the verdict changes, so it is
    inconclusive and the note says why. A budget check that agrees keeps the verdict and says so."""
    main = blob_runs(-0.002)
    for r in main:
        r["attack.steps"] = "5000"
    v = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(main))
    assert v.verdict == "reproduced" and "No budget check (one attack budget, 5000 steps)" in v.note
    assert "Attacks converged: 20 of 20" in v.note

    def rerun(slope_at_100: float) -> list[dict]:
        rows = []
        for r in main:
            if r["data.blob_size"] == "100":
                rows.append(
                    r
                    | {
                        "run_id": r["run_id"] + "-long",
                        "profile": "study-budget",
                        "attack.steps": "10000",
                        "ncc_dist_mean": r["ncc_dist_mean"] - slope_at_100 * 100,
                    }
                )
        return rows

    flipped = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(main + rerun(-0.002)))
    assert flipped.verdict == "inconclusive"
    assert "Budget check failed: 5 of 20 runs re-run at 10000 steps instead of 5000" in flipped.note
    assert "'reproduced'" in flipped.note
    # how far each re-run attack moved the claim's metric: +0.2 at every re-run point (size 100 x 5 seeds)
    assert "(ncc_dist_mean moved by +0.2 to +0.2, median |change| 0.2)" in flipped.note
    steady = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(main + rerun(0.0)))
    assert steady.verdict == "reproduced" and "Budget check passed" in steady.note
    assert "(ncc_dist_mean moved by +0 to +0, median |change| 0)" in steady.note
    assert len(steady.run_ids) == 20  # the verdict is drawn on the main budget's runs


def test_runs_at_one_value_of_the_axis_are_inconclusive_with_the_reason() -> None:
    """Runs of the claim's tasks, but all at blob size 25: not `no runs`, and the note says why."""
    rows = [r for r in blob_runs(-0.002) if r["data.blob_size"] == "25"]
    v = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(rows))
    assert v.verdict == "inconclusive"
    assert "Only one value of data.blob_size" in v.note and "values: 25" in v.note and "fix:" in v.note
    v = get_claim("blob-trend-linear").evaluate(pd.DataFrame(rows))
    assert v.verdict == "inconclusive" and "Only one value of data.blob_size" in v.note


def test_fewer_than_three_seeds_are_inconclusive_with_the_reason() -> None:
    runs = pd.DataFrame(blob_runs(-0.002, seeds=2) + blob_runs(0.0, seeds=2, task="blobs-rect-shuffled"))
    v = get_claim("blob-error-falls-rect").evaluate(runs)
    assert v.verdict == "inconclusive" and v.n_seeds == 2
    assert "Only 2 seeds: a verdict needs >= 3" in v.note
    v = get_claim("blob-error-falls-rect").evaluate(pd.DataFrame(blob_runs(-0.002, seeds=5)))
    assert v.verdict == "reproduced" and "seeds" not in v.note  # enough seeds: no such note


def test_report_claims_read_the_axis_the_task_declares() -> None:
    from bench.analysis.judges import declared_axis
    from bench.tasks import get_task

    assert declared_axis(("blobs-rect",)) == get_task("blobs-rect").trend_axis == "data.blob_size"
    assert declared_axis(("medmnist-pairs",)) == "class_var/ratio"


def test_report_on_a_missing_store_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from bench.cli import app

    missing = tmp_path / "sub" / "typo.db"
    res = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "rep"), "--tracking-uri", f"sqlite:///{missing}"]
    )
    assert res.exit_code == 2, res.output
    assert "no tracking store at" in res.output and str(missing) in res.output and "fix:" in res.output
    assert not missing.exists() and not missing.parent.exists() and not (tmp_path / "rep").exists()


def test_report_on_a_store_without_runs_says_so(tmp_path: Path) -> None:
    from mlflow_store import fresh_store
    from typer.testing import CliRunner

    from bench.cli import app

    uri = fresh_store(tmp_path)
    res = CliRunner().invoke(
        app, ["report", "--out", str(tmp_path / "rep"), "--tracking-uri", uri, "--no-log"]
    )
    assert res.exit_code == 0, res.output
    assert res.output.startswith("no finished bench runs in ") and "every claim is 'no runs'" in res.output


def _pair_runs(task: str, slope: float, seeds: int = 3) -> list[dict]:
    """Rows of a pairs sweep: 4 pairs of ratio 0.4..1.3; gain over held-out = 0.2 + slope * ratio (+ seed jitter)."""
    rows = []
    for seed in range(seeds):
        for k, ratio in enumerate((0.4, 0.7, 1.0, 1.3)):
            rows.append(
                {
                    "run_id": f"{task}-{seed}-{k}",
                    "task": task,
                    "profile": "quick",
                    "seed": seed,
                    "setting": "0",
                    "series_value": f"{{'data.classes_a': ({k},), 'data.classes_b': (9,)}}",
                    "class_var/ratio": ratio + 0.01 * seed,
                    "gain/heldout/ncc_dist": 0.2 + slope * ratio + 0.005 * (seed - 1),
                    "ncc_dist_mean": 0.3,
                    "train/converged": 1.0,
                    "attack/converged": 1.0,
                }
            )
    return rows


def test_interclass_variance_takes_mnist_pairs_and_keeps_medmnist_first() -> None:
    claim = get_claim("interclass-variance")
    v = claim.evaluate(pd.DataFrame(_pair_runs("mnist-pairs", 0.3)))
    assert v.verdict == "reproduced" and v.bench.startswith("mnist-pairs") and v.n_seeds == 3
    both = pd.DataFrame(_pair_runs("mnist-pairs", 0.3) + _pair_runs("medmnist-pairs", -0.3))
    v = claim.evaluate(both)
    assert v.verdict == "opposite" and v.bench.startswith("medmnist-pairs")
    assert "mnist-pairs: reproduced" in v.note  # the other task's verdict on the same group is named


def _parity_runs(memorised: float, seeds: int = 3) -> pd.DataFrame:
    rows = []
    for seed in range(seeds):
        jitter = 0.01 * (seed - 1)
        rows.append(
            {
                "run_id": f"p{seed}",
                "task": "mnist-parity",
                "profile": "paper",
                "seed": seed,
                "memorised/frac": memorised + jitter,
                "membership/auc": memorised + 0.05 + jitter,
                "ssim_gt_0.4/count": 150.0,
                "ssim_gt_0.4/frac": 0.3,
                "baseline/heldout/ssim_gt_0.4/frac": 1.0,
                "baseline/mean/ssim_gt_0.4/frac": 1.0,
                "gain/heldout/ssim_gt_0.4": -0.7 + jitter,
                "gain/mean/ssim_gt_0.4": -0.7 + jitter,
                "data/n_train_distinct": 500.0,
                "test_accuracy": 0.9,
                "train/converged": 1.0,
                "attack/converged": 1.0,
            }
        )
    return pd.DataFrame(rows)


def test_haim_mnist_claim_on_memorisation_with_ssim_count_beside_its_baselines() -> None:
    claim = get_claim("haim-mnist-reconstructs")
    v = claim.evaluate(_parity_runs(0.8))
    assert v.verdict == "reproduced" and v.value == pytest.approx(0.3) and v.n_seeds == 3
    assert "150.0 of 500" in v.bench and "held-out 1.00" in v.bench and "test accuracy 0.9" in v.bench
    assert "does not tell the attack from held-out samples or the mean image" in v.note
    assert "gain/heldout/ssim_gt_0.4 (mnist-parity): opposite" in v.note
    assert {r["metric"] for r in v.rows} == {
        "memorised/frac",
        "membership/auc",
        "gain/heldout/ssim_gt_0.4",
        "gain/mean/ssim_gt_0.4",
    }
    assert claim.evaluate(_parity_runs(0.5)).verdict == "not reproduced"
    assert claim.evaluate(_parity_runs(0.8, seeds=2)).verdict == "inconclusive"


def test_the_note_counts_the_attacks_converged_over_the_step_size_integral_too() -> None:
    """Runs since 2026-12-05 log `attack/converged_movement` (the plateau rule over the last fifth of the
    step-size integral) beside `attack/converged`: the note gives both counts."""
    from bench.analysis.claims import attack_counts

    rows = pd.DataFrame(
        {"attack/converged": [1.0, 1.0, 1.0, 0.0], "attack/converged_movement": [1.0, 0.0, 0.0, 0.0]}
    )
    assert attack_counts(rows) == (
        " Attacks converged: 3 of 4 (1 of 4 over the last fifth of the step-size integral)."
    )
    assert attack_counts(rows.drop(columns="attack/converged_movement")) == " Attacks converged: 3 of 4."


def test_the_end_of_bench_run_says_each_trend_of_the_claims_in_words() -> None:
    """bench.analysis.findings: the claims naming the task, judged by their own rules on the runs, one line
    per trend of the headline group; the claim on the same trend with a test of its own (the line) gets
    one line of its own; claims on axes the runs do not vary (width, weight decay, ...) none."""
    from bench.analysis.findings import findings

    rows = blob_runs(0.0015, seeds=5, n=10)
    for r in rows:
        r |= {"profile": "quick", "memorised/frac": 1.0 - r["ncc_dist_mean"] / 2}
    runs = pd.DataFrame(rows)
    lines = findings("blobs-rect", runs, "ncc_dist_mean", "blob size (pixels)")
    v = get_claim("blob-error-falls-rect").evaluate(runs)
    head = v.head
    assert lines[0] == (
        f"error (ncc_dist) rises with blob size: {head['diff']:+.3g} [{head['diff_lo']:+.3g}, "
        f"{head['diff_hi']:+.3g}] from 1 to 100 pixels, 5 seeds: the opposite of the paper's fig 5 "
        "(blob-error-falls-rect)"
    )
    assert lines[1].startswith("memorised/frac falls with blob size: ") and "the opposite of" in lines[1]
    assert lines[2].startswith("the same trend, where the claim is that it falls linearly")
    assert lines[2].endswith("the opposite of the paper's fig 6 (blob-trend-linear)")
    assert len(lines) == 3  # no line for width-vs-dn etc.: one width, one weight decay
    # planted the paper's way, with 2 seeds: the words say why there is no verdict
    few = pd.DataFrame([r | {"profile": "quick"} for r in blob_runs(-0.0015, seeds=2, n=10)])
    line = findings("blobs-rect", few, "ncc_dist_mean", "blob size (pixels)")[0]
    assert line.startswith("error (ncc_dist) falls with blob size: ")
    assert line.endswith("inconclusive: 2 seeds, a verdict needs 3 (--seeds 3) (blob-error-falls-rect)")
    assert findings("blobs-walk", runs) == []  # no claim of blobs-walk has these runs


def test_each_architecture_is_judged_by_its_own_claim() -> None:
    """CNN runs (model.arch=cnn) count for blob-error-falls-rect-cnn only; MLP runs, and runs logged before
    model.arch existed, for blob-error-falls-rect only: a mixed store gives each claim its own verdict."""
    mlp = blob_runs(-0.002) + blob_runs(0.0, task="blobs-rect-shuffled")
    for r in mlp[:10]:
        r["model.arch"] = "mlp"  # the rest logged before the key existed
    cnn = [
        r | {"run_id": r["run_id"] + "-cnn", "profile": "quick", "model.arch": "cnn"}
        for r in blob_runs(0.002) + blob_runs(0.0, task="blobs-rect-shuffled")
    ]
    runs = pd.DataFrame(mlp + cnn)
    v_mlp = get_claim("blob-error-falls-rect").evaluate(runs)
    v_cnn = get_claim("blob-error-falls-rect-cnn").evaluate(runs)
    assert (v_mlp.verdict, v_cnn.verdict) == ("reproduced", "opposite")
    assert set(v_mlp.run_ids) == {r["run_id"] for r in mlp} and set(v_cnn.run_ids) == {
        r["run_id"] for r in cnn
    }
    assert get_claim("blob-error-falls-rect-cnn").evaluate(pd.DataFrame(mlp)).verdict == "no runs"
    assert (
        get_claim("blob-error-falls-rect-cnn").commands()[0].endswith("--profile quick --set model.arch=cnn")
    )


def test_every_claims_command_names_a_profile_its_task_has() -> None:
    """The command a claim prints (`Claim.commands`, in the report and at the end of `bench run`) runs: its
    profile exists on every task it names (weight-decay-raises-mnist once named a profile mnist-parity lacked)."""
    from bench.analysis.claims import CLAIMS
    from bench.tasks import all_tasks

    tasks = all_tasks()
    for claim in CLAIMS:
        for command in claim.commands():
            words = command.split()
            task, profile = words[2], words[words.index("--profile") + 1]
            assert profile in tasks[task].profiles, f"{claim.id}: {command}"


def test_weight_decay_on_mnist_is_judged_on_its_sweep_with_its_budget_check() -> None:
    """weight-decay-raises-mnist: mnist-parity's factors profile runs weight decay 0 and 1e-3 (the claim's
    axis); its runs, not the other profiles' (paper, kkt), count."""
    from bench.analysis.claims import get_claim
    from bench.experiment import resolve_config
    from bench.tasks import get_task

    claim, task = get_claim("weight-decay-raises-mnist"), get_task("mnist-parity")
    assert claim.profile == "factors" and not claim.any_profile
    decays = [
        resolve_config(task, "factors", {}, v, 0).train.weight_decay for v in task.profiles["factors"].series
    ]
    assert decays == [0.0, 1e-3]
    longer = resolve_config(task, "factors-budget", {}, task.profiles["factors"].series[1], 0).attack.steps
    assert (
        longer == 2 * resolve_config(task, "factors", {}, task.profiles["factors"].series[1], 0).attack.steps
    )


def test_the_kkt_recipes_networks_count_at_their_fixed_epochs_and_the_note_says_so() -> None:
    """haim-mnist-reconstructs-kkt counts the kkt profile's classifiers although weight decay's 4,000 epochs end
    short of train.stationary_tol at the paper's scale (train/converged 0); the plain claim would drop them."""
    runs = _parity_runs(0.8).assign(profile="kkt", **{"train/converged": 0.0})
    v = get_claim("haim-mnist-reconstructs-kkt").evaluate(runs)
    assert v.verdict == "reproduced" and v.n_seeds == 3
    assert "3 of 3 classifiers counted short of their stopping rule." in v.note
    plain = get_claim("haim-mnist-reconstructs").evaluate(runs.assign(profile="paper"))
    assert plain.verdict != "reproduced" and "3 of 3 runs left out" in plain.note
