"""Plain MLflow code inside ``%%track`` (issue 15, item 6): it joins the tracked run.

Through the real IPython shell and a real MLflow store, read back with plain MLflow.
"""

from __future__ import annotations

import json

import mlflow
import mlflow.tracking.fluent as fluent
import pytest
from mlflow import MlflowClient
from mlflow.models import Model

from jupyter_mlops.config import load_config

SEED = """\
with mlflow.start_run():
    mlflow.log_param("n_estimators", 100)
    model = RandomForestClassifier(n_estimators=100).fit(X, y)
    mlflow.log_metric("acc", accuracy_score(y, model.predict(X)))
    mlflow.sklearn.log_model(model, name="model")
"""

ORIGINALS = {
    "start_run": mlflow.start_run,
    "end_run": mlflow.end_run,
    "fluent.start_run": fluent.start_run,
    "fluent.end_run": fluent.end_run,
    "Model.log": Model.__dict__["log"],
    **{w: MlflowClient.__dict__[w] for w in ("log_param", "log_metric", "log_batch")},
}


def _hooks_restored() -> None:
    import mlflow.sklearn

    assert mlflow.start_run is ORIGINALS["start_run"]
    assert mlflow.end_run is ORIGINALS["end_run"]
    assert fluent.start_run is ORIGINALS["fluent.start_run"]
    assert fluent.end_run is ORIGINALS["fluent.end_run"]
    assert Model.__dict__["log"] is ORIGINALS["Model.log"]
    for write in ("log_param", "log_metric", "log_batch"):
        assert MlflowClient.__dict__[write] is ORIGINALS[write]
    assert mlflow.sklearn.log_model.__module__ == "mlflow.sklearn"
    assert mlflow.active_run() is None


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _runs(client: MlflowClient) -> list:
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps) if exps else []


def _logged_models(client: MlflowClient, run) -> list:  # type: ignore[no-untyped-def]
    return client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )


@pytest.fixture
def shell(ip):  # type: ignore[no-untyped-def]
    ip.run_cell("import mlflow\nX, y = load_iris(return_X_y=True, as_frame=True)\n")
    return ip


def test_seed_example_runs_unchanged_and_registers(shell, capsys) -> None:
    shell.run_cell_magic("track", "-e seed", SEED)
    out = capsys.readouterr().out
    client = _client()
    runs = _runs(client)
    assert len(runs) == 1  # the user's start_run joined the tracked run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlops.source.sha256"]  # it is the tracked run
    assert run.data.params["n_estimators"] == "100"
    assert run.data.params["criterion"] == "gini"  # capture still adds what was not logged
    history = client.get_metric_history(run.info.run_id, "acc")
    assert len(history) == 1, history  # capture did not log acc a second time
    models = json.loads(run.data.tags["mlops.models"])
    assert list(models) == ["model"]
    logged = _logged_models(client, run)
    assert len(logged) == 1  # the user's model, not a second copy from capture
    assert models["model"] == f"models:/{logged[0].model_id}"
    assert "model: models:/" in out and "logged by the cell's own MLflow code" in out
    assert "acc=" in out  # the card shows what the user's code logged
    _hooks_restored()

    reg = shell.run_line_magic("register", "--name seed-model --model model")
    assert str(reg.version) == "1"
    loaded = mlflow.pyfunc.load_model("models:/seed-model/1")
    X = shell.user_ns["X"]
    assert (loaded.predict(X) == shell.user_ns["model"].predict(X)).all()


def test_start_run_and_end_run_variant_joins(shell, capsys) -> None:
    cell = """\
run = mlflow.start_run(run_name="rf-by-hand", tags={"team": "fraud"})
lr = 0.1
mlflow.log_param("lr", "1e-1")
mlflow.log_param("max_depth", 3)
model = RandomForestClassifier(n_estimators=10, max_depth=3).fit(X, y)
acc = accuracy_score(y, model.predict(X))
mlflow.log_metric("acc", acc)
mlflow.end_run()
still_active = mlflow.active_run().info.run_id
"""
    shell.run_cell_magic("track", "-e variant", cell)
    runs = _runs(_client())
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    ns = shell.user_ns
    assert ns["run"].info.run_id == run.info.run_id == ns["still_active"]
    assert run.info.run_name == "rf-by-hand"  # no -n given: the user's name is taken
    assert run.data.tags["team"] == "fraud"
    assert run.data.params["max_depth"] == "3"
    # captured lr=0.1 and acc are the user's keys: not logged again, the user's value kept
    assert run.data.params["lr"] == "1e-1"
    assert "param 'lr': kept the value the cell logged ('1e-1')" in capsys.readouterr().out
    assert len(_client().get_metric_history(run.info.run_id, "acc")) == 1
    # the model the user did not log is captured as before
    assert list(json.loads(run.data.tags["mlops.models"])) == ["model"]
    _hooks_restored()


def test_nested_start_run_makes_a_child_of_the_tracked_run(shell) -> None:
    cell = """\
for fold in range(2):
    with mlflow.start_run(nested=True, run_name=f"fold-{fold}"):
        mlflow.log_metric("fold_acc", 0.9 + fold / 100)
left_open = mlflow.start_run(nested=True, run_name="forgotten")
"""
    shell.run_cell_magic("track", "-e nested -n parent", cell)
    runs = {r.info.run_name: r for r in _runs(_client())}
    assert set(runs) == {"parent", "fold-0", "fold-1", "forgotten"}
    parent = runs["parent"]
    assert parent.info.status == "FINISHED"
    for child in ("fold-0", "fold-1", "forgotten"):
        assert runs[child].data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert runs[child].info.status == "FINISHED"
    assert runs["fold-1"].data.metrics["fold_acc"] == pytest.approx(0.91)
    assert "fold_acc" not in parent.data.metrics
    _hooks_restored()


