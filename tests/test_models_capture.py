"""Which fitted objects a %%track cell logs as models, searches, and the signatures they get.

Through a real IPython shell and a real MLflow store, read back with plain MLflow.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.config import load_config
from jupyter_mlops.tracking.models import (
    evaluate,
    fit_inputs_from_cell,
    name_columns,
    select_models,
)

from .helpers import free_port, running

COLS = ["mean radius", "mean texture", "mean area", "mean smoothness"]
SETUP = f"""\
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.model_selection import GridSearchCV, HalvingGridSearchCV, RandomizedSearchCV
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
df = load_breast_cancer(as_frame=True).frame
cols = {COLS!r}
y_all = df["target"]
"""


@pytest.fixture
def shell(ip):  # type: ignore[no-untyped-def]
    ip.run_cell(SETUP).raise_error()
    return ip


def _client() -> MlflowClient:
    return MlflowClient(load_config().tracking_uri)


def _last_run() -> Any:
    client = _client()
    exps = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(exps, filter_string="tags.`mlops.models` != ''")
    runs = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert runs, "no run with a model"
    return max(runs, key=lambda r: r.info.start_time)


def _models(run: Any) -> dict[str, str]:
    return dict(json.loads(run.data.tags["mlops.models"]))


def _inputs(uri: str) -> list[dict[str, Any]]:
    signature = mlflow.models.get_model_info(uri).signature
    assert signature is not None, f"{uri} has no signature"
    return list(signature.inputs.to_dict())


def _track(shell: Any, capsys: Any, args: str, cell: str) -> str:
    """Run ``cell`` under %%track; the run card it showed, as text."""
    capsys.readouterr()
    shell.run_cell_magic("track", args, cell)
    return str(capsys.readouterr().out)


# -- item 2: the predictors, not every fitted object -------------------------------------


def test_column_transformer_then_classifier_is_one_model(shell, capsys) -> None:  # type: ignore[no-untyped-def]
    cell = """frame = df[cols].copy()
frame["size"] = np.where(frame["mean area"] > 600, "large", "small")
prep = ColumnTransformer([("num", StandardScaler(), cols), ("cat", OneHotEncoder(), ["size"])])
Z = prep.fit_transform(frame)
scaler = StandardScaler().fit(frame[cols])
clf = LogisticRegression(max_iter=500).fit(Z, y_all)
acc = clf.score(Z, y_all)
"""
    card = _track(shell, capsys, "-e ct", cell)
    run = _last_run()
    assert list(_models(run)) == ["clf"]
    assert "skipped:" in card
    assert "prep: ColumnTransformer only transforms" in card
    assert "scaler: StandardScaler only transforms" in card
    # one model: %register needs no --model
    reg = jupyter_mlops.register(name="ct-clf")
    assert reg.version == "1"


def test_pipeline_is_one_model_and_its_steps_are_skipped(shell, capsys) -> None:  # type: ignore[no-untyped-def]
    cell = """scaler = StandardScaler()
tree = DecisionTreeClassifier(max_depth=3, random_state=0)
pipe = Pipeline([("scale", scaler), ("tree", tree)])
pipe.fit(df[cols], y_all)
acc = pipe.score(df[cols], y_all)
"""
    card = _track(shell, capsys, "-e pipe", cell)
    run = _last_run()
    assert list(_models(run)) == ["pipe"]
    assert "tree: part of pipe, logged inside it" in card
    assert "scaler: part of pipe" in card
    assert run.data.params["tree__max_depth"] == "3"
    assert [c["name"] for c in _inputs(_models(run)["pipe"])] == COLS


def test_explicit_model_logs_a_transformer(shell) -> None:  # type: ignore[no-untyped-def]
    shell.run_cell_magic(
        "track", "-e explicit --model scaler", "scaler = StandardScaler().fit(df[cols])"
    )
    assert list(_models(_last_run())) == ["scaler"]


# -- item 3: searches --------------------------------------------------------------------


def _artifact(run: Any, path: str) -> Path:
    return Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=path))


def test_grid_search_logs_best_estimator_params_score_and_table(shell, capsys) -> None:  # type: ignore[no-untyped-def]
    cell = """\
