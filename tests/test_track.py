"""%%track through a real IPython shell and a real MLflow store, read back with plain MLflow."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mlflow
import pytest
from IPython.core.error import UsageError
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.config import load_config

from .conftest import IRIS_CELL, git


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _all_runs(client: MlflowClient) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def _only_run(client: MlflowClient):  # type: ignore[no-untyped-def]
    runs = _all_runs(client)
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return runs[0]


def test_iris_cell_reads_back_through_plain_mlflow(ip, iris_csv: Path) -> None:
    ip.run_cell_magic("track", "--experiment Iris_Classification -n first", IRIS_CELL)
    ns = ip.user_ns
    client = _client()
    run = _only_run(client)

    assert run.info.status == "FINISHED"
    assert run.info.run_name == "first"
    assert client.get_experiment(run.info.experiment_id).name == "Iris_Classification"
    # params: the cell's literal and the model's hyperparameters
    assert run.data.params["n_estimators"] == "100"
    assert run.data.params["random_state"] == "42"
    assert run.data.params["criterion"] == "gini"
    # metrics: the metric-named numeric result, exactly
    assert run.data.metrics["acc"] == pytest.approx(ns["acc"])
    assert "n_estimators" not in run.data.metrics
    # source: the cell's code as an artifact and its hash
    code = Path(
        mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="mlops/cell.py")
    )
    assert code.read_text() == IRIS_CELL
    assert run.data.tags["mlops.source.sha256"] == hashlib.sha256(IRIS_CELL.encode()).hexdigest()
    env = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=run.info.run_id, artifact_path="mlops/environment.json"
            )
        ).read_text()
    )
    assert "scikit-learn" in env["packages"] and "pandas" in env["packages"]
    assert env["python"] == run.data.tags["mlops.python"]

    # model: MLflow format, loads with pyfunc and predicts exactly as the original
    uris = json.loads(run.data.tags["mlops.models"])
    loaded = mlflow.pyfunc.load_model(uris["model"])
    X_test = ns["X_test"]
    assert (loaded.predict(X_test) == ns["model"].predict(X_test)).all()
    sig_inputs = [c["name"] for c in loaded.metadata.signature.inputs.to_dict()]
    assert sig_inputs == list(ns["X_train"].columns)
    info = mlflow.models.get_model_info(uris["model"])
    reqs = Path(mlflow.pyfunc.get_model_dependencies(uris["model"]))
    import sklearn

    assert f"scikit-learn=={sklearn.__version__}" in reqs.read_text().split()
    assert info.run_id == run.info.run_id

    # the training data as an MLflow dataset input with a content hash and shape
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1
    profile = json.loads(inputs[0].dataset.profile)
    assert profile["num_rows"] == len(ns["X_train"])
    tags = {t.key: t.value for t in inputs[0].tags}
    assert tags["mlflow.data.context"] == "training"
    assert len(tags["mlops.content_hash"]) == 64


def test_card_shows_run_and_escapes_html(ip, iris_csv: Path, capsys) -> None:
    ip.run_cell_magic("track", "-e Iris -n '<img src=x onerror=alert(1)>'", IRIS_CELL)
    run = _only_run(_client())
    from jupyter_mlops.tracking.run import TrackedRun

    # rebuild the card from what the shell displayed
    out = capsys.readouterr().out
    assert run.info.run_id in out
    assert "acc=" in out and "n_estimators=100" in out and "models:/" in out
    tracked = TrackedRun(
        run_id=run.info.run_id,
        experiment_id=run.info.experiment_id,
        experiment_name="Iris",
        run_name=run.info.run_name,
        config=load_config(),
    )
    html = tracked.card()._repr_html_()
    assert "<img" not in html and "&lt;img src=x" in html


def test_unknown_option_is_usage_error_and_cell_not_run(ip) -> None:
    with pytest.raises(UsageError):
        ip.run_cell_magic("track", "--bogus", "ran = True")
    assert "ran" not in ip.user_ns
    with pytest.raises(UsageError, match="key=value"):
        ip.run_cell_magic("track", "--tag novalue", "ran = True")
    assert "ran" not in ip.user_ns
    with pytest.raises(UsageError, match="contradict"):
        ip.run_cell_magic("track", "--model m --no-model", "ran = True")
    assert "ran" not in ip.user_ns
    assert _all_runs(_client()) == [] if (Path(".mlops/mlflow.db")).exists() else True


def test_missing_data_path_errors_before_cell_runs(ip, project: Path) -> None:
    with pytest.raises(UsageError, match=r"nope\.csv"):
        ip.run_cell_magic("track", "--data nope.csv --data also_missing/", "ran = True")
    assert "ran" not in ip.user_ns
    db = project / ".mlops" / "mlflow.db"
    assert not db.exists() or _all_runs(_client()) == []


def test_failing_cell_is_failed_run_with_traceback_and_kept_values(ip) -> None:
    ip.run_cell("import mlflow")
    cell = (
        'loss = 0.25\nmlflow.log_metric("by_hand", 7)\nlr = 0.1\nraise ValueError("boom in cell")\n'
    )
    with pytest.raises(ValueError, match="boom in cell"):
        ip.run_cell_magic("track", "-e failing", cell)
    run = _only_run(_client())
    assert run.info.status == "FAILED"
    assert run.data.metrics["loss"] == 0.25
    assert run.data.metrics["by_hand"] == 7  # the user's own MLflow call went to our run
    assert run.data.params["lr"] == "0.1"
    tb = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="mlops/traceback.txt"
    )
    assert "boom in cell" in Path(tb).read_text()
    assert mlflow.active_run() is None


def test_unserialisable_model_keeps_params_and_metrics(ip, capsys) -> None:
    cell = """
