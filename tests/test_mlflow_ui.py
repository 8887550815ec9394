"""What the MLflow UI needs from bench: experiments of the custom-model kind (runs table, not the GenAI view)."""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from bench.tracking import Tracker


def test_new_experiments_are_tagged_custom_model_development(tracking_uri: str) -> None:
    exp_id = Tracker(tracking_uri).experiment("blobs-rect")
    tags = MlflowClient(tracking_uri).get_experiment(exp_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_untagged_experiment_is_tagged_when_bench_uses_it_and_a_user_kind_is_kept(
    tracking_uri: str,
) -> None:
    client = MlflowClient(tracking_uri)
    old = client.create_experiment("made-before")
    mine = client.create_experiment("user-kind", tags={"mlflow.experimentKind": "genai_development"})
    tracker = Tracker(tracking_uri)
    assert tracker.experiment("made-before") == old and tracker.experiment("user-kind") == mine
    assert client.get_experiment(old).tags["mlflow.experimentKind"] == "custom_model_development"
    assert client.get_experiment(mine).tags["mlflow.experimentKind"] == "genai_development"