pipe = Pipeline([("scale", StandardScaler()), ("tree", DecisionTreeClassifier(random_state=0))])
grid = {"tree__max_depth": [2, 4], "tree__min_samples_leaf": [1, 20]}
search = GridSearchCV(pipe, grid, cv=3, scoring="roc_auc")
search.fit(df[cols], y_all)
"""
    card = _track(shell, capsys, "-e grid --search-runs", cell)
    run = _last_run()
    search = shell.user_ns["search"]
    best = search.best_params_
    # the best candidate's params by their bare names, not the template's defaults
    assert run.data.params["max_depth"] == str(best["tree__max_depth"])
    assert run.data.params["min_samples_leaf"] == str(best["tree__min_samples_leaf"])
    assert not any(k.startswith("estimator__") for k in run.data.params)
    assert run.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    assert run.data.metrics["best_cv_roc_auc"] == pytest.approx(search.best_score_)
    table = pd.read_csv(_artifact(run, "mlops/cv_results.csv"))
    assert len(table) == 4 and "mean_test_score" in table.columns
    assert "best estimator of GridSearchCV (4 candidates)" in card
    # the model is the refitted best estimator, with a signature from the search's data
    uri = _models(run)["search"]
    loaded = mlflow.sklearn.load_model(uri)
    assert type(loaded).__name__ == "Pipeline"
    assert loaded.get_params()["tree__max_depth"] == best["tree__max_depth"]
    X = shell.user_ns["df"][COLS]
    assert (loaded.predict(X) == search.predict(X)).all()
    assert [c["name"] for c in _inputs(uri)] == COLS
    # one child run per candidate, with its params and scores
    children = _client().search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 4
    assert all(
        "max_depth" in c.data.params and "mean_test_score" in c.data.metrics for c in children
    )
    reg = jupyter_mlops.register(name="grid-best")
    assert reg.warnings == []
    version = _client().get_model_version("grid-best", reg.version)
    assert "mlops.signature" not in version.tags


@pytest.mark.parametrize("kind", ["RandomizedSearchCV", "HalvingGridSearchCV"])
def test_other_searches_log_their_best_estimator(shell, kind: str) -> None:  # type: ignore[no-untyped-def]
    extra = ", n_iter=3, random_state=0" if kind == "RandomizedSearchCV" else ", random_state=0"
    cell = (
        f"search = {kind}(DecisionTreeClassifier(random_state=0), "
        f'{{"max_depth": [2, 3, 4, 5]}}, cv=3{extra})\n'
        "search.fit(df[cols], y_all)\n"
    )
    shell.run_cell_magic("track", f"-e {kind} --quiet", cell)
    run = _last_run()
    search = shell.user_ns["search"]
    assert run.data.params["max_depth"] == str(search.best_params_["max_depth"])
    assert run.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)
    uri = _models(run)["search"]
    assert type(mlflow.sklearn.load_model(uri)).__name__ == "DecisionTreeClassifier"
    assert [c["name"] for c in _inputs(uri)] == COLS
    # no child runs unless asked
    assert len(_client().search_runs([run.info.experiment_id])) == 1


# -- item 5: signatures from what the fit calls received ---------------------------------


@pytest.mark.parametrize(
    "fit",
    [
        "X = df[cols]\nmodel.fit(X[:400], y_all[:400])",
        "X = df[cols]\nmodel.fit(X.iloc[:400], y_all.iloc[:400])",
        "model.fit(df[cols][:400], y=y_all[:400])",
    ],
)
def test_slice_fit_has_a_named_signature(shell, fit: str) -> None:  # type: ignore[no-untyped-def]
    shell.run_cell_magic(
        "track", "-e slices --quiet", f"model = LogisticRegression(max_iter=500)\n{fit}\n"
    )
    assert [c["name"] for c in _inputs(_models(_last_run())["model"])] == COLS


@pytest.mark.filterwarnings("ignore:X has feature names:UserWarning")
@pytest.mark.parametrize(
    "prepare",
    [
        "A = df[cols].values\nmodel.fit(A, y_all.values)",
        "A = df[cols].to_numpy()\nmodel.fit(A[:, :], y_all)",
        "A = df[cols].values\nA_tr, A_te, y_tr, y_te = train_test_split(A, y_all, random_state=0)\n"
        "model.fit(A_tr, y_tr)",
    ],
)
def test_numpy_fit_gets_the_frames_column_names(shell, prepare: str) -> None:  # type: ignore[no-untyped-def]
    shell.run_cell_magic(
        "track", "-e numpy --quiet", f"model = LogisticRegression(max_iter=500)\n{prepare}\n"
    )
    uri = _models(_last_run())["model"]
    assert [c["name"] for c in _inputs(uri)] == COLS
    # served through pyfunc by name, equal to the in-process model on the array
    loaded = mlflow.pyfunc.load_model(uri)
    ns = shell.user_ns
    frame = ns["df"][COLS].head(20)
    assert (loaded.predict(frame) == ns["model"].predict(frame.to_numpy())).all()


def test_numpy_fit_without_a_frame_gets_a_tensor_signature(shell) -> None:  # type: ignore[no-untyped-def]
    cell = (
        "R = np.random.default_rng(0).normal(size=(200, 3))\n"
        "labels = (R[:, 0] > 0).astype(int)\n"
        "model = LogisticRegression().fit(R[:150], labels[:150])\n"
    )
    shell.run_cell_magic("track", "-e tensor --quiet", cell)
    signature = mlflow.models.get_model_info(_models(_last_run())["model"]).signature
    assert signature is not None and signature.inputs.is_tensor_spec()


def test_partial_fit_has_a_signature(shell) -> None:  # type: ignore[no-untyped-def]
    cell = """\
