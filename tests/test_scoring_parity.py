"""``/invocations`` answers as ``mlflow models serve`` does: one corpus, two real servers.

One classifier with a signature (two double columns and one long column) is registered in a
temporary project; MLflow's own scoring server (``mlflow models serve --env-manager local``)
and a ``deploy()`` server serve it on 127.0.0.1. Every request of the corpus (each JSON
format, each malformed kind, each content type and charset, params) goes to both; status,
content type and body must agree: predictions exactly, errors by ``error_code`` and message
(only a traceback, which names files of the process, is left out of the comparison).
Where MLflow's own server fails (500, e.g. no Content-Type), ours answers MLflow's error
shape with ``BAD_REQUEST`` (400) instead.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.serving import Deployment, read_predictions
from tests.helpers import free_port, kill_process_group, running

pytestmark = pytest.mark.slow

COLUMNS = ["sepal length (cm)", "petal length (cm)", "petals"]
JSON = "application/json"


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project with ``parity-clf`` version 1: a forest over two doubles and a long."""
    root = tmp_path_factory.mktemp("parity") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        _register(cfg)
        yield cfg


def _frame() -> tuple[pd.DataFrame, Any]:
    from sklearn.datasets import load_iris

    iris = load_iris(as_frame=True)
    frame = iris.frame[["sepal length (cm)", "petal length (cm)"]].copy()
    frame["petals"] = (iris.frame["petal width (cm)"] * 10).round().astype("int64")
    return frame, iris.target


def _register(config: Config) -> None:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.ensemble import RandomForestClassifier

    from jupyter_mlops.client import client

    client(config)
    X, y = _frame()
    with warnings.catch_warnings():  # MLflow's hint about integer columns: the point here
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(X, y)
    model = RandomForestClassifier(n_estimators=20, random_state=0).fit(X, y)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="cloudpickle",
            signature=signature,
            pip_requirements=["scikit-learn"],
        )
    mlflow.register_model(info.model_uri, "parity-clf")