import threading
from sklearn.base import BaseEstimator, ClassifierMixin

class Locked(ClassifierMixin, BaseEstimator):
    def __init__(self, depth=3):
        self.depth = depth
    def fit(self, X, y):
        self.lock_ = threading.Lock()
        self.classes_ = sorted(set(y))
        return self
    def predict(self, X):
        return [self.classes_[0]] * len(X)

clf = Locked(depth=5).fit([[1], [2]], [0, 1])
accuracy = 0.5
"""
    ip.run_cell_magic("track", "-e unpicklable", cell)
    run = _only_run(_client())
    assert run.info.status == "FINISHED"
    assert run.data.metrics["accuracy"] == 0.5
    assert run.data.params["depth"] == "5"
    assert "mlops.models" not in run.data.tags
    out = capsys.readouterr().out
    assert "clf: NOT LOGGED" in out and "lock" in out


def test_flags_params_metrics_model_no_model_quiet(ip, capsys) -> None:
    ip.run_cell("import numpy as np\nfrom sklearn.linear_model import LogisticRegression")
    cell = (
        "X = np.arange(20, dtype=float).reshape(10, 2)\ny = np.array([0, 1] * 5)\n"
        "a = LogisticRegression(max_iter=50).fit(X, y)\n"
        "b = LogisticRegression(C=2.0).fit(X, y)\n"
        "hidden = np.float64(0.75)\nlabel = 'x' * 3\n"
    )
    ip.run_cell_magic(
        "track", "-e flags --metrics hidden --params label --model b --quiet --tag team=ds", cell
    )
    assert capsys.readouterr().out == ""
    run = _only_run(_client())
    assert run.data.metrics == {"hidden": 0.75}
    assert run.data.params["label"] == "xxx"
    assert run.data.params["C"] == "2.0"  # only b's hyperparameters
    assert run.data.tags["team"] == "ds"
    assert list(json.loads(run.data.tags["mlops.models"])) == ["b"]

    ip.run_cell_magic("track", "-e flags --no-model --quiet", cell)
    runs = _all_runs(_client())
    newest = max(runs, key=lambda r: r.info.start_time)
    assert "mlops.models" not in newest.data.tags


def test_last_expression_value_is_returned(ip) -> None:
    value = ip.run_cell_magic("track", "-e expr --quiet", "x = 2\nx * 21")
    assert value == 42


def test_notebook_path_from_jupyter_session(ip, git_project: Path, monkeypatch) -> None:
    nb = git_project / "analysis" / "train.ipynb"
    nb.parent.mkdir()
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    ip.run_cell_magic("track", "--quiet", "score = 0.5")
    run = _only_run(_client())
    assert run.data.tags["mlflow.source.name"] == "analysis/train.ipynb"
    assert run.data.tags["mlflow.source.type"] == "NOTEBOOK"
    assert run.data.tags["mlflow.source.git.commit"] == git(git_project, "rev-parse", "HEAD")
    assert run.data.tags["mlops.git.dirty"] == "false"
    # default experiment: the notebook's name
    assert _client().get_experiment(run.info.experiment_id).name == "train"
    saved = mlflow.artifacts.download_artifacts(
        run_id=run.info.run_id, artifact_path="mlops/notebook/train.ipynb"
    )
    assert Path(saved).read_text() == nb.read_text()

    (git_project / "README.md").write_text("changed\n")
    ip.run_cell_magic("track", "--quiet", "score = 0.6")
    newest = max(_all_runs(_client()), key=lambda r: r.info.start_time)
    assert newest.data.tags["mlops.git.dirty"] == "true"
    assert newest.info.experiment_id == run.info.experiment_id
    table = str(ip.run_line_magic("mlops", "runs"))
    assert newest.info.run_id[:12] in table and run.info.run_id[:12] in table


def test_mlops_info_magic(ip, project: Path) -> None:
    info = str(ip.run_line_magic("mlops", ""))
    assert str(project) in info
    assert f"sqlite:///{project}/.mlops/mlflow.db (default)" in info
    with pytest.raises(UsageError):
        ip.run_line_magic("mlops", "bogus")


def test_track_api_without_magics(project: Path) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with jupyter_mlops.track(experiment="script", name="api") as run:
        run.log_params({"max_iter": 500})
        run.log_metrics({"train_acc": model.score(X, y)})
        run.log_metrics({"loss": 0.5}, step=1)
        record = run.log_model(model, "clf", X=X, y=y)
    assert record.ok
    client = _client()
    got = client.get_run(run.run_id)
    assert got.info.status == "FINISHED"
    assert got.data.params["max_iter"] == "500"
    assert [m.step for m in client.get_metric_history(run.run_id, "loss")] == [1]
    loaded = mlflow.pyfunc.load_model(record.model_uri)
    assert (loaded.predict(X) == model.predict(X)).all()


def test_track_nests_under_an_active_run(project: Path) -> None:
    mlflow.set_tracking_uri(load_config().tracking_uri)
    with mlflow.start_run() as parent:
        with jupyter_mlops.track(experiment="nested") as child:
            child.log_metrics({"score": 1.0})
        assert mlflow.active_run().info.run_id == parent.info.run_id
    got = _client().get_run(child.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id


def test_track_setup_errors_are_mlops_errors(project: Path) -> None:
    with (
        pytest.raises(jupyter_mlops.DataError, match=r"missing\.csv"),
        jupyter_mlops.track(data=["missing.csv"]),
    ):
        pytest.fail("body must not run")
