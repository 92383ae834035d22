"""XGBoost and LightGBM, scikit-learn API and native training, end to end.

Per framework and API: a ``%%track`` cell in a real IPython shell trains the model on
synthetic data; the run has its hyperparameters, best iteration and evaluation history as
step metrics; the model is logged with MLflow's native flavour (never pickled), its
requirements pin the framework and scikit-learn only where it is needed; the model is
registered, served by a real uvicorn server on 127.0.0.1, answers ``/predict`` exactly as
in-process, and the drift of the deployment's logged inputs is computed against its
training data restored from DVC.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops import monitoring
from jupyter_mlops.config import load_config
from jupyter_mlops.tracking import flavors
from jupyter_mlops.tracking.capture import analyse_cell, capture
from tests.helpers import running

pytestmark = pytest.mark.slow

FEATURES = [f"f{i}" for i in range(5)]

SPLIT = """\
df = pd.read_csv("data/gbm.csv")
X_train, X_val, y_train, y_val = train_test_split(
    df.drop(columns="target"), df.target, test_size=0.25, random_state=0
)
"""


@dataclass(frozen=True)
class Case:
    """One framework and API: the cell, where its history is, how it predicts in-process."""

    id: str
    library: str
    cell: str
    model: str  # the name the cell binds the model to
    native: bool
    history: str  # the step metric the cell's evaluation history becomes
    params: dict[str, str]  # hyperparameters the run must record

    def expected_history(self, ns: dict[str, Any]) -> list[float]:
        data, metric = self.history.split("-", 1)
        source = ns["evals"] if self.native else ns[self.model].evals_result_
        return [float(v) for v in source[data][metric]]

    def predict(self, ns: dict[str, Any], X: pd.DataFrame) -> list[Any]:
        model = ns[self.model]
        if self.id == "xgboost-native":
            import xgboost as xgb

            return list(model.predict(xgb.DMatrix(X)).tolist())
        return list(model.predict(X).tolist())


CASES = [
    Case(
        "xgboost-sklearn",
        "xgboost",
        SPLIT
        + """\
model = xgb.XGBClassifier(n_estimators=40, max_depth=3, learning_rate=0.3,
                          early_stopping_rounds=5)
model.fit(X_train, y_train, eval_set=[(X_val, y_val)], verbose=False)
val_acc = accuracy_score(y_val, model.predict(X_val))
""",
        "model",
        False,
        "validation_0-logloss",
        {"max_depth": "3", "learning_rate": "0.3", "n_estimators": "40"},
    ),
    Case(
        "xgboost-native",
        "xgboost",
        SPLIT
        + """\
dtrain = xgb.DMatrix(X_train, label=y_train)
dval = xgb.DMatrix(X_val, label=y_val)
evals = {}
booster = xgb.train(
    {"objective": "binary:logistic", "max_depth": 3, "eta": 0.3, "eval_metric": "logloss"},
    dtrain, num_boost_round=40, evals=[(dval, "val")], evals_result=evals,
    early_stopping_rounds=5, verbose_eval=False,
)
""",
        "booster",
        True,
        "val-logloss",
        {"max_depth": "3", "eta": "0.3", "objective": "binary:logistic", "eval_metric": "logloss"},
    ),
    Case(
        "lightgbm-sklearn",
        "lightgbm",
        SPLIT
        + """\
model = lgb.LGBMClassifier(n_estimators=40, num_leaves=7, learning_rate=0.2, verbose=-1)
model.fit(X_train, y_train, eval_set=[(X_val, y_val)],
          callbacks=[lgb.early_stopping(5, verbose=False)])
val_acc = accuracy_score(y_val, model.predict(X_val))
""",
        "model",
        False,
        "valid_0-binary_logloss",
        {"num_leaves": "7", "learning_rate": "0.2", "n_estimators": "40"},
    ),
    Case(
        "lightgbm-native",
        "lightgbm",
        SPLIT
        + """\
