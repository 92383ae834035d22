"""Issue 15, items 7 and 8: missing values served as MLflow scores them, and probabilities.

One pipeline that imputes (``SimpleImputer`` + ``OneHotEncoder(handle_unknown="ignore")`` +
``LogisticRegression``, three string classes) is fitted on a frame with NaN and a category
column, logged through ``jupyter_mlops.track`` (so the signature is the one we log: inferred
from the first rows, where most columns have no NaN and are therefore *required*), registered
and deployed on 127.0.0.1. The same messy rows then go through ``mlflow.pyfunc`` in this
process, MLflow's own scoring-server parser, ``/predict``, ``/invocations`` (split and
records) and batch scoring: same predictions everywhere, and the same refusals (a 422 naming
the column) where MLflow refuses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

import jupyter_mlops
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.serving import (
    Deployment,
    InputError,
    ServingError,
    batch_predict,
    canary,
    deploy,
    read_predictions,
)
from tests.helpers import running

pytestmark = pytest.mark.slow

CLASSES = ["high", "low", "mid"]  # sorted, as sklearn orders string classes
COLUMNS = ["age", "income", "city", "visits"]

#: Real rows with holes: NaN and null in numbers, a null and an unseen category, a record
#: without the ``income`` key (others have it: it becomes null, as in pandas).
MESSY: list[dict[str, Any]] = [
    {"age": 30.0, "income": None, "city": "north", "visits": 3},
    {"age": float("nan"), "income": 55.0, "city": None, "visits": 2},
    {"age": 50.0, "income": 45.0, "city": "atlantis", "visits": 1},
    {"age": 41.0, "city": "south", "visits": 0},
    {"age": None, "income": float("nan"), "city": "east", "visits": 7},
]


def _training_frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(0)
    n = 300
    X = pd.DataFrame(
        {
            "age": rng.normal(40, 12, n),
            "income": rng.normal(50, 15, n),
            "city": rng.choice(["north", "south", "east"], n),
            "visits": rng.integers(0, 10, n),
        }
    )
    X.loc[0, "income"] = np.nan  # in the signature's rows: income is optional
    X.loc[10::7, "age"] = np.nan  # after them: age stays required, yet has NaN in real data
    X.loc[12::11, "city"] = np.nan
    score = X["age"].fillna(40) + X["income"].fillna(50) / 2
    y = pd.Series(np.where(score > 70, "high", np.where(score < 60, "low", "mid")))
    return X, y


def _pipeline() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    prep = ColumnTransformer(
        [
            ("num", SimpleImputer(), ["age", "income", "visits"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["city"],
            ),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=1000))])


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project with ``messy`` (the imputing classifier) and ``price`` (a regressor)."""
    from sklearn.linear_model import LinearRegression

    root = tmp_path_factory.mktemp("nan-proba") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        X, y = _training_frame()
        model = _pipeline().fit(X, y)
        with jupyter_mlops.track(experiment="messy", config=cfg) as run:
            # The signature from the first rows, as `infer_signature(X.head(10))` would give:
            # age and city required there, yet holding NaN/None in later rows.
            run.log_model(model, "model", X=X.head(10))
        jupyter_mlops.register(run.run_id, name="messy", aliases=["champion"], config=cfg)
        Xr = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
        reg = LinearRegression().fit(Xr, Xr["a"] * 2 + Xr["b"])
        with jupyter_mlops.track(experiment="price", config=cfg) as run:
            run.log_model(reg, "model", X=Xr)
        jupyter_mlops.register(run.run_id, name="price", aliases=["champion"], config=cfg)
        yield cfg


@pytest.fixture(scope="module")
def pyfunc(config: Config) -> Any:
    import mlflow.pyfunc

    from jupyter_mlops.client import client

    client(config)
    return mlflow.pyfunc.load_model("models:/messy@champion")


@pytest.fixture(scope="module")
def messy_frame() -> pd.DataFrame:
    return pd.DataFrame(MESSY, columns=COLUMNS)


@pytest.fixture(scope="module")
def expected(pyfunc: Any, messy_frame: pd.DataFrame) -> list[str]:
    """What ``mlflow.pyfunc`` predicts for the messy rows in this process."""
    return [str(v) for v in pyfunc.predict(messy_frame)]


@pytest.fixture(scope="module")
def server(config: Config) -> Iterator[Deployment]:
    with running("messy@champion", config, name="messy") as dep:
        yield dep


