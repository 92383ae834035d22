"""The serving core against real parts: an MLflow registry in a temporary project, real
uvicorn servers started with ``deploy()`` on free loopback ports, real HTTP requests.

One server (``iris``) is shared by most tests of this module; tests that change its routing
put it back as they found it. Servers that are killed, protected by a token or run several
workers are started by their own tests. Every server is stopped in teardown by its pid
(SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.serving import (
    LINEAGE_COLUMNS,
    Deployment,
    InputError,
    PortInUseError,
    ServingError,
    SQLitePredictionStore,
    batch_predict,
    canary,
    deploy,
    get_deployment,
    list_deployments,
    promote,
    read_predictions,
    resolve_target,
    rollback,
    stop,
)
from jupyter_mlops.serving.state import read_acks
from tests.helpers import register_iris, running

pytestmark = pytest.mark.slow

FEATURES = ["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"]


# -- fixtures -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Config]:
    """A project (like the ``project`` fixture, for the whole module) with two versions of
    ``iris-rf``: v1 (100 trees, alias champion) and v2 (10 trees, alias challenger)."""
    root = tmp_path_factory.mktemp("serving") / "proj"
    (root / ".mlops").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        cfg = load_config(root)
        assert register_iris(cfg, 100, 0, "champion") == "1"
        assert register_iris(cfg, 10, 1, "challenger") == "2"
        yield cfg


@pytest.fixture(scope="module")
def iris_frame() -> pd.DataFrame:
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).frame


@pytest.fixture(scope="module")
def expected(config: Config, iris_frame: pd.DataFrame) -> dict[str, list[int]]:
    """What each version predicts for the iris rows, in this process."""
    import mlflow.pyfunc

    from jupyter_mlops.client import client

    client(config)  # points MLflow's global tracking URI at this project
    return {
        v: mlflow.pyfunc.load_model(f"models:/iris-rf/{v}").predict(iris_frame[FEATURES]).tolist()
        for v in ("1", "2")
    }


@pytest.fixture(scope="module")
def server(config: Config) -> Iterator[Deployment]:
    """The shared server: iris-rf@champion, default options."""
    with running("iris-rf@champion", config, name="iris", max_body_bytes=64 * 1024) as dep:
        yield dep


@pytest.fixture
def http(server: Deployment) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


def records(frame: pd.DataFrame) -> list[dict[str, float]]:
    return json.loads(frame[FEATURES].to_json(orient="records"))


def fire(
    url: str,
    bodies: list[Any],
    *,
    concurrency: int = 16,
    headers: list[dict[str, str]] | None = None,
) -> list[httpx.Response]:
    """POST each body (JSON) to ``url`` with ``concurrency`` requests in flight.

    Threads with one keep-alive client each: httpx's async pool slows to a crawl with
    thousands of queued requests, which would hide the server's behaviour.
    """
    local = threading.local()
    clients: list[httpx.Client] = []

    def one(i: int) -> httpx.Response:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(timeout=60)
            clients.append(client)
        return client.post(url, json=bodies[i], headers=headers[i] if headers else None)

    try:
        with ThreadPoolExecutor(concurrency) as pool:
            return list(pool.map(one, range(len(bodies))))
    finally:
        for client in clients:
            client.close()


def binomial_bounds(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    """The smallest [lo, hi] leaving at most ``tail`` of Binomial(n, p) out on each side."""

    def pmf(k: int) -> float:
        log = math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
        return math.exp(log + k * math.log(p) + (n - k) * math.log1p(-p))

    lo, acc = 0, 0.0
    while acc + pmf(lo) < tail:
        acc += pmf(lo)
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf(hi) < tail:
        acc += pmf(hi)
        hi -= 1
    return lo, hi


# -- resolving targets --------------------------------------------------------------------


def test_resolve_errors_explain(config: Config) -> None:
    with pytest.raises(ServingError, match=r"champion \(v1\)"):
        deploy("iris-rf", config=config)  # a bare name: which alias or version?
    with pytest.raises(NotFoundError, match=r"no alias 'nope'.*champion"):
        deploy("iris-rf@nope", config=config)
    with pytest.raises(NotFoundError, match="no version 99"):
        deploy("iris-rf/99", config=config)
    with pytest.raises(NotFoundError):
        deploy("no-such-model@champion", config=config)


# -- the shared server --------------------------------------------------------------------


def test_deployment_view(server: Deployment, config: Config) -> None:
    dep = get_deployment("iris", config=config)
    assert dep.status == "running"
    assert dep.host == "127.0.0.1"
    assert (dep.primary.name, dep.primary.version) == ("iris-rf", "1")
    assert dep.primary.alias == "champion"
    text = str(dep)
    assert dep.url in text
    assert f"curl -s {dep.url}/predict" in text
    assert "sepal length (cm)" in text  # the curl example uses the model's input example
    html = dep._repr_html_()
    assert dep.url in html
    assert "<pre>" in html
    listed = {d.name: d for d in list_deployments(config)}
    assert listed["iris"].status == "running"
    assert listed["iris"].traffic == {"iris-rf v1": 100.0}
    assert "iris" in str(list_deployments(config))


def test_predict_equals_model_predict(
    server: Deployment, http: httpx.Client, iris_frame: pd.DataFrame, expected: dict
) -> None:
    response = http.post("/predict", json=records(iris_frame))
    assert response.status_code == 200
    body = response.json()
    assert body["predictions"] == expected["1"]
    assert body["request_id"] == response.headers["x-request-id"]
    assert body["model"] == {
        "name": "iris-rf",
        "version": "1",
        "run_id": server.primary.run_id,
        "role": "primary",
    }
    single = http.post("/predict", json=records(iris_frame.iloc[[100]])[0])
    assert single.json()["predictions"] == [expected["1"][100]]
    assert server.predict(iris_frame[FEATURES].iloc[:3])["predictions"] == expected["1"][:3]


def test_concurrent_single_rows_are_answered_each_with_its_own_prediction(
    server: Deployment, iris_frame: pd.DataFrame, expected: dict
) -> None:
    rows = records(iris_frame)
    responses = fire(f"{server.url}/predict", rows, concurrency=32)
    assert [r.status_code for r in responses] == [200] * len(rows)
    assert [r.json()["predictions"][0] for r in responses] == expected["1"]
    assert len({r.headers["x-request-id"] for r in responses}) == len(rows)


@pytest.mark.parametrize("fmt", ["dataframe_split", "dataframe_records", "instances", "inputs"])
def test_invocations_accepts_mlflow_formats(
    http: httpx.Client, iris_frame: pd.DataFrame, expected: dict, fmt: str
) -> None:
    frame = iris_frame[FEATURES]
    payload = {
        "dataframe_split": {"columns": FEATURES, "data": frame.to_numpy().tolist()},
        "dataframe_records": records(frame),
        "instances": records(frame),
        "inputs": {c: frame[c].tolist() for c in FEATURES},
    }[fmt]
    response = http.post("/invocations", json={fmt: payload})
    assert response.status_code == 200, response.text
    assert response.json() == {"predictions": expected["1"]}


def test_invocations_csv_and_mlflow_client(
    server: Deployment, http: httpx.Client, iris_frame: pd.DataFrame, expected: dict
) -> None:
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    csv = iris_frame[FEATURES].to_csv(index=False)
    response = http.post("/invocations", content=csv, headers={"Content-Type": "text/csv"})
    assert response.json() == {"predictions": expected["1"]}
    mlflow_client = ScoringServerClient(server.host, server.port)
    mlflow_client.ping()  # raises unless /ping answers 200
    answer = mlflow_client.invoke(iris_frame[FEATURES]).get_predictions()
    assert answer.iloc[:, 0].tolist() == expected["1"]


_GOOD = {"sepal length (cm)": 5.1, "sepal width (cm)": 3.5, "petal length (cm)": 1.4}
_GOOD_ROW = {**_GOOD, "petal width (cm)": 0.2}


# null/NaN in a double column are scored, as MLflow scores them: tests/test_serving_nan_proba.py
@pytest.mark.parametrize(
    ("body", "status", "code", "column"),
    [
        (json.dumps(_GOOD), 422, "MISSING_COLUMN", "petal width (cm)"),
        (json.dumps({**_GOOD_ROW, "colour": "red"}), 422, "UNEXPECTED_COLUMN", "colour"),
        (json.dumps({**_GOOD_ROW, "petal width (cm)": "wide"}), 422, "WRONG_TYPE",
         "petal width (cm)"),
        (json.dumps({**_GOOD_ROW, "petal width (cm)": True}), 422, "WRONG_TYPE",
         "petal width (cm)"),
        ("", 400, "EMPTY_BODY", None),
        ("[]", 400, "EMPTY_BODY", None),
        ('{"sepal length (cm)": 5.1,', 400, "MALFORMED_JSON", None),
        ("[1, 2]", 400, "BAD_PAYLOAD", None),
        ('"text"', 400, "BAD_PAYLOAD", None),
        (json.dumps([_GOOD_ROW] * 2000), 413, "PAYLOAD_TOO_LARGE", None),
    ],
    ids=["missing", "extra", "string", "bool", "empty", "no-records", "malformed",
         "not-objects", "scalar", "too-large"],
)  # fmt: skip
def test_bad_input_is_a_named_4xx(
    http: httpx.Client, body: str, status: int, code: str, column: str | None
) -> None:
    response = http.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    answer = response.json()
    assert answer["error_code"] == code
    assert answer["request_id"] == response.headers["x-request-id"]
    if column is not None:
        assert answer["column"] == column
        assert repr(column) in answer["message"]
    assert http.get("/health").status_code == 200  # still up
    assert http.post("/predict", json=_GOOD_ROW).status_code == 200


_BAD_INVOCATIONS = [
    {"records": [_GOOD_ROW]},  # no known format key
    {"dataframe_split": {"columns": ["a"], "data": [[1]]}},
    {"dataframe_split": {"columns": FEATURES, "data": [[1, 2, 3]]}},
    {"instances": [_GOOD_ROW], "inputs": [_GOOD_ROW]},
    {"dataframe_records": [{**_GOOD_ROW, "colour": "red"}]},
]


def test_bad_invocations_payloads(http: httpx.Client) -> None:
    """Answered as mlflow models serve answers (tests/test_scoring_parity.py compares)."""
    codes = []
    for payload in _BAD_INVOCATIONS:
        response = http.post("/invocations", json=payload)
        codes.append((response.status_code, response.json().get("error_code")))
        assert response.status_code == 200 or response.json()["message"]
        assert response.headers["x-request-id"]
    assert codes == [
        (400, "BAD_REQUEST"),
        (400, "INVALID_PARAMETER_VALUE"),
        (400, "BAD_REQUEST"),
        (400, "BAD_REQUEST"),
        (200, None),  # MLflow drops a column the signature does not name
    ]
    wrong = http.post("/invocations", content=b"x", headers={"Content-Type": "text/plain"})
    assert wrong.status_code == 415


def test_strict_invocations_validate_as_predict(config: Config) -> None:
    with (
        running("iris-rf@champion", config, name="iris-strict", strict_invocations=True) as dep,
        httpx.Client(base_url=dep.url, timeout=30) as http,
    ):
        assert dep.strict_invocations
        assert json.loads((dep.folder / "state.json").read_text())["strict_invocations"] is True
        answers = [http.post("/invocations", json=p) for p in _BAD_INVOCATIONS]
        codes = [(a.status_code, a.json()["error_code"]) for a in answers]
        assert codes == [
            (400, "BAD_PAYLOAD"),
            (422, "UNEXPECTED_COLUMN"),
            (400, "BAD_PAYLOAD"),
            (400, "BAD_PAYLOAD"),
            (422, "UNEXPECTED_COLUMN"),
        ]
        assert all(a.json()["request_id"] == a.headers["x-request-id"] for a in answers)
        good = http.post("/invocations", json={"dataframe_records": [_GOOD_ROW]})
        assert good.status_code == 200 and len(good.json()["predictions"]) == 1


def test_health_version_metrics_docs(server: Deployment, http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    version = http.get("/info").json()
    assert (version["model_name"], version["model_version"]) == ("iris-rf", "1")
    assert version["run_id"] == server.primary.run_id
    assert version["traffic"] == {"primary": 100.0}
    # /version answers as `mlflow models serve` does: the MLflow version string
    assert http.get("/version").text == importlib.metadata.version("mlflow")
    http.post("/predict", json=_GOOD_ROW)
    http.post("/predict", json=_GOOD)
    metrics = http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    text = metrics.text
    labels = 'deployment="iris",endpoint="predict",model_name="iris-rf",model_version="1"'
    assert f'jupyter_mlops_requests_total{{{labels},role="primary",status="200"}}' in text
    assert f'jupyter_mlops_request_errors_total{{{labels},role="primary",status="422"}}' in text
    assert "jupyter_mlops_request_latency_seconds_bucket{" in text
    assert "jupyter_mlops_batch_rows_bucket{" in text
    assert "x-request-id" in http.get("/metrics").headers
    openapi = http.get("/openapi.json").json()
    paths = {"/predict", "/invocations", "/health", "/info", "/version", "/metrics"}
    assert paths <= set(openapi["paths"])
    assert http.get("/docs").status_code == 200


def test_prediction_log_reader(server: Deployment, http: httpx.Client, config: Config) -> None:
    before = time.time()
    answered = []
    for i in range(5):
        row = {**_GOOD_ROW, "sepal length (cm)": 4.0 + i}
        answered.append(http.post("/predict", json=[row, row]).json()["request_id"])
    log = read_predictions("iris", since=before, config=config)
    mine = log[log.request_id.isin(answered)]
    assert len(mine) == 10  # two rows per request, one line each
    assert set(mine.row) == {0, 1}
    assert set(mine.model_version) == {"1"}
    assert set(mine.run_id) == {server.primary.run_id}
    assert sorted(mine["sepal length (cm)"].unique()) == [4.0, 5.0, 6.0, 7.0, 8.0]
    assert mine.prediction.notna().all()
    assert str(mine.timestamp.dt.tz) == "UTC"
    latest = read_predictions("iris", limit=2, config=config)
    assert list(latest.request_id.unique()) == answered[-2:]
    assert read_predictions("iris", since=time.time() + 60, config=config).empty


# -- routing: canary, promote, rollback ---------------------------------------------------


def test_canary_split_within_binomial_bounds(
    server: Deployment, config: Config, http: httpx.Client
) -> None:
    dep = canary("iris", "iris-rf@challenger", 10, config=config)
    try:
        assert dep.traffic == {"iris-rf v1": 90.0, "iris-rf v2": 10.0}
        assert http.get("/info").json()["traffic"] == {"primary": 90.0, "canary": 10.0}
        n = 2000
        responses = fire(f"{server.url}/predict", [_GOOD_ROW] * n, concurrency=32)
        assert all(r.status_code == 200 for r in responses)
        versions = Counter(r.json()["model"]["version"] for r in responses)
        lo, hi = binomial_bounds(n, 0.10)
        assert lo <= versions["2"] <= hi, (versions, lo, hi)
        assert versions["1"] + versions["2"] == n
        assert {r.headers["x-model-version"] for r in responses} == {"1", "2"}

        # Sticky: a key always reaches the same side; keys split like requests do.
        keys = [f"user-{i}" for i in range(1000)]
        keyed = fire(
            f"{server.url}/predict",
            [_GOOD_ROW] * len(keys),
            concurrency=32,
            headers=[{"X-Request-Key": k} for k in keys],
        )
        side = {k: r.json()["model"]["version"] for k, r in zip(keys, keyed, strict=True)}
        key_lo, key_hi = binomial_bounds(len(keys), 0.10)
        assert key_lo <= sum(v == "2" for v in side.values()) <= key_hi
        again = fire(
            f"{server.url}/predict",
            [_GOOD_ROW] * 200,
            headers=[{"X-Request-Key": k} for k in keys[:200]],
        )
        assert [r.json()["model"]["version"] for r in again] == [side[k] for k in keys[:200]]
        by_query = http.post(f"/predict?request_key={keys[0]}", json=_GOOD_ROW)
        assert by_query.json()["model"]["version"] == side[keys[0]]

        metrics = http.get("/metrics").text
        assert 'model_version="2",role="canary"' in metrics
        assert 'jupyter_mlops_traffic_weight_ratio{deployment="iris"' in metrics
    finally:
        dep = rollback("iris", config=config)  # no earlier primary: drops the canary
    assert dep.canary is None
    assert http.get("/info").json()["traffic"] == {"primary": 100.0}


class _Load:
    """Requests sent continuously from threads until stopped; records every outcome."""

    def __init__(self, url: str, threads: int = 8) -> None:
        self.url = url
        self.outcomes: list[tuple[int, str | None]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(self.url, json=_GOOD_ROW)
                    version = response.json()["model"]["version"] if response.is_success else None
                    outcome = (response.status_code, version)
                except Exception as exc:  # a refused or dropped connection is a failure too
                    outcome = (0, None)
                    self.failures.append(repr(exc))
                with self._lock:
                    self.outcomes.append(outcome)

    def wait_for(self, count: int) -> None:
        target = len(self.outcomes) + count
        while len(self.outcomes) < target:
            time.sleep(0.01)

    def __enter__(self) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def test_promote_and_rollback_under_load_fail_no_request(
    server: Deployment, config: Config, http: httpx.Client
) -> None:
    with _Load(f"{server.url}/predict") as load:
        load.wait_for(100)
        canary("iris", "iris-rf@challenger", 0, config=config)  # blue-green: loaded, idle
        load.wait_for(100)
        dep = promote("iris", config=config)
        assert (dep.primary.version, dep.canary) == ("2", None)
        assert http.post("/predict", json=_GOOD_ROW).json()["model"]["version"] == "2"
        load.wait_for(200)
        dep = rollback("iris", config=config)
        assert dep.primary.version == "1"
        assert http.post("/predict", json=_GOOD_ROW).json()["model"]["version"] == "1"
        load.wait_for(200)
    statuses = Counter(status for status, _ in load.outcomes)
    assert statuses == {200: len(load.outcomes)}, (statuses, load.failures[:3])
    versions = [v for _, v in load.outcomes]
    assert "2" in versions
    assert versions[-50:].count("1") == 50  # after the rollback: v1 again
    state = get_deployment("iris", config=config)
    assert state.history == []
    assert [e["action"] for e in state.events][-3:] == ["canary", "promote", "rollback"]


def test_failed_canary_load_keeps_serving(
    server: Deployment, config: Config, http: httpx.Client, tmp_path: Path
) -> None:
    source = get_deployment("iris", config=config).primary.source
    assert source is not None
    broken = tmp_path / "broken-model"
    shutil.copytree(source, broken)
    (broken / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(ServingError, match="kept its previous models"):
        canary("iris", str(broken), 50, config=config)
    dep = get_deployment("iris", config=config)
    assert dep.canary is None
    assert dep.status == "running"
    assert http.post("/predict", json=_GOOD_ROW).json()["model"]["version"] == "1"


def test_changes_without_canary_are_refused(server: Deployment, config: Config) -> None:
    with pytest.raises(ServingError, match="no canary to promote"):
        promote("iris", config=config)
    with pytest.raises(ServingError, match="nothing to roll back"):
        rollback("iris", config=config)
    with pytest.raises(ServingError, match="between 0 and 100"):
        canary("iris", "iris-rf@challenger", 120, config=config)
    with pytest.raises(ServingError, match="already running"):
        deploy("iris-rf@champion", name="iris", config=config)


def test_taken_port_is_a_clear_error(server: Deployment, config: Config) -> None:
    with pytest.raises(PortInUseError, match=f"Port {server.port} .*deployment 'iris'"):
        deploy("iris-rf@champion", name="other", port=server.port, config=config)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUseError, match=f"Port {port} on 127.0.0.1 .*another process"):
            deploy("iris-rf@champion", name="other", port=port, config=config)


# -- servers of their own -----------------------------------------------------------------


def test_every_answered_request_survives_kill_9(config: Config) -> None:
    with running("iris-rf@champion", config, name="killed") as dep:
        bodies = [{**_GOOD_ROW, "sepal length (cm)": 4.0 + i / 100} for i in range(300)]
        stop_sending = threading.Event()
        late: list[str] = []

        def keep_sending() -> None:  # requests still in flight when the server dies
            with httpx.Client(timeout=5) as client:
                while not stop_sending.is_set():
                    try:
                        response = client.post(f"{dep.url}/predict", json=_GOOD_ROW)
                    except httpx.HTTPError:
                        return
                    if response.status_code == 200:
                        late.append(response.json()["request_id"])

        sender = threading.Thread(target=keep_sending)
        sender.start()
        responses = fire(f"{dep.url}/predict", bodies, concurrency=32)
        os.kill(dep.pid, signal.SIGKILL)
        stop_sending.set()
        sender.join()
        answered = {r.json()["request_id"] for r in responses if r.status_code == 200}
        assert len(answered) == len(bodies)
        assert late  # some requests raced the kill

        killed = get_deployment("killed", config=config)
        assert killed.status == "dead"
        assert {d.name: d.status for d in list_deployments(config)}["killed"] == "dead"

        log = read_predictions("killed", config=config)
        assert answered | set(late) <= set(log.request_id)
        by_id = log.set_index("request_id")
        sent = {r.json()["request_id"]: b for r, b in zip(responses, bodies, strict=True)}
        some = list(sent)[:20]
        assert [by_id.loc[i, "sepal length (cm)"] for i in some] == [
            sent[i]["sepal length (cm)"] for i in some
        ]
        stopped = stop("killed", config=config)
        assert stopped.status == "stopped"
        assert {d.name: d.status for d in list_deployments(config)}["killed"] == "stopped"
        assert not list((stopped.folder / "journal").glob("*.jsonl"))  # all in the store


def test_token_two_workers_and_fsync_log(config: Config) -> None:
    token = "s3cret-token"
    with running(
        "iris-rf@champion", config, name="secure", token=token, workers=2, durability="fsync"
    ) as dep:
        assert dep.token_required
        assert "Authorization: Bearer $MLOPS_TOKEN" in dep.curl_example()
        assert token not in (dep.folder / "state.json").read_text()
        good = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=dep.url, timeout=30) as client:
            assert client.get("/health").status_code == 200
            for path in ("/info", "/version", "/metrics", "/docs", "/openapi.json"):
                assert client.get(path).status_code == 401, path
            refused = client.post("/predict", json=_GOOD_ROW)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"] == "Bearer"
            assert "x-request-id" in refused.headers
            wrong = client.post("/predict", json=_GOOD_ROW, headers={"Authorization": "Bearer x"})
            assert wrong.status_code == 403
            assert client.post("/invocations", json={"inputs": [_GOOD_ROW]}).status_code == 401
            assert client.post("/predict", json=_GOOD_ROW, headers=good).status_code == 200
            metrics = client.get("/metrics", headers=good)
            assert metrics.status_code == 200
            refusals = 'jupyter_mlops_unauthorized_requests_total{deployment="secure",status="401"}'
            assert refusals in metrics.text  # summed over both workers

            # Both workers switch before promote() returns.
            canary("secure", "iris-rf@challenger", 0, config=config)
            promoted = promote("secure", config=config)
            acks = read_acks(dep.folder)
            assert len({a["pid"] for a in acks}) == 2
            assert {a["generation"] for a in acks} == {promoted.generation}
            after = fire(
                f"{dep.url}/predict", [_GOOD_ROW] * 200, headers=[good] * 200, concurrency=16
            )
            assert {r.json()["model"]["version"] for r in after} == {"2"}
        stopped = stop("secure", config=config)
        # fsync mode answers after the group commit: every answer is in the log.
        logged = set(read_predictions("secure", config=config).request_id)
        assert {r.json()["request_id"] for r in after} <= logged
        assert stopped.status == "stopped"
        with pytest.raises(ProcessLookupError):
            os.killpg(dep.pid, 0)
        assert get_deployment("secure", config=config).status == "stopped"


def test_container_entry_point_without_ipython(config: Config, tmp_path: Path) -> None:
    """``python -m jupyter_mlops.serving --model FOLDER``, as a container runs it, in a
    process where importing IPython or ipykernel fails."""
    source = resolve_target("iris-rf@champion", config).source
    assert source is not None
    blocked = tmp_path / "blocked"
    for package in ("IPython", "ipykernel"):
        (blocked / package).mkdir(parents=True)
        (blocked / package / "__init__.py").write_text(
            f"raise ImportError('the server must not import {package}')\n"
        )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=str(blocked), SERVE_TOKEN="container-token")
    workdir = tmp_path / "container"
    workdir.mkdir()
    cmd = [
        sys.executable, "-m", "jupyter_mlops.serving", "--model", source,
        "--deployment-dir", str(workdir / "deployment"), "--port", str(port),
        "--token-env", "SERVE_TOKEN", "--name", "iris-container",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        auth = {"Authorization": "Bearer container-token"}
        response = httpx.post(f"{url}/invocations", json={"inputs": [_GOOD_ROW]}, headers=auth)
        assert response.status_code == 200
        assert httpx.post(f"{url}/invocations", json={"inputs": [_GOOD_ROW]}).status_code == 401
        request_id = response.headers["x-request-id"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM)  # uvicorn re-raises the signal it handled
    # A graceful stop moved the journal into the store (a crash would have left it).
    assert not list((workdir / "deployment" / "journal").glob("*.jsonl"))
    store = SQLitePredictionStore(workdir / ".mlops" / "predictions.db")
    assert request_id in {r["request_id"] for r in store.read("iris-container")}


# -- batch scoring ------------------------------------------------------------------------


@pytest.mark.parametrize(("src", "dst"), [("csv", "parquet"), ("parquet", "csv")])
def test_batch_predict_with_lineage(
    config: Config, iris_frame: pd.DataFrame, expected: dict, tmp_path: Path, src: str, dst: str
) -> None:
    source = tmp_path / f"new.{src}"
    getattr(iris_frame, f"to_{src}")(source, index=False)  # the target column passes through
    result = batch_predict(
        "iris-rf@champion", source, tmp_path / f"preds.{dst}", chunk_rows=64, config=config
    )
    assert result.rows == len(iris_frame)
    out = (
        pd.read_parquet(result.output_path) if dst == "parquet" else pd.read_csv(result.output_path)
    )
    assert out.prediction.tolist() == expected["1"]
    assert np.allclose(out[FEATURES].to_numpy(), iris_frame[FEATURES].to_numpy())
    assert out.target.tolist() == iris_frame.target.tolist()
    assert set(LINEAGE_COLUMNS) <= set(out.columns)
    md5 = hashlib.md5(source.read_bytes()).hexdigest()
    first = out.iloc[0]
    assert (first.model_name, str(first.model_version)) == ("iris-rf", "1")
    assert first.run_id == _run_id_of_v1(config)
    assert first.input_md5 == md5 == result.input_md5
    assert first.input_file == str(source.resolve())
    assert out.scored_at.nunique() == 1
    assert str(result).startswith(f"Scored {len(iris_frame)} rows")


def _run_id_of_v1(config: Config) -> str:
    from jupyter_mlops.client import client

    return str(client(config).get_model_version("iris-rf", "1").run_id)


def test_batch_predict_names_a_missing_column(
    config: Config, iris_frame: pd.DataFrame, tmp_path: Path
) -> None:
    source = tmp_path / "partial.csv"
    iris_frame.drop(columns="petal width (cm)").to_csv(source, index=False)
    with pytest.raises(InputError, match="'petal width \\(cm\\)'"):
        batch_predict("iris-rf@champion", source, tmp_path / "out.csv", config=config)
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ServingError, match=r"\.csv or \.parquet"):
        batch_predict("iris-rf@champion", source, tmp_path / "out.xlsx", config=config)