evals = {}
booster = lgb.train(
    {"objective": "binary", "num_leaves": 7, "learning_rate": 0.2, "verbose": -1},
    lgb.Dataset(X_train, label=y_train), num_boost_round=40,
    valid_sets=[lgb.Dataset(X_val, label=y_val)], valid_names=["val"],
    callbacks=[lgb.record_evaluation(evals), lgb.early_stopping(5, verbose=False)],
)
""",
        "booster",
        True,
        "val-binary_logloss",
        {"num_leaves": "7", "learning_rate": "0.2", "objective": "binary"},
    ),
]


def _write_data(root: Path) -> pd.DataFrame:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=400, n_features=5, n_informative=3, random_state=0)
    frame = pd.DataFrame(X, columns=FEATURES).assign(target=y)
    (root / "data").mkdir(exist_ok=True)
    frame.to_csv(root / "data" / "gbm.csv", index=False)
    return frame


def _requirements(model_uri: str) -> list[str]:
    path = Path(mlflow.pyfunc.get_model_dependencies(model_uri))
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_track_register_deploy_predict_drift(ip, git_project: Path, case: Case) -> None:
    pytest.importorskip(case.library)
    frame = _write_data(git_project)
    ip.run_cell(
        "import xgboost as xgb\n" if case.library == "xgboost" else "import lightgbm as lgb\n"
    )
    ip.run_cell_magic("track", f"-e gbm -n {case.id} --quiet --data data/gbm.csv", case.cell)
    ns = ip.user_ns
    config = load_config()
    client = MlflowClient(config.tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("gbm").experiment_id])
    assert run.info.status == "FINISHED"

    # hyperparameters and the best iteration, as the framework knows them
    for key, value in case.params.items():
        assert run.data.params[key] == value, key
    assert int(run.data.params["best_iteration"]) >= 0
    assert "evals" not in run.data.params  # the history is step metrics, not a param
    # the evaluation history: one value per boosting round, steps 0..n-1, logged once
    history = client.get_metric_history(run.info.run_id, case.history)
    expected = case.expected_history(ns)
    assert len(expected) >= 5
    assert [m.step for m in history] == list(range(len(expected)))
    assert [m.value for m in history] == pytest.approx(expected)
    assert run.data.metrics[case.history] == pytest.approx(expected[-1])

    # logged with MLflow's native flavour, requirements pinned from this environment
    model_uri = json.loads(run.data.tags["mlops.models"])[case.model]
    info = mlflow.models.get_model_info(model_uri)
    assert case.library in info.flavors
    assert "sklearn" not in info.flavors
    if case.library == "lightgbm" and not case.native:
        assert info.flavors["lightgbm"]["serialization_format"] == "skops"  # not pickle
    reqs = _requirements(model_uri)
    framework = flavors.get(case.library)
    dist = next(r for r in reqs if r.split("==")[0] in (case.library, f"{case.library}-cpu"))
    from importlib import metadata

    assert dist == f"{dist.split('==')[0]}=={metadata.version(dist.split('==')[0])}"
    pinned_sklearn = any(r.startswith("scikit-learn") for r in reqs)
    assert pinned_sklearn is not case.native  # only the sklearn-API wrappers need it
    assert framework.requirements(ns[case.model]) == reqs
    # a signature, from the fit data or (native) from the booster's own feature names
    assert [c["name"] for c in info.signature.inputs.to_dict()] == FEATURES
    X_val = ns["X_val"]
    loaded = mlflow.pyfunc.load_model(model_uri)
    in_process = case.predict(ns, X_val)
    assert np.allclose(np.asarray(loaded.predict(X_val)), in_process)

    # registered, served, answers over HTTP as in-process; drift on its logged inputs
    registration = jupyter_mlops.register(
        run.info.run_id, name=f"gbm-{case.id}", aliases=["champion"], config=config
    )
    assert str(registration.version) == "1"
    with running(f"gbm-{case.id}@champion", config, name=case.id) as dep:
        body = json.loads(X_val.to_json(orient="records"))
        with httpx.Client(base_url=dep.url, timeout=30) as http:
            answer = http.post("/predict", json=body)
            assert answer.status_code == 200, answer.text
            assert np.allclose(answer.json()["predictions"], in_process)
            shifted = X_val.assign(f0=X_val.f0 + 3.0)
            assert http.post("/predict", json=json.loads(shifted.to_json(orient="records")))
        report = monitoring.drift_for_deployment(case.id, last=None, config=config)
    assert sorted(f.name for f in report.features) == FEATURES  # target left out
    assert report.feature("f0").status == "drift"
    assert report.prediction is not None and report.prediction.n_ref == len(frame)


def test_detection_params_and_requirements_without_a_run() -> None:
    """Untrained objects are not models; the sklearn-API flavours win over duck typing."""
    xgb = pytest.importorskip("xgboost")
    lgb = pytest.importorskip("lightgbm")
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=120, n_features=4, random_state=0)
    assert flavors.flavor_for(xgb.XGBRegressor()) is None
    assert flavors.flavor_for(lgb.LGBMRegressor()) is None
    assert flavors.flavor_for(xgb.Booster()) is None  # no round boosted
    assert flavors.flavor_for(xgb.DMatrix(X, label=y)) is None
    assert flavors.flavor_for(lgb.Dataset(X, label=y)) is None
    regressor = xgb.XGBRegressor(n_estimators=5).fit(X, y)
    assert flavors.flavor_for(regressor).name == "xgboost"  # type: ignore[union-attr]
    assert "best_iteration" not in flavors.get("xgboost").params(regressor)  # no early stop
    assert flavors.get("xgboost").step_metrics(regressor) == {}  # no eval_set
    lgb_model = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, y)
    assert flavors.flavor_for(lgb_model).name == "lightgbm"  # type: ignore[union-attr]
    assert "best_iteration" not in flavors.get("lightgbm").params(lgb_model)

    # A native booster takes the history that is its own, not another training's.
    first: dict[str, Any] = {}
    second: dict[str, Any] = {}
    params = {"objective": "regression", "verbose": -1}
    b1 = lgb.train(
        params, lgb.Dataset(X, label=y), 6, valid_sets=[lgb.Dataset(X, label=y)],
        callbacks=[lgb.record_evaluation(first)],
    )  # fmt: skip
    b2 = lgb.train(
        {**params, "learning_rate": 0.5}, lgb.Dataset(X, label=y), 6,
        valid_sets=[lgb.Dataset(X, label=y)], callbacks=[lgb.record_evaluation(second)],
    )  # fmt: skip
    both = {"first": first, "second": second}
    lgb_flavor = flavors.get("lightgbm")
    assert lgb_flavor.step_metrics(b1, both)["valid_0-l2"] == first["valid_0"]["l2"]
    assert lgb_flavor.step_metrics(b2, both)["valid_0-l2"] == second["valid_0"]["l2"]
    assert lgb_flavor.requirements(b1)[0].startswith("lightgbm==")
    assert not any(r.startswith(("scikit-learn", "skops")) for r in lgb_flavor.requirements(b1))


def test_two_boosters_in_one_cell_get_prefixed_histories() -> None:
    xgb = pytest.importorskip("xgboost")
    source = """\
