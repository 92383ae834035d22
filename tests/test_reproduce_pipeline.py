"""Issue 19: a pipeline run reproduces step by step.

A two-step pipeline (prepare: scale the committed-then-snapshotted input; train: a seeded
or an unseeded forest on it, with a ``%%track`` cell) runs in a git + DVC project; its
parent run is reproduced (the pipeline file at the recorded commit, the input restored,
the same parameters), and each step is compared with its namesake.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jupyter_mlops import pipelines
from jupyter_mlops.config import load_config
from jupyter_mlops.reproduction import DIFFERENT, REPRODUCED, reproduce
from jupyter_mlops.reproduction.result import TAG_REPRODUCES, TAG_VERDICT

from .test_pipelines import notebook, write_pipeline

pytestmark = pytest.mark.slow

PREPARE = (
    "import pandas as pd\n"
    "df = pd.read_csv(source)\n"
    "df[df.columns[:-1]] = df[df.columns[:-1]] * scale\n"
    "df.to_csv(prepared, index=False)\n"
    "rows = len(df)"
)
TRAIN = (
    "%%track\n"
    "import pandas as pd\n"
    "from sklearn.ensemble import RandomForestClassifier\n"
    "from sklearn.metrics import log_loss\n"
    "df = pd.read_csv(prepared)\n"
    "X, y = df.drop(columns='target'), df['target']\n"
    "model = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=seed)\n"
    "model.fit(X, y)\n"
    "train_accuracy = model.score(X, y)\n"
    "# continuous: two unseeded forests (bootstrap samples) almost surely differ here\n"
    "train_loss = log_loss(y, model.predict_proba(X))"
)


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        cwd=root,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def pipeline_project(project: Path) -> Path:
    from sklearn.datasets import make_classification

    _git(project, "init", "-q")
    notebook(
        project / "prepare.ipynb",
        PREPARE,
        params="source = 'data/raw.csv'\nprepared = 'build/prepared.csv'\nscale = 1.0",
    )
    notebook(
        project / "train.ipynb",
        "%load_ext jupyter_mlops",
        TRAIN,
        params="prepared = 'build/prepared.csv'\nseed = 0",
    )
    write_pipeline(
        project,
        {
            "name": "forest",
            "params": {"scale": 2.0, "seed": 0},
            "steps": {
                "prepare": {
                    "notebook": "prepare.ipynb",
                    "inputs": ["data/raw.csv"],
                    "outputs": ["build/prepared.csv"],
                    "params": {"scale": "${scale}"},
                },
                "train": {
                    "notebook": "train.ipynb",
                    "inputs": ["build/prepared.csv"],
                    "params": {"seed": "${seed}"},
                },
            },
        },
    )
    (project / ".gitignore").write_text(".mlops/\nbuild/\n")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "pipeline")
    # The input data is DVC's: written after the commit, snapshotted by the pipeline run.
    X, y = make_classification(n_samples=300, n_features=6, flip_y=0.3, random_state=3)
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(target=y)
    (project / "data").mkdir()
    frame.to_csv(project / "data" / "raw.csv", index=False)
    return project


def _steps(client: MlflowClient, parent: str) -> dict[str, dict[str, float]]:
    run = client.get_run(parent)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    return {c.data.tags["mlops.pipeline.step"]: dict(c.data.metrics) for c in children}


def test_a_pipeline_run_reproduces_step_by_step(pipeline_project: Path) -> None:
    record = pipelines.run(pipeline_project / "pipeline.yaml", {"scale": 3.0})
    assert record.ok, record
    original = record.mlflow_run_id
    assert original is not None
    # The workspace changes after the run: the reproduction restores the recorded input.
    raw = pipeline_project / "data" / "raw.csv"
    changed = raw.read_text().replace("1\n", "0\n", 40)
    raw.write_text(changed)

    result = reproduce(original)  # the steps' pins are the running ones: no fresh env

    assert result.environment.mode == "current" and not result.environment.changes
    assert result.verdict == REPRODUCED, str(result)
    assert result.checked["steps"] == 2
    assert result.checked["metrics"] >= 2  # rows (prepare) and train_accuracy (train)
    assert result.checked["params"] >= 3
    config = load_config(pipeline_project)
    client = MlflowClient(config.tracking_uri)
    new = client.get_run(result.run_id)
    assert new.data.tags[TAG_REPRODUCES] == original
    assert new.data.params["scale"] == "3.0"  # the recorded override, not the default 2.0
    before, after = _steps(client, original), _steps(client, result.run_id)
    assert before == after and before["train"]["train_accuracy"] > 0.5
    assert client.get_run(original).data.tags[TAG_VERDICT] == REPRODUCED
    assert raw.read_text() == changed  # the user's workspace is left as it is


def test_an_unseeded_pipeline_step_is_named(pipeline_project: Path) -> None:
    record = pipelines.run(pipeline_project / "pipeline.yaml", {"seed": None})
    assert record.ok, record
    assert record.mlflow_run_id is not None
    step_run = record.steps["train"].mlflow_run_id
    assert step_run is not None

    result = reproduce(step_run, env="current")  # a step reproduces through its pipeline

    assert result.original_run_id == record.mlflow_run_id
    assert result.verdict == DIFFERENT, str(result)
    assert any(d.name.startswith("train: ") for d in result.differences), str(result)
    assert result.causes and result.causes[0].kind == "unseeded", str(result)
    assert "RandomForestClassifier" in result.causes[0].message