@pytest.fixture(scope="module")
def mlflow_url(config: Config) -> Iterator[str]:
    """MLflow's own scoring server on the same registered model."""
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": config.tracking_uri}
    # it runs `uvicorn` by name: the venv's scripts first on PATH
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = (config.mlops_dir / "mlflow-serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/parity-clf/1",
         "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
        cwd=config.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (config.mlops_dir / "mlflow-serve.log").read_text()
            try:
                if httpx.get(f"{url}/ping", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "mlflow models serve did not start"
            time.sleep(0.2)
        yield url
    finally:
        kill_process_group(proc.pid)
        log.close()


@pytest.fixture(scope="module")
def ours(config: Config) -> Iterator[Deployment]:
    with running("parity-clf/1", config, name="parity") as dep:
        yield dep


def _parquet(frame: pd.DataFrame) -> bytes:
    out = io.BytesIO()
    frame.to_parquet(out)
    return out.getvalue()


def corpus() -> list[tuple[str, str | None, bytes]]:
    """(name, content type, body): valid requests, each malformed kind, each content type."""
    frame, _ = _frame()
    rows = frame.iloc[::15]
    records = json.loads(rows.to_json(orient="records"))
    split = json.loads(rows.to_json(orient="split", index=False))
    one = records[0]
    lists = rows.to_numpy().tolist()
    j = json.dumps

    def js(payload: Any) -> bytes:
        return j(payload).encode()

    reordered = {"columns": split["columns"][::-1], "data": [r[::-1] for r in split["data"]]}
    cases: list[tuple[str, str | None, bytes]] = [
        ("records", JSON, js({"dataframe_records": records})),
        ("records-one", JSON, js({"dataframe_records": [one]})),
        ("records-int-double", JSON, js({"dataframe_records": [{**one, "petal length (cm)": 1}]})),
        ("split", JSON, js({"dataframe_split": split})),
        ("split-reordered", JSON, js({"dataframe_split": reordered})),
        ("split-index", JSON, js({"dataframe_split": {**split, "index": list(range(10))}})),
        ("split-no-columns", JSON, js({"dataframe_split": {"data": split["data"]}})),
        ("instances-records", JSON, js({"instances": records})),
        ("instances-positional", JSON, js({"instances": lists})),
        ("inputs-columns", JSON, js({"inputs": {c: rows[c].tolist() for c in COLUMNS}})),
        ("inputs-records", JSON, js({"inputs": records})),
        ("inputs-one", JSON, js({"inputs": one})),
        ("extra-column", JSON, js({"dataframe_records": [{**one, "colour": "red"}]})),
        ("missing-column", JSON, js({"dataframe_records": [{"petals": 2}]})),
        ("string-in-double", JSON, js({"dataframe_records": [{**one, "sepal length (cm)": "x"}]})),
        ("float-in-long", JSON, js({"dataframe_records": [{**one, "petals": 2.5}]})),
        ("bool-in-double", JSON, js({"dataframe_records": [{**one, "sepal length (cm)": True}]})),
        ("null-in-double", JSON, js({"dataframe_records": [{**one, "sepal length (cm)": None}]})),
        ("null-in-long", JSON, js({"dataframe_records": [{**one, "petals": None}]})),
        (
            "nan-literal",
            JSON,
            b'{"dataframe_records": [{"sepal length (cm)": NaN, '
            b'"petal length (cm)": 1.4, "petals": 2}]}',
        ),
        ("split-short-row", JSON, js({"dataframe_split": {"columns": COLUMNS, "data": [[1.0]]}})),
        ("split-list", JSON, js({"dataframe_split": lists})),
        ("records-dict", JSON, js({"dataframe_records": one})),
        ("records-empty", JSON, js({"dataframe_records": []})),
        ("two-formats", JSON, js({"dataframe_records": records, "inputs": records})),
        ("no-format", JSON, js({"records": records})),
        ("top-level-list", JSON, js(records)),
        ("scalar", JSON, b"3"),
        ("empty-body", JSON, b""),
        ("malformed-json", JSON, b'{"dataframe_records": [{'),
        ("not-utf8", JSON, b'{"dataframe_records": "\xff"}'),
        ("params", JSON, js({"dataframe_records": records, "params": {"alpha": 1}})),
        ("params-null", JSON, js({"dataframe_records": records, "params": None})),
        ("charset-utf8", "application/json; charset=utf-8", js({"dataframe_records": records})),
        ("charset-UTF8", "application/json;charset=UTF-8", js({"dataframe_split": split})),
        ("charset-latin1", "application/json; charset=latin-1", js({"dataframe_split": split})),
        ("unknown-param", "application/json; format=pandas-split", js({"dataframe_split": split})),
        ("json-uppercase", "Application/JSON", js({"dataframe_split": split})),
        ("csv", "text/csv", rows.to_csv(index=False).encode()),
        ("csv-charset", "text/csv; charset=utf-8", rows.to_csv(index=False).encode()),
        ("csv-bad-type", "text/csv", b"sepal length (cm),petal length (cm),petals\nx,1.0,2\n"),
        ("csv-empty", "text/csv", b""),
        ("parquet", "application/vnd.apache.parquet", _parquet(rows)),
        ("parquet-garbage", "application/vnd.apache.parquet", b"not parquet"),
        ("text-plain", "text/plain", js({"dataframe_split": split})),
        ("no-content-type", None, js({"dataframe_split": split})),
    ]
    return cases


def _post(url: str, content_type: str | None, body: bytes) -> httpx.Response:
    headers = {} if content_type is None else {"Content-Type": content_type}
    request = httpx.Request("POST", f"{url}/invocations", content=body, headers=headers)
    assert ("content-type" in request.headers) == (content_type is not None)
    with httpx.Client(timeout=60) as client:
        return client.send(request)


def _unordered_sets(text: str) -> str:
    """MLflow prints a Python set of its formats: its order follows the process's hash seed."""
    return re.sub(
        r"\{'[a-z_]+'(?:, '[a-z_]+')*\}",
        lambda m: "{" + ", ".join(sorted(m.group(0)[1:-1].split(", "))) + "}",
        text,
    )


def _comparable(response: httpx.Response) -> Any:
    """The body to compare: JSON with a traceback (files of the process) left out, and the
    order of a printed set (the process's hash seed) made canonical."""
    if not response.headers.get("content-type", "").startswith(JSON):
        return response.text
    try:
        body = json.loads(response.text)
    except ValueError:
        return response.text
    if isinstance(body, dict):
        body.pop("stack_trace", None)
        if isinstance(body.get("message"), str):
            body["message"] = _unordered_sets(body["message"])
    return body


def test_invocations_answer_as_mlflow_models_serve(
    mlflow_url: str, ours: Deployment, config: Config
) -> None:
    differences, ok, statuses = [], 0, {}
    for name, content_type, body in corpus():
        theirs, mine = _post(mlflow_url, content_type, body), _post(ours.url, content_type, body)
        assert mine.headers["x-request-id"]
        seen = (
            mine.status_code,
            mine.headers.get("content-type"),
            _comparable(mine),
        )
        want = (
            theirs.status_code,
            theirs.headers.get("content-type"),
            _comparable(theirs),
        )
        if theirs.status_code == 500:  # MLflow fails on the request: ours says what is wrong
            want = (400, JSON, "BAD_REQUEST")
            seen = (mine.status_code, mine.headers.get("content-type"), _comparable(mine))
            seen = (*seen[:2], seen[2].get("error_code") if isinstance(seen[2], dict) else None)
        if seen != want:
            differences.append(f"{name}:\n  mlflow: {want}\n  ours:   {seen}")
        elif theirs.status_code == 200 and mine.content != theirs.content:
            differences.append(f"{name}: same JSON, other bytes: {mine.content!r}")
        statuses[name] = theirs.status_code
        ok += theirs.status_code == 200
    assert not differences, "\n".join(differences)
    print(statuses)
    assert ok >= 12  # the corpus holds answered requests, not only errors

    # every answered /invocations request was logged with its predictions
    log = read_predictions("parity", config=config)
    assert (log["endpoint"] == "invocations").sum() >= ok


def test_version_and_ping_as_mlflow(mlflow_url: str, ours: Deployment) -> None:
    for path in ("/version", "/ping"):
        theirs, mine = httpx.get(f"{mlflow_url}{path}"), httpx.get(f"{ours.url}{path}")
        assert mine.status_code == theirs.status_code == 200
        assert mine.headers["content-type"] == theirs.headers["content-type"]
        assert mine.text == theirs.text