@pytest.mark.parametrize("enable", ["mlflow.sklearn.autolog()", "mlflow.autolog()"])
def test_autolog_coexists_without_duplicates(shell, enable: str, capsys) -> None:
    cell = f"""\
{enable}
model = RandomForestClassifier(n_estimators=20, max_depth=4).fit(X, y)
acc = accuracy_score(y, model.predict(X))
"""
    try:
        shell.run_cell_magic("track", "-e auto", cell)
    finally:
        # Both: mlflow.autolog(disable=True) leaves mlflow.sklearn.autolog() enabled. And
        # forget the configs: mlflow.autolog() skips an integration configured on its own.
        from mlflow.utils.autologging_utils import (
            AUTOLOGGING_INTEGRATIONS,
            autologging_is_disabled,
        )

        mlflow.autolog(disable=True)
        mlflow.sklearn.autolog(disable=True)
        AUTOLOGGING_INTEGRATIONS.clear()
        assert autologging_is_disabled("sklearn")
    out = capsys.readouterr().out
    client = _client()
    runs = _runs(client)
    assert len(runs) == 1  # autolog used the tracked run and did not end it
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlops.source.sha256"]
    assert "training_accuracy_score" in run.data.metrics  # autolog did log into our run
    assert run.data.params["n_estimators"] == "20"  # autolog's (capture's copy skipped)
    assert run.data.params["max_depth"] == "4"
    assert "already logged" not in out and "kept the value" not in out
    logged = _logged_models(client, run)
    assert len(logged) == 1, [m.name for m in logged]  # autolog's model only
    assert json.loads(run.data.tags["mlops.models"]) == {"model": f"models:/{logged[0].model_id}"}
    assert len(client.get_metric_history(run.info.run_id, "acc")) == 1
    _hooks_restored()


def test_cell_raising_inside_users_run_fails_the_tracked_run(shell) -> None:
    cell = """\
with mlflow.start_run():
    mlflow.log_param("alpha", 0.5)
    raise ValueError("boom inside the user's run")
"""
    with pytest.raises(ValueError, match="boom inside"):
        shell.run_cell_magic("track", "-e raising", cell)
    runs = _runs(_client())
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED"
    assert runs[0].data.params["alpha"] == "0.5"
    _hooks_restored()
    # Outside %%track, MLflow behaves as MLflow again.
    with mlflow.start_run() as plain:
        assert mlflow.active_run().info.run_id == plain.info.run_id
    assert mlflow.active_run() is None


def test_captured_model_never_takes_a_name_the_user_logged(shell, capsys) -> None:
    cell = """\
other = RandomForestClassifier(n_estimators=5).fit(X, y)
with mlflow.start_run():
    mlflow.sklearn.log_model(other, name="model")
model = RandomForestClassifier(n_estimators=7).fit(X, y)
"""
    shell.run_cell_magic("track", "-e clash", cell)
    out = capsys.readouterr().out
    run = _runs(_client())[0]
    logged = _logged_models(_client(), run)
    assert [m.name for m in logged] == ["model"]
    assert json.loads(run.data.tags["mlops.models"]) == {"model": f"models:/{logged[0].model_id}"}
    assert "the cell logged its own 'model'" in out


@pytest.mark.slow
def test_seed_example_in_a_real_kernel(project) -> None:  # type: ignore[no-untyped-def]
    import nbformat

    from jupyter_mlops.pipelines.execute import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell(c)
        for c in (
            "%load_ext jupyter_mlops",
            "import mlflow\n"
            "from sklearn.datasets import load_iris\n"
            "from sklearn.ensemble import RandomForestClassifier\n"
            "from sklearn.metrics import accuracy_score\n"
            "X, y = load_iris(return_X_y=True, as_frame=True)",
            "%%track -e kernel-seed\n" + SEED,
            "%register --name kernel-seed --model model",
            "print(mlflow.start_run.__module__, mlflow.active_run())",
        )
    ]
    nbformat.write(nb, project / "seed.ipynb")
    out = nbformat.read(execute_notebook(project / "seed.ipynb", project / "out.ipynb"), 4)
    client = _client()
    (run,) = _runs(client)
    assert run.info.status == "FINISHED"
    assert len(client.get_metric_history(run.info.run_id, "acc")) == 1
    assert len(_logged_models(client, run)) == 1
    assert "Registered kernel-seed version 1" in json.dumps(out.cells[3].outputs)
    assert out.cells[4].outputs[0]["text"].strip() == "mlflow.tracking.fluent None"


def test_plain_mlflow_run_without_track_registers_by_model_name(shell) -> None:
    cell = """\
with mlflow.start_run() as plain_run:
    model = RandomForestClassifier(n_estimators=5).fit(X, y)
    mlflow.sklearn.log_model(model, name="forest", serialization_format="cloudpickle")
"""
    mlflow.set_tracking_uri(load_config().tracking_uri)  # the project's store
    shell.run_cell(cell).raise_error()
    run_id = shell.user_ns["plain_run"].info.run_id
    assert "mlops.models" not in _client().get_run(run_id).data.tags  # no tag: plain MLflow
    reg = shell.run_line_magic("register", f"{run_id} --name plain --model forest")
    assert reg.model_uri.startswith("models:/m-")
    loaded = mlflow.pyfunc.load_model("models:/plain/1")
    X = shell.user_ns["X"]
    assert (loaded.predict(X) == shell.user_ns["model"].predict(X)).all()
    with pytest.raises(Exception, match="no model 'nope'"):
        shell.run_line_magic("register", f"{run_id} --name plain --model nope")