ea, eb = {}, {}
a = xgb.train({"max_depth": 2}, d, 4, evals=[(d, "train")], evals_result=ea, verbose_eval=False)
b = xgb.train({"max_depth": 3}, d, 7, evals=[(d, "train")], evals_result=eb, verbose_eval=False)
"""
    from sklearn.datasets import make_regression

    X, y = make_regression(n_samples=80, n_features=3, random_state=0)
    ns: dict[str, Any] = {"xgb": xgb, "d": xgb.DMatrix(X, label=y)}
    exec(source, ns)
    got = capture(analyse_cell(source), ns)
    assert set(got.models) == {"a", "b"}
    assert got.step_metrics["a"]["train-rmse"] == ns["ea"]["train"]["rmse"]
    assert got.step_metrics["b"]["train-rmse"] == ns["eb"]["train"]["rmse"]
    assert "ea" not in got.params and "eb" not in got.params
    assert got.params["a.max_depth"] == "2" and got.params["b.max_depth"] == "3"


MISSING = """\
import sys
sys.modules["xgboost"] = None  # what `import xgboost` sees when it is not installed
sys.modules["lightgbm"] = None
from jupyter_mlops.tracking import flavors
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

names = [f.name for f in flavors.available()]
model = LogisticRegression(max_iter=300).fit(*load_iris(return_X_y=True))
print(names, flavors.flavor_for(model).name)
"""


def test_missing_framework_is_skipped_not_an_import_error() -> None:
    """With xgboost and lightgbm unimportable, the package imports and sklearn still works."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run(
        [sys.executable, "-c", MISSING], capture_output=True, text=True, env=env, timeout=120
    )
    assert out.returncode == 0, out.stderr
    names, chosen = out.stdout.strip().rsplit(" ", 1)
    assert "xgboost" not in names and "lightgbm" not in names
    assert names.endswith("'sklearn']") and chosen == "sklearn"