sgd = SGDClassifier(random_state=0)
X = df[cols]
for start in range(0, 500, 100):
    sgd.partial_fit(X.iloc[start:start + 100], y_all.iloc[start:start + 100], classes=[0, 1])
"""
    shell.run_cell_magic("track", "-e partial --quiet", cell)
    assert [c["name"] for c in _inputs(_models(_last_run())["sgd"])] == COLS


def test_messy_data_signature_allows_missing_values(shell) -> None:  # type: ignore[no-untyped-def]
    cell = """\
messy = pd.concat([df[cols]] * 3, ignore_index=True)
y3 = pd.concat([y_all] * 3, ignore_index=True)
messy["size"] = np.where(messy["mean area"] > 600, "large", "small").astype(object)
messy.loc[1500:, "mean texture"] = np.nan  # missing values only after the first 200 rows
messy.loc[1600:1610, "size"] = None
numeric = make_pipeline(SimpleImputer(), StandardScaler())
categorical = make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder())
prep = ColumnTransformer([("num", numeric, cols), ("cat", categorical, ["size"])])
model = make_pipeline(prep, LogisticRegression(max_iter=1000)).fit(messy, y3)
"""
    shell.run_cell_magic("track", "-e messy --quiet", cell)
    uri = _models(_last_run())["model"]
    inputs = {c["name"]: c for c in _inputs(uri)}
    assert (
        inputs["mean texture"]["type"] == "double" and inputs["mean texture"]["required"] is False
    )
    assert inputs["size"]["type"] == "string" and inputs["size"]["required"] is False
    assert inputs["mean radius"]["required"] is True
    rows = shell.user_ns["messy"].iloc[[0, 1550, 1605]]
    assert rows.isna().any().any()
    loaded = mlflow.pyfunc.load_model(uri)
    assert (loaded.predict(rows) == shell.user_ns["model"].predict(rows)).all()


def test_model_without_training_data_is_flagged_at_register(shell, capsys) -> None:  # type: ignore[no-untyped-def]
    # Fitted in an earlier cell: this cell never saw what it was trained on.
    shell.run_cell("fitted_before = LogisticRegression(max_iter=500).fit(df[cols], y_all)")
    card = _track(shell, capsys, "-e nosig", "model = fitted_before\n")
    assert "training data unknown, no signature" in card
    reg = shell.run_line_magic("register", "--name nosig")
    assert "warning: the model has no signature" in str(reg)
    version = _client().get_model_version("nosig", reg.version)
    assert version.tags["mlops.signature"] == "missing"
    # and at deploy: the deployment says its inputs are not checked
    with running("nosig/1", load_config(), port=free_port()) as dep:
        assert "inputs:  not checked for nosig v1 (the model has no signature)" in str(dep)
        assert dep.to_dict()["unchecked_inputs"]
        X = shell.user_ns["df"][COLS].head(3)
        assert dep.predict(X)  # served, unchecked


# -- the safe evaluator -------------------------------------------------------------------


def test_evaluator_runs_only_side_effect_free_expressions() -> None:
    calls: list[str] = []

    class Spy:
        @property
        def _secret(self) -> int:
            calls.append("private")
            return 1

    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0]})
    ns = {"df": frame, "spy": Spy(), "n": 2, "f": lambda: calls.append("call")}

    def ev(text: str) -> Any:
        return evaluate(ast.parse(text, mode="eval").body, ns)

    assert ev("df[['a']].values").shape == (3, 1)
    assert ev("df.iloc[:n + 0]").shape == (2, 2)
    assert ev("df.to_numpy()[-1:]").tolist() == [[3.0, 6.0]]
    for unsafe in (
        "f()",
        "spy._secret",
        "df.a.sum()",
        "[x for x in df]",
        "df['a'] + 1",
        "n.__class__",
    ):
        assert ev(unsafe) is None, unsafe
    assert calls == []
    inputs = fit_inputs_from_cell(
        ast.parse("X = df.values\nm.fit(X[:2], y)\n"), {**ns, "X": frame.values}
    )
    X, y = inputs["m"]
    assert list(X.columns) == ["a", "b"] and len(X) == 2 and y is None


def test_select_models_takes_recorded_fit_inputs() -> None:
    """The interface for a recorder of the actual fit-call arguments (receiver -> (X, y))."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0]})
    first_batch = frame.to_numpy()[:2]
    labels = [0, 1, 0, 1]
    ns = {
        "frame": frame,
        "arr": frame.to_numpy(),
        "scaler": StandardScaler().fit(frame),
        "clf": LogisticRegression().fit(frame.to_numpy(), labels),
    }
    tree = ast.parse("arr = frame.to_numpy()\nclf.partial_fit(arr[:2], y)\n")
    recorded = name_columns({"clf": (first_batch, labels[:2])}, tree, ns)
    models, training, skipped = select_models(["scaler", "clf"], ns, recorded)
    assert list(models) == ["clf"] and "scaler" in skipped
    X, y = training["clf"]
    assert list(X.columns) == ["a", "b"] and X.shape == (2, 2) and y == [0, 1]


