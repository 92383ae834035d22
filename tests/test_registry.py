"""%register and the registry API against a real MLflow store, read back with plain MLflow."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from IPython.core.error import UsageError
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
import jupyter_mlops.registry as registry
from jupyter_mlops.config import load_config
from jupyter_mlops.registry import Gate, GateError, GateFailed, RegistryError

X, Y = load_iris(return_X_y=True, as_frame=True)


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _run(metrics: dict[str, float], *, model: bool = True, c: float = 1.0) -> str:
    """A tracked run with the given metrics and (optionally) a logged model."""
    with jupyter_mlops.track(experiment="reg") as run:
        run.log_metrics(metrics)
        if model:
            run.log_model(LogisticRegression(C=c, max_iter=300).fit(X, Y), "model", X=X)
    return run.run_id


def test_register_last_run_reads_back_through_mlflow(project: Path) -> None:
    first = _run({"accuracy": 0.91}, c=0.5)
    _run({"accuracy": 0.99}, model=False)  # newer, but has no model: "last" skips it
    reg = jupyter_mlops.register(name="iris-rf", aliases=["champion", "candidate"])
    assert (reg.version, reg.run_id) == ("1", first)

    client = _client()
    version = client.get_model_version("iris-rf", "1")
    assert version.run_id == first
    assert version.tags["mlops.run_id"] == first
    assert json.loads(version.tags["mlops.metrics"]) == {"accuracy": 0.91}
    assert set(version.aliases) == {"champion", "candidate"}
    assert str(client.get_model_version_by_alias("iris-rf", "champion").version) == "1"
    loaded = mlflow.pyfunc.load_model("models:/iris-rf@champion")
    expected = LogisticRegression(C=0.5, max_iter=300).fit(X, Y).predict(X)
    assert (loaded.predict(X) == expected).all()


def test_gate_passes_and_fails(project: Path) -> None:
    run_id = _run({"accuracy": 0.87, "f1": 0.9})
    with pytest.raises(GateFailed, match=r"accuracy = 0\.87 >= 0\.9: FAILED") as info:
        jupyter_mlops.register(run_id, name="gated", gate="accuracy >= 0.9 and f1 > 0.8")
    assert [c["passed"] for c in info.value.result.checks] == [False, True]
    assert _client().search_model_versions("name = 'gated'") == []

    reg = jupyter_mlops.register(run_id[:8], name="gated", gate="accuracy >= 0.85 or f1 > 2")
    assert reg.version == "1" and reg.gate is not None and reg.gate.passed
    tags = _client().get_model_version("gated", "1").tags
    assert json.loads(tags["mlops.gate"])["passed"] is True


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("accuracy >= ", "not valid"),
        ("__import__('os').system('true')", "only comparisons"),
        ("accuracy >= 0.9 + 1", "neither a name nor a number"),
        ("os.name == 1", "metrics.<name>"),
        ("accuracy is 0.9", "operator not allowed"),
    ],
)
def test_malformed_gates_are_refused(expression: str, message: str) -> None:
    with pytest.raises(GateError, match=message):
        Gate(expression)


def test_gate_on_missing_metric_names_what_exists(project: Path) -> None:
    run_id = _run({"accuracy": 0.95})
    with pytest.raises(GateError, match=r"\['auc'\].*accuracy"):
        jupyter_mlops.register(run_id, name="m", gate="auc > 0.5")
    assert Gate("metrics.accuracy > -1").evaluate({"accuracy": 0.0}).passed


def test_against_champion_with_min_delta(project: Path) -> None:
    base = _run({"accuracy": 0.90, "rmse": 1.0})
    jupyter_mlops.register(base, name="iris", aliases=["champion"])
    small = _run({"accuracy": 0.905, "rmse": 1.2})
    with pytest.raises(GateFailed, match=r"beats version 1 .* by \+0\.005"):
        jupyter_mlops.register(
            small,
            name="iris",
            against="champion",
            metric="accuracy",
            min_delta=0.01,
            aliases=["champion"],
        )
    with pytest.raises(GateFailed, match="lower is better"):  # rmse got worse
        jupyter_mlops.register(small, name="iris", against="champion", metric="rmse")
    better = _run({"accuracy": 0.95, "rmse": 0.5})
    reg = jupyter_mlops.register(
        better,
        name="iris",
        against="champion",
        metric="accuracy",
        min_delta=0.01,
        aliases=["champion"],
    )
    assert reg.version == "2"
    assert str(_client().get_model_version_by_alias("iris", "champion").version) == "2"
    assert "+0.05" in reg.comparison["summary"]


def test_promotion_history_and_rollback_are_exact(project: Path) -> None:
    for acc in (0.8, 0.85, 0.9):
        jupyter_mlops.register(_run({"accuracy": acc}), name="hist")
    jupyter_mlops.promote("hist/1", "champion")
    jupyter_mlops.promote("hist/2", "champion")
    jupyter_mlops.promote("hist/3", "champion", gate="accuracy > 0.85")
    with pytest.raises(GateFailed):
        jupyter_mlops.promote("hist/1", "champion", gate="accuracy > 0.85")
    client = _client()
    assert str(client.get_model_version_by_alias("hist", "champion").version) == "3"

    event = jupyter_mlops.rollback("hist", "champion")
    assert (event.previous, event.version) == ("3", "2")
    assert str(client.get_model_version_by_alias("hist", "champion").version) == "2"
    jupyter_mlops.rollback("hist", "champion")
    assert str(client.get_model_version_by_alias("hist", "champion").version) == "1"
    with pytest.raises(RegistryError, match="Nothing to roll back"):
        jupyter_mlops.rollback("hist", "champion")

    events = jupyter_mlops.history("hist")
    assert [(e.action, e.previous, e.version) for e in events] == [
        ("promote", None, "1"),
        ("promote", "1", "2"),
        ("promote", "2", "3"),
        ("rollback", "3", "2"),
        ("rollback", "2", "1"),
    ]
    assert events[2].gate["expression"] == "accuracy > 0.85" and events[2].gate["passed"]
    assert all(e.user and e.time for e in events)
    # The history is plain MLflow tags: any client reads it (one log per alias).
    tags = client.get_registered_model("hist").tags
    assert len(json.loads(tags["mlops.alias.champion.log"])) == 5


def test_bad_input_messages(project: Path) -> None:
    with pytest.raises(jupyter_mlops.NotFoundError, match="No finished run with a model"):
        jupyter_mlops.register(name="x")
    no_model = _run({"accuracy": 0.5}, model=False)
    with pytest.raises(jupyter_mlops.NotFoundError, match="has no logged model"):
        jupyter_mlops.register(no_model, name="x")
    with pytest.raises(jupyter_mlops.NotFoundError, match="No run"):
        jupyter_mlops.register("f" * 32, name="x")
    with pytest.raises(RegistryError, match="Invalid model name"):
        jupyter_mlops.register(no_model, name="bad/name")
    for alias in ("latest", "v3", "has space"):
        with pytest.raises(RegistryError, match="Invalid alias"):
            jupyter_mlops.register(no_model, name="x", aliases=[alias])
    with pytest.raises(RegistryError, match="--against needs --metric"):
        jupyter_mlops.register(no_model, name="x", against="champion")
    with pytest.raises(jupyter_mlops.NotFoundError, match="no model is registered"):
        jupyter_mlops.promote("nothing/1", "champion")
    assert _client().search_registered_models() == []


def test_magic_register_list_history_and_errors(ip, capsys) -> None:
    ip.run_cell("from sklearn.linear_model import LogisticRegression\nimport numpy as np")
    cell = (
        "X = np.arange(40, dtype=float).reshape(20, 2)\ny = np.array([0, 1] * 10)\n"
        "clf = LogisticRegression().fit(X, y)\naccuracy = clf.score(X, y)\n"
    )
    ip.run_cell_magic("track", "-e magic --quiet", cell)
    reg = ip.run_line_magic("register", "--name mag --alias challenger --gate 'accuracy >= 0'")
    assert reg.version == "1"
    with pytest.raises(UsageError, match="fails gate"):
        ip.run_line_magic("register", "--name mag --gate 'accuracy > 2'")
    with pytest.raises(UsageError, match="--name"):
        ip.run_line_magic("register", "")
    with pytest.raises(UsageError, match="exactly one --alias"):
        ip.run_line_magic("register", "--promote mag/1")
    ip.run_line_magic("register", "--promote mag/1 --alias champion")
    table = str(ip.run_line_magic("register", "--list"))
    assert "mag" in table and "challenger" in table and "champion" in table
    hist = str(ip.run_line_magic("register", "--history mag"))
    assert "promote" in hist and "champion" in hist and "accuracy >= 0: passed" in hist


def test_lineage_restores_training_data(ip, git_project: Path, iris_csv: Path, monkeypatch) -> None:
    from .conftest import IRIS_CELL

    nb = git_project / "train.ipynb"
    nb.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    monkeypatch.setenv("JPY_SESSION_NAME", str(nb))
    ip.run_cell_magic("track", "-e lin --quiet --data data/iris.csv", IRIS_CELL)
    ip.run_line_magic("register", "--name iris-rf --alias champion")
    original = iris_csv.read_bytes()
    iris_csv.write_text("changed\n")

    lin = jupyter_mlops.lineage("iris-rf@champion")
    assert lin.version == "1" and lin.aliases == ["champion"]
    assert lin.notebook == "train.ipynb"
    assert lin.cell_source == IRIS_CELL
    assert lin.git_commit and lin.environment["packages"]["scikit-learn"]
    assert [s.path for s in lin.data] == ["data/iris.csv"]
    restored = lin.restore_data(None, str(git_project / "restored.csv"))
    assert Path(restored).read_bytes() == original
    assert "data/iris.csv" in str(ip.run_line_magic("register", "--lineage iris-rf@champion"))
    # the registration itself says which notebook it came from
    (event,) = registry.history("iris-rf")
    assert event.notebook == "train.ipynb"


def test_promotion_decided_against_an_old_holder_is_refused(project: Path) -> None:
    for c in (0.1, 0.2, 0.3):
        _run({"accuracy": c}, c=c)
        jupyter_mlops.register(name="raced")
    registry.promote("raced/1", "champion")
    # Alice decided on version 2 while champion was 1; Bob promoted 3 first.
    registry.promote("raced/3", "champion", expected="1")
    with pytest.raises(registry.PromotionConflict, match=r"moved from version 1 to 3") as info:
        registry.promote("raced/2", "champion", expected="1")
    assert (info.value.expected, info.value.current) == ("1", "3")
    client = _client()
    assert str(client.get_model_version_by_alias("raced", "champion").version) == "3"
    assert [e.version for e in registry.history("raced")] == ["1", "3"]
    # --force overwrites; a stale lock left by a dead process is cleared, a fresh one waits.
    lock = "raced" + registry.LOCK_INFIX + "champion"
    client.create_registered_model(lock, tags={"mlops.lock.time": "0", "mlops.lock.owner": "x"})
    registry.promote("raced/2", "champion", force=True)
    assert str(client.get_model_version_by_alias("raced", "champion").version) == "2"
    assert [m.name for m in registry.list_models()] == ["raced"]  # no lock left or listed
    assert client.search_registered_models(f"name = '{lock}'") == []
    with pytest.raises(RegistryError, match="Invalid model name"):
        registry.check_model_name(lock)
