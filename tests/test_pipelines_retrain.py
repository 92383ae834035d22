"""Continuous training end to end: planted drift seen by real monitoring of a real deployment,
the pipeline in real kernels, the registry gate on the same holdout, and alert actions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jupyter_mlops import pipelines
from jupyter_mlops.config import load_config

from .test_pipelines import write_pipeline

EXAMPLES = Path(__file__).resolve().parents[1] / "notebooks" / "pipeline"


def spec(data: str) -> dict:
    run_dir = "${run_dir}"
    return {
        "name": "iris-retrain",
        "model": "iris-rf",
        "metric": "accuracy",
        "params": {"data": data, "seed": 0},
        "steps": {
            "validate-data": {
                "notebook": "nb/validate-data.ipynb",
                "params": {
                    "train_path": f"{run_dir}/train.csv",
                    "holdout_path": f"{run_dir}/holdout.csv",
                },
                "inputs": ["${data}"],
                "outputs": [f"{run_dir}/train.csv", f"{run_dir}/holdout.csv"],
            },
            "train": {
                "notebook": "nb/train.ipynb",
                "params": {
                    "train_path": f"{run_dir}/train.csv",
                    "holdout_path": f"{run_dir}/holdout.csv",
                    "metrics_path": f"{run_dir}/metrics.json",
                },
                "outputs": [f"{run_dir}/metrics.json"],
            },
            "evaluate": {
                "notebook": "nb/evaluate.ipynb",
                "params": {"metrics_path": f"{run_dir}/metrics.json", "min_accuracy": 0.3},
                "inputs": [f"{run_dir}/metrics.json"],
            },
        },
    }


def versions(name: str) -> list[str]:
    client = MlflowClient(load_config().tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


def alias(name: str, which: str) -> str:
    from jupyter_mlops import registry

    return str(registry.get_version(f"{name}@{which}").version)


@pytest.mark.slow
def test_retrain_promotes_a_better_challenger_and_keeps_the_champion_otherwise(
    project: Path, iris_csv: Path
) -> None:
    import numpy as np
    import pandas as pd

    from jupyter_mlops import monitoring, serving

    shutil.copytree(EXAMPLES, project / "nb", ignore=shutil.ignore_patterns("*.yaml"))
    current = project / "data" / "current.csv"
    shutil.copy(iris_csv, current)
    pipeline = write_pipeline(project, spec("data/current.csv"))

    # The first model: forced, with no champion to beat.
    first = pipelines.retrain("iris-rf", pipeline, force=True)
    assert first.action == "promoted", first
    assert first.version == "1" and first.incumbent is None and not first.same_holdout
    assert alias("iris-rf", "champion") == "1"

    # Planted drift: new data lands where the pipeline reads it, and the deployed champion
    # is asked about it.
    frame = pd.read_csv(iris_csv)
    features = [c for c in frame.columns if c != "target"]
    drifted = frame.copy()
    drifted[features] = drifted[features] + 3.0
    drifted.to_csv(current, index=False)
    deployment = serving.deploy("iris-rf@champion", name="iris-rf")
    try:
        for part in np.array_split(np.arange(len(drifted)), 5):
            deployment.predict(drifted.loc[part, features])
        quiet = pipelines.retrain(
            "iris-rf",
            pipeline,
            when="drift_share > 0.3 and requests > 1000",
            deployment="iris-rf",
        )
        better = pipelines.retrain(
            "iris-rf", pipeline, when="drift_share > 0.3", deployment="iris-rf"
        )
    finally:
        serving.stop("iris-rf")

    assert quiet.action == "not-triggered" and quiet.pipeline_run is None
    assert quiet.figures["drift_share"] > 0.3 and quiet.figures["requests"] == 5
    assert "requests = 5 > 1000: FAILED" in quiet.reason

    assert better.triggered and "drift_share" in better.reason
    assert better.action == "promoted", better
    assert better.same_holdout and better.incumbent_version == "1"
    assert better.candidate > better.incumbent + 0.2  # the old champion fails on new data
    assert alias("iris-rf", "champion") == alias("iris-rf", "challenger") == "2"
    assert [d["path"] for d in better.data] == ["data/current.csv"]

    # A worse challenger on the same data and holdout: registered nowhere, champion kept.
    worse = pipelines.retrain(
        "iris-rf", pipeline, force=True, params={"n_estimators": 1, "max_depth": 1}
    )
    assert worse.action == "kept-champion", worse
    assert worse.same_holdout and worse.candidate < worse.incumbent
    assert "challenger lost" in worse.reason
    assert versions("iris-rf") == ["1", "2"]
    assert alias("iris-rf", "champion") == alias("iris-rf", "challenger") == "2"

    # An alert rule naming a pipeline as its action; this one fails on bad data.
    (project / "data" / "bad.csv").write_text("a,b\n1,2\n")
    write_pipeline(project, spec("data/bad.csv"), "broken.yaml")
    checked = monitoring.check(
        "iris-rf",
        rules=[monitoring.AlertRule("drift_share > 0.3", action="pipeline:broken.yaml")],
        figures={"drift_share": 0.9},
    )
    (fired,) = checked.firing
    assert fired.action_error is None, fired.action_error
    outcome = fired.action_result
    assert outcome["action"] == "pipeline-failed"
    assert "step 'validate-data'" in outcome["reason"] and "no target column" in outcome["reason"]
    assert versions("iris-rf") == ["1", "2"] and alias("iris-rf", "champion") == "2"

    # Every decision is on record, newest first, and shown by the history.
    recorded = pipelines.list_decisions(model="iris-rf")
    assert [d.action for d in recorded] == [
        "pipeline-failed",
        "kept-champion",
        "promoted",
        "not-triggered",
        "promoted",
    ]
    stored = json.loads(
        (project / ".mlops/pipelines/retrain" / f"{better.decision_id}.json").read_text()
    )
    assert stored["figures"]["drift_share"] == better.figures["drift_share"]
    client = MlflowClient(load_config().tracking_uri)
    tagged = client.get_run(pipelines.get_pipeline_run(better.pipeline_run).mlflow_run_id)
    assert tagged.data.tags["mlops.retrain.action"] == "promoted"
    shown = str(pipelines.history())
    assert "kept-champion" in shown and "not-triggered" in shown and worse.pipeline_run in shown


def test_retrain_checks_its_inputs_before_running(project: Path) -> None:
    (project / "nb").mkdir()
    shutil.copy(EXAMPLES / "train.ipynb", project / "nb" / "train.ipynb")
    pipeline = write_pipeline(
        project, {"name": "p", "steps": {"train": {"notebook": "nb/train.ipynb"}}}
    )
    with pytest.raises(pipelines.PipelineError, match="canary needs the deployment"):
        pipelines.retrain("iris-rf", pipeline, force=True, canary_weight=10)
    with pytest.raises(Exception, match="not valid"):
        pipelines.retrain("iris-rf", pipeline, when="drift_share >>> 1")
    with pytest.raises(Exception, match="needs \\['drift_share'\\]"):
        pipelines.retrain("iris-rf", pipeline, when="drift_share > 0.3", figures={"p99_ms": 3})
    skipped = pipelines.retrain(
        "iris-rf", pipeline, when="drift_share > 0.3", figures=lambda dep, last: {"drift_share": 0}
    )
    assert skipped.action == "not-triggered" and skipped.pipeline_run is None
    assert pipelines.list_pipeline_runs() == []