def test_missing_framework_in_registry_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry's installed check decides: an absent xgboost leaves its models to
    the generic flavour rather than failing."""
    xgb = pytest.importorskip("xgboost")
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=60, n_features=3, n_informative=2, n_redundant=0)
    model = xgb.XGBClassifier(n_estimators=3).fit(X, y)
    monkeypatch.setattr(flavors, "_installed", lambda library: library != "xgboost")
    available = [f.name for f in flavors.available()]
    assert "xgboost" not in available and available[-2:] == ["lightgbm", "sklearn"]
    assert flavors.flavor_for(model).name == "sklearn"  # type: ignore[union-attr]


def test_native_boosters_in_a_real_kernel(git_project: Path) -> None:
    """The same capture in a kernel executed by papermill, both native APIs in one notebook."""
    import nbformat

    from jupyter_mlops.pipelines.execute import execute_notebook

    pytest.importorskip("xgboost")
    pytest.importorskip("lightgbm")
    _write_data(git_project)
    setup = (
        "import pandas as pd\nimport xgboost as xgb\nimport lightgbm as lgb\n"
        "from sklearn.model_selection import train_test_split\n"
    )
    native = {c.id: c for c in CASES if c.native}
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
            setup,
            "%%track -e kernel-gbm -n xgboost-native --quiet\n" + native["xgboost-native"].cell,
            "%%track -e kernel-gbm -n lightgbm-native --quiet\n" + native["lightgbm-native"].cell,
        )
    ]
    nbformat.write(nb, git_project / "gbm.ipynb")
    execute_notebook(git_project / "gbm.ipynb", git_project / "gbm.out.ipynb")

    from jupyter_mlops.client import client as project_client

    config = load_config()
    project_client(config)  # points MLflow's global tracking URI at this project
    client = MlflowClient(config.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("kernel-gbm").experiment_id])
    by_name = {r.info.run_name: r for r in runs}
    assert set(by_name) == {"xgboost-native", "lightgbm-native"}
    for case_id, run in by_name.items():
        case = native[case_id]
        assert run.info.status == "FINISHED"
        history = client.get_metric_history(run.info.run_id, case.history)
        assert [m.step for m in history] == list(range(len(history))) and len(history) >= 5
        model_uri = json.loads(run.data.tags["mlops.models"])["booster"]
        flavors_logged = mlflow.models.get_model_info(model_uri).flavors
        assert case.library in flavors_logged and "sklearn" not in flavors_logged
        assert not any(r.startswith("scikit-learn") for r in _requirements(model_uri))