@pytest.fixture
def http(server: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def strict(config: Config) -> Iterator[httpx.Client]:
    """A server whose /invocations validates as /predict does (``strict_invocations``)."""
    with (
        running("messy@champion", config, name="messy-strict", strict_invocations=True) as dep,
        httpx.Client(base_url=dep.url, timeout=30) as client,
    ):
        assert dep.strict_invocations
        yield client


def _json(payload: Any) -> bytes:
    """JSON as Python writes it: NaN stays NaN (clients do send it), None is null."""
    return json.dumps(payload).encode()


def _post(http: httpx.Client, path: str, payload: Any) -> httpx.Response:
    return http.post(path, content=_json(payload), headers={"Content-Type": "application/json"})


# -- item 7: missing values ---------------------------------------------------------------


def test_signature_marks_columns_required_as_mlflow_infers_it(pyfunc: Any) -> None:
    schema = pyfunc.metadata.get_input_schema()
    required = {c.name: c.required for c in schema.inputs}
    # The bug: age and city are *required* (present), and real rows still hold NaN/None.
    assert required == {"age": True, "income": False, "city": True, "visits": True}


def test_same_messy_rows_same_predictions_everywhere(
    config: Config,
    http: httpx.Client,
    pyfunc: Any,
    messy_frame: pd.DataFrame,
    expected: list[str],
    tmp_path: Path,
) -> None:
    from mlflow.pyfunc.scoring_server import infer_and_parse_data

    assert len(set(expected)) > 1  # the rows are not all one class: agreement means something
    schema = pyfunc.metadata.get_input_schema()
    split = json.loads(messy_frame.to_json(orient="split", index=False))
    for payload in ({"dataframe_records": MESSY}, {"dataframe_split": split}):
        # MLflow's own scoring server parses these to frames it scores
        parsed = infer_and_parse_data(payload, schema)
        assert [str(v) for v in pyfunc.predict(parsed)] == expected
        answer = _post(http, "/invocations", payload)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"predictions": expected}
    for body in (MESSY, json.loads(messy_frame.to_json(orient="records"))):  # NaN / null
        answer = _post(http, "/predict", body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["predictions"] == expected
    one = _post(http, "/predict", MESSY[1])  # a single record with NaN and null
    assert one.json()["predictions"] == expected[1:2]

    source, out = tmp_path / "messy.csv", tmp_path / "scored.csv"
    messy_frame.to_csv(source, index=False)
    batch_predict("messy@champion", source, out, config=config)
    assert pd.read_csv(out)["prediction"].astype(str).tolist() == expected


def test_null_integer_is_refused_where_mlflow_refuses(
    config: Config,
    http: httpx.Client,
    strict: httpx.Client,
    pyfunc: Any,
    messy_frame: pd.DataFrame,
    tmp_path: Path,
) -> None:
    from mlflow.exceptions import MlflowException

    rows = [MESSY[0], {**MESSY[2], "visits": None}]
    with pytest.raises(MlflowException, match="visits"):
        pyfunc.predict(pd.DataFrame(rows, columns=COLUMNS))
    split = {"columns": COLUMNS, "data": [[r.get(c) for c in COLUMNS] for r in rows]}
    for payload in ({"dataframe_records": rows}, {"dataframe_split": split}):
        answer = _post(http, "/invocations", payload)  # as mlflow models serve answers
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "BAD_REQUEST"
        assert "visits" in answer.json()["message"]
    for client, path, payload in (
        (http, "/predict", rows),
        (strict, "/invocations", {"dataframe_records": rows}),
        (strict, "/invocations", {"dataframe_split": split}),
    ):
        answer = _post(client, path, payload)
        assert answer.status_code == 422, answer.text
        body = answer.json()
        assert (body["error_code"], body["column"]) == ("MISSING_VALUE", "visits")
        assert "'visits'" in body["message"] and "record 1" in body["message"]
        assert "\n" not in body["message"]
    source = tmp_path / "holes.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(source, index=False)
    with pytest.raises(InputError, match=r"'visits'.*row 1") as info:
        batch_predict("messy@champion", source, tmp_path / "out.csv", config=config)
    assert info.value.column == "visits"


def test_absent_columns_follow_mlflow(
    config: Config, http: httpx.Client, strict: httpx.Client, pyfunc: Any, tmp_path: Path
) -> None:
    """Required: refused by name. Optional and absent from the whole request: left out, as
    MLflow leaves it out; this pipeline then cannot run, and every path says which column."""
    no_age = [{k: v for k, v in r.items() if k != "age"} for r in MESSY[:2]]
    answer = _post(http, "/predict", no_age)
    assert answer.status_code == 422
    assert (answer.json()["error_code"], answer.json()["column"]) == ("MISSING_COLUMN", "age")

    no_income = [{k: v for k, v in r.items() if k != "income"} for r in MESSY[:2]]
    with pytest.raises(Exception, match="income"):
        pyfunc.predict(pd.DataFrame(no_income))
    for client, path, payload in (
        (http, "/predict", no_income),
        (strict, "/invocations", {"dataframe_records": no_income}),
    ):
        answer = _post(client, path, payload)
        assert answer.status_code == 422, answer.text
        assert "'income'" in answer.json()["message"]
    answer = _post(http, "/invocations", {"dataframe_records": no_income})
    assert answer.status_code == 400  # MLflow's answer to a model that fails: its traceback
    assert answer.json()["error_code"] == "BAD_REQUEST"
    assert "income" in answer.json()["stack_trace"]
    source = tmp_path / "no-income.csv"
    pd.DataFrame(no_income).to_csv(source, index=False)
    with pytest.raises(InputError, match="income"):
        batch_predict("messy@champion", source, tmp_path / "out.csv", config=config)


def test_wrong_types_still_refused(http: httpx.Client) -> None:
    for column, value in (("age", "old"), ("city", 3), ("visits", 2.5)):
        answer = _post(http, "/predict", {**MESSY[0], column: value})
        assert answer.status_code == 422
        assert (answer.json()["error_code"], answer.json()["column"]) == ("WRONG_TYPE", column)


# -- item 8: probabilities ----------------------------------------------------------------


def _native(config: Config) -> Any:
    import mlflow.sklearn

    from jupyter_mlops.client import client

    client(config)
    return mlflow.sklearn.load_model("models:/messy@champion")


def test_probabilities_per_request(
    config: Config, server: Deployment, http: httpx.Client, messy_frame: pd.DataFrame
) -> None:
    native = _native(config)
    assert list(native.classes_) == CLASSES
    want = native.predict_proba(messy_frame)
    answer = http.post("/predict?predict=proba", content=_json(MESSY))
    assert answer.status_code == 200, answer.text
    rows = answer.json()["predictions"]
    assert [list(r) for r in rows] == [CLASSES] * len(MESSY)  # keys in class order
    for row, probs in zip(rows, want, strict=True):
        assert math.isclose(sum(row.values()), 1.0, abs_tol=1e-9)
        assert np.allclose([row[c] for c in CLASSES], probs, atol=1e-12)
    same = _post(http, "/invocations?predict=proba", {"dataframe_records": MESSY})
    assert same.json()["predictions"] == rows
    labels = _post(http, "/predict", MESSY).json()["predictions"]  # the default: labels
    assert labels == [CLASSES[int(np.argmax(p))] for p in want]
    alone = server.predict(MESSY[:1], proba=True)["predictions"]  # one row: float noise only
    assert np.allclose([alone[0][c] for c in CLASSES], [rows[0][c] for c in CLASSES])

    version = http.get("/info").json()
    assert version["predict"] == "label"
    assert version["classes"] == CLASSES
    assert version["models"][0]["classes"] == CLASSES
    bad = http.post("/predict?predict=probs", content=_json(MESSY[:1]))
    assert bad.status_code == 400 and "'probs'" in bad.json()["message"]


def test_openapi_documents_predict_and_class_order(http: httpx.Client) -> None:
    schema = http.get("/openapi.json").json()
    assert schema["info"]["x-classes"] == CLASSES
    operation = schema["paths"]["/predict"]["post"]
    parameter = next(p for p in operation["parameters"] if p["name"] == "predict")
    assert parameter["schema"]["enum"] == ["label", "proba"]
    assert parameter["schema"]["default"] == "label"
    items = operation["responses"]["200"]["content"]["application/json"]["schema"]
    proba = items["properties"]["predictions"]["items"]["oneOf"][1]
    assert list(proba["properties"]) == CLASSES
    assert proba["x-classes"] == CLASSES


def test_deploy_proba_logs_probabilities(config: Config, messy_frame: pd.DataFrame) -> None:
    native = _native(config)
    with running("messy@champion", config, name="messy-proba", predict="proba") as dep:
        assert dep.predict_mode == "proba"
        answer = dep.predict(MESSY)
        labels = dep.predict(MESSY, proba=False)["predictions"]
        assert labels == [str(v) for v in native.predict(messy_frame)]
        with httpx.Client(base_url=dep.url, timeout=30) as http:
            assert http.get("/info").json()["predict"] == "proba"
            # a canary must answer probabilities too: refused, the deployment serves on
            with pytest.raises(ServingError, match="has no predict_proba"):
                canary("messy-proba", "price@champion", 10, config=config)
            assert http.post("/predict", content=_json(MESSY[:1])).status_code == 200
    rows = answer["predictions"]
    assert np.allclose([[r[c] for c in CLASSES] for r in rows], native.predict_proba(messy_frame))
    log = read_predictions("messy-proba", config=config)
    mine = log[log["request_id"] == answer["request_id"]]
    assert [f"prediction_{c}" for c in CLASSES] == [
        c for c in log.columns if c.startswith("prediction_")
    ]
    assert np.allclose(
        mine[[f"prediction_{c}" for c in CLASSES]].to_numpy(dtype=float),
        native.predict_proba(messy_frame),
    )
    assert np.allclose(mine[[f"prediction_{c}" for c in CLASSES]].sum(axis=1), 1.0)


def test_regressor_with_proba_refused_before_the_server_starts(config: Config) -> None:
    from jupyter_mlops.serving import list_deployments

    with pytest.raises(ServingError, match="has no predict_proba") as info:
        deploy("price@champion", name="price", predict="proba", config=config)
    assert "\n" not in str(info.value)
    assert "price" not in [d.name for d in list_deployments(config)]
    with (
        running("price@champion", config, name="price") as dep,
        httpx.Client(base_url=dep.url, timeout=30) as http,
    ):
        answer = http.post("/predict?predict=proba", json={"a": 1.0, "b": 2.0})
        assert answer.status_code == 400
        assert answer.json()["error_code"] == "NO_PREDICT_PROBA"
        assert "has no predict_proba" in answer.json()["message"]
        assert http.get("/info").json()["classes"] is None
        assert http.post("/predict", json={"a": 1.0, "b": 2.0}).status_code == 200


# -- the faces: %deploy --predict proba and `jupyter-mlops deploy start --predict proba` -----


@pytest.mark.slow
def test_faces_predict_proba(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from IPython.core.error import UsageError
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LinearRegression, LogisticRegression

    from jupyter_mlops.cli import main
    from tests.helpers import kill_process_group

    X, y = load_iris(return_X_y=True, as_frame=True)
    clf = LogisticRegression(max_iter=500).fit(X, y)
    reg = LinearRegression().fit(X, y)
    for name, model in (("iris-lr", clf), ("iris-reg", reg)):
        with jupyter_mlops.track(experiment="faces") as run:
            run.log_model(model, "model", X=X)
        jupyter_mlops.register(run.run_id, name=name, aliases=["champion"])

    with pytest.raises(UsageError, match="has no predict_proba"):
        ip.run_line_magic("deploy", "iris-reg@champion --predict proba")
    assert main(["deploy", "start", "iris-reg@champion", "--predict", "proba"]) != 0
    err = capsys.readouterr().err.strip()
    assert "has no predict_proba" in err and len(err.splitlines()) == 1

    dep = ip.run_line_magic("deploy", "iris-lr@champion --predict proba --name iris-proba")
    try:
        rows = dep.predict(X.iloc[:3])["predictions"]
        assert np.allclose(
            [[r[str(c)] for c in clf.classes_] for r in rows], clf.predict_proba(X.iloc[:3])
        )
        assert "class probabilities" in str(dep)
    finally:
        ip.run_line_magic("deploy", "iris-proba --stop")
        kill_process_group(dep.pid)
    assert (
        main(["deploy", "start", "iris-lr@champion", "--predict", "proba", "--name", "cli-p"]) == 0
    )
    try:
        from jupyter_mlops.serving import get_deployment

        cli_dep = get_deployment("cli-p")
        assert cli_dep.predict_mode == "proba"
        assert sum(cli_dep.predict(X.iloc[:1])["predictions"][0].values()) == pytest.approx(1.0)
    finally:
        assert main(["deploy", "stop", "cli-p"]) == 0
        kill_process_group(cli_dep.pid)


@pytest.mark.slow
def test_shell_track_register_deploy_messy_rows(ip: Any) -> None:
    """The notebook path: ``%%track`` fits the imputing pipeline (its signature from the
    first rows), ``%register``, ``%deploy``; the messy rows are answered as in the kernel."""
    from tests.helpers import kill_process_group

    X, y = _training_frame()
    ip.user_ns.update(X=X, y=y, make_pipeline=_pipeline)
    ip.run_cell_magic("track", "-e messy -n shell", "model = make_pipeline().fit(X, y)\n")
    ip.run_line_magic("register", "--name messy-shell --alias champion")
    dep = ip.run_line_magic("deploy", "messy-shell@champion --name messy-shell")
    try:
        frame = pd.DataFrame(MESSY, columns=COLUMNS)
        answer = dep.predict(MESSY)
        assert answer["predictions"] == [str(v) for v in ip.user_ns["model"].predict(frame)]
        proba = dep.predict(MESSY, proba=True)["predictions"]
        assert np.allclose(
            [[r[c] for c in CLASSES] for r in proba], ip.user_ns["model"].predict_proba(frame)
        )
    finally:
        ip.run_line_magic("deploy", "messy-shell --stop")
        kill_process_group(dep.pid)