# -- the same in a real kernel ------------------------------------------------------------


@pytest.mark.slow
def test_kernel_run_logs_predictor_search_and_array_signature(project: Path) -> None:
    import nbformat

    from jupyter_mlops.pipelines.execute import execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    cells = [
        "%load_ext jupyter_mlops",
        SETUP,
        # a scaler fitted on its own, then a search over a classifier on the scaled array
        "%%track -e kernel\n"
        "A = df[cols].values\n"
        "scaler = StandardScaler().fit(A)\n"
        "S = scaler.transform(A)\n"
        'search = GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1.0]}, cv=3)\n'
        "search.fit(A[:400], y_all[:400])\n",
    ]
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = project / "search.ipynb"
    nbformat.write(nb, path)
    out = nbformat.read(execute_notebook(path, project / "search.out.ipynb"), as_version=4)
    mlflow.set_tracking_uri(load_config().tracking_uri)  # the kernel's store, for model reads
    card = json.dumps(out.cells[2].outputs)
    assert "scaler: StandardScaler only transforms" in card
    run = _last_run()
    assert list(_models(run)) == ["search"]
    assert run.data.params["C"] in ("0.1", "1.0") and "best_cv_score" in run.data.metrics
    assert [c["name"] for c in _inputs(_models(run)["search"])] == COLS
