"""The decoupled control: shuffled blob tasks fit their training set at every blob size, and blob sizes
with too few distinct placements are refused or skipped with the reason."""

from __future__ import annotations

import pytest

from bench.data.split import InfeasibleData
from bench.experiment import prepare, resolve_config
from bench.runner import plan
from bench.tasks import get_task


@pytest.mark.parametrize("name", ["blobs-rect-shuffled", "blobs-walk-shuffled"])
def test_shuffled_smoke_profile_converges_at_every_blob_size(name: str) -> None:
    task = get_task(name)
    for value in task.profiles["smoke"].series:
        for seed in (0, 1):
            prep = prepare(resolve_config(task, "smoke", {"attack.steps": 1}, value, seed))
            assert prep.train_metrics["train/converged"] == 1.0, (value, seed)
            data = prep.data
            # both classes come from the same generator: equal pixel counts, labels balanced
            assert (data.x_train.sum(axis=1) == 100).all() and data.y_train.sum() == 0


def test_shuffled_classes_are_not_separable_by_design() -> None:
    data = resolve_config(get_task("blobs-rect-shuffled"), "quick", series_value=25).data.load(0)
    paper = resolve_config(get_task("blobs-rect"), "quick", series_value=25).data.load(0)
    # Moran's I of the two classes: equal in expectation for shuffled, far apart for the paper's design
    assert abs(data.stats["moran_i/class0"] - data.stats["moran_i/class1"]) < 0.1
    assert paper.stats["moran_i/class1"] - paper.stats["moran_i/class0"] > 0.5


def test_too_few_placements_exit_with_the_largest_feasible_size() -> None:
    task = get_task("blobs-rect")
    with pytest.raises(InfeasibleData, match=r"361 distinct placements.*fix: keep n_per_class \+ n_test"):
        resolve_config(task, "quick", {"data.n_per_class": 100}, 100)


def test_study_grid_skips_infeasible_points_with_a_reason() -> None:
    skipped: list[str] = []
    points = plan(get_task("blobs-rect-shuffled"), "study", 1, {}, None, skipped)
    # 50 per class + 150 held out, for both labels, needs 400 distinct 10x10 squares: only 361 exist
    assert any(r.startswith("50/100:") and "361" in r for r in skipped)
    assert len(points) == 3 * 7 - len(skipped)
