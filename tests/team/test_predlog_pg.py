"""The prediction log in PostgreSQL, against a real PostgreSQL server and real uvicorn servers.

Two project folders stand for two hosts: host A holds the MLflow registry, host B reads it,
and both configure ``prediction_log = <one PostgreSQL database>`` in their pyproject. The
outage test stops and restarts a cluster of its own (the session's ``postgres`` cluster is
shared with other tests).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from jupyter_mlops._util.layout import JOURNAL_DIR
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import LogWriter
from jupyter_mlops.predlog.postgres import PostgresPredictionStore
from jupyter_mlops.serving import (
    Deployment,
    ServingError,
    SQLitePredictionStore,
    list_deployments,
    open_prediction_store,
    read_predictions,
)
from tests.helpers import register_iris, running
from tests.team.pg import Cluster, new_cluster
from tests.test_serving import FEATURES, fire

pytestmark = pytest.mark.slow

SECRET = "pw-Zq81-secret"  # the clusters trust local connections: any password is accepted


def _with_password(url: str) -> str:
    return url.replace("://mlops@", f"://mlops:{SECRET}@", 1)


def _record(i: int, deployment: str = "dep", **changes: Any) -> dict[str, Any]:
    record = {
        "request_id": f"{deployment}-{i:05d}",
        "ts": 1_700_000_000.0 + i * 0.25,
        "deployment": deployment,
        "model_name": "m",
        "model_version": "1",
        "run_id": "abc",
        "role": "primary" if i % 4 else "canary",
        "endpoint": "predict",
        "n_rows": 2,
        "latency_ms": 1.5 + i,
        "inputs": {"x": [i, i + 0.5], "kind": ["a", "é"]},
        "outputs": [i % 3, (i + 1) % 3],
    }
    record.update(changes)
    return record


def _table_ids(url: str, deployment: str | None = None) -> list[str]:
    """Request ids in the PostgreSQL table, read with psycopg directly."""
    sql, args = "SELECT request_id FROM predictions", []
    if deployment is not None:
        sql, args = sql + " WHERE deployment = %s", [deployment]
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return [row[0] for row in conn.execute(sql, args).fetchall()]


def _wait_for_ids(url: str, ids: set[str], timeout: float = 30.0) -> set[str]:
    """Poll the table until it holds ``ids``; returns what is missing at the deadline."""
    deadline = time.monotonic() + timeout
    missing = set(ids)
    while time.monotonic() < deadline:
        with contextlib.suppress(psycopg.OperationalError):
            missing = ids - set(_table_ids(url))
            if not missing:
                break
        time.sleep(0.2)
    return missing


def _rows(frame: Any, n: int, offset: int = 0) -> list[dict[str, float]]:
    part = frame[FEATURES].iloc[[(offset + i) % len(frame) for i in range(n)]]
    return json.loads(part.to_json(orient="records"))


# -- the store on its own -----------------------------------------------------------------


def test_round_trip_equals_sqlite(postgres: Cluster, tmp_path: Path) -> None:
    url = postgres.create_database(f"log_{uuid.uuid4().hex[:8]}")
    pg = open_prediction_store(url)
    assert isinstance(pg, PostgresPredictionStore)
    sqlite = SQLitePredictionStore(tmp_path / "p.db")
    records = [_record(i) for i in range(40)] + [_record(i, "other") for i in range(5)]
    records += [
        # values SQLite's column affinities convert: an int version, an int timestamp
        _record(50, model_version=3, ts=1_700_000_100, n_rows=1, latency_ms=2),
        _record(51, run_id=None, role=None, latency_ms=None, outputs=None),
        _record(52, inputs={"text": ["tab\there", 'quote " \\ ✓']}, outputs=[{"a": 1.5}]),
        _record(53, inputs='{"already": ["json text"]}', outputs="[1]"),
    ]
    for store in (pg, sqlite):
        store.write(records[:30])
        store.write(records[20:])  # overlapping: ids already stored are ignored
        store.write(records[::-1])
    queries: list[dict[str, Any]] = [
        {},
        {"since": 1_700_000_002.0},
        {"until": 1_700_000_005.0},
        {"since": 1_700_000_002.0, "until": 1_700_000_005.0},
        {"limit": 3},
        {"limit": 0},
        {"limit": 1000},
        {"since": 1_700_000_001.0, "until": 1_700_000_009.0, "limit": 4},
    ]
    for query in queries:
        expected = sqlite.read("dep", **query)
        assert pg.read("dep", **query) == expected, query
    assert len(pg.read("dep")) == 44
    assert pg.read("other") == sqlite.read("other")
    assert len(pg.read("other")) == 5
    assert pg.read("nobody") == []
    pg.close()
    # Closed, it connects again; the latest two by time (record 50 is the newest).
    assert [r["request_id"] for r in pg.read("dep", limit=2)] == ["dep-00053", "dep-00050"]
    pg.close()


def test_stores_created_together_share_one_table(postgres: Cluster) -> None:
    """Servers starting at once on several hosts: each finds the table missing."""
    url = postgres.create_database(f"race_{uuid.uuid4().hex[:8]}")
    n = 12
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    stores: list[PostgresPredictionStore] = []

    def start(k: int) -> None:
        try:
            barrier.wait()
            store = PostgresPredictionStore(url)
            stores.append(store)
            store.write([_record(i) for i in range(k * 10, k * 10 + 20)])  # overlapping
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(k,)) for k in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert not errors, errors
    assert sorted(_table_ids(url)) == [f"dep-{i:05d}" for i in range((n + 1) * 10)]


def test_errors_hide_the_password_and_name_the_extra(postgres: Cluster) -> None:
    url = _with_password(postgres.url(f"missing_{uuid.uuid4().hex[:8]}"))
    with pytest.raises(ServingError) as caught:
        open_prediction_store(url)
    message = str(caught.value)
    assert "does not exist" in message
    assert SECRET not in message
    assert f"mlops:***@127.0.0.1:{postgres.port}" in message
    assert SECRET not in repr(PostgresPredictionStore(url, connect=False))
    # Without psycopg the server still imports; opening the store says what to install.
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "from jupyter_mlops.serving import open_prediction_store\n"
        "try:\n"
        f"    open_prediction_store({url!r})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.startswith("ServingError")
    assert "pip install 'jupyter-mlops[team]'" in out
    assert SECRET not in out


# -- deployments on two hosts -------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_log(postgres: Cluster) -> str:
    """The team's prediction-log database (URL with a password, to check redaction)."""
    return _with_password(postgres.create_database(f"predlog_{uuid.uuid4().hex[:8]}"))


@pytest.fixture(scope="module")
def hosts(
    tmp_path_factory: pytest.TempPathFactory, shared_log: str
) -> Iterator[tuple[Config, Config]]:
    """Two projects logging to ``shared_log`` by their pyproject: A holds the registry
    (iris-rf v1, alias champion), B uses A's registry."""
    base = tmp_path_factory.mktemp("hosts")
    a, b = base / "host-a", base / "host-b"
    for root in (a, b):
        (root / ".mlops").mkdir(parents=True)
    (a / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\nprediction_log = "{shared_log}"\n')
    (b / "pyproject.toml").write_text(
        "[tool.jupyter-mlops]\n"
        f'tracking_uri = "sqlite:///{a / ".mlops" / "mlflow.db"}"\n'
        f'prediction_log = "{shared_log}"\n'
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(a)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("JUPYTER_MLOPS_PREDICTION_LOG", raising=False)
        config_a, config_b = load_config(a), load_config(b)
        assert config_a.prediction_log == config_b.prediction_log == shared_log
        assert register_iris(config_a, 30, 0, "champion") == "1"
        yield config_a, config_b


@pytest.fixture(scope="module")
def servers(hosts: tuple[Config, Config]) -> Iterator[tuple[Deployment, Deployment]]:
    """Deployment ``iris`` on both hosts (one server process each), default options."""
    config_a, config_b = hosts
    with (
        running("iris-rf@champion", config_a, name="iris") as on_a,
        running("iris-rf@champion", config_b, name="iris") as on_b,
    ):
        yield on_a, on_b


@pytest.fixture(scope="module")
def iris() -> Any:
    from sklearn.datasets import load_iris

    return load_iris(as_frame=True).frame


def test_deployment_logs_to_postgres_by_config(
    hosts: tuple[Config, Config], servers: tuple[Deployment, Deployment], shared_log: str,
    iris: Any,
) -> None:  # fmt: skip
    config_a, _ = hosts
    on_a, _ = servers
    state = json.loads((on_a.folder / "state.json").read_text())
    assert state["prediction_log"] == shared_log
    with httpx.Client(base_url=on_a.url, timeout=30) as client:
        answers = [client.post("/predict", json=_rows(iris, 2, 7 * i)).json() for i in range(10)]
    ids = {a["request_id"] for a in answers}
    assert all(a["model"]["version"] == "1" for a in answers)
    # The server's ingester moves them from its journal into PostgreSQL within seconds.
    assert _wait_for_ids(shared_log, ids) == set()
    assert not (config_a.mlops_dir / "predictions.db").exists()  # nothing went to SQLite

    frame = read_predictions("iris", config=config_a)
    mine = frame[frame.request_id.isin(ids)]
    assert len(mine) == 20  # two rows per request
    assert set(mine.model_version) == {"1"}
    assert set(mine.run_id) == {on_a.primary.run_id}
    assert set(mine.model_name) == {"iris-rf"}
    by_id = {a["request_id"]: a["predictions"] for a in answers}
    for request_id, part in mine.groupby("request_id"):
        assert part.prediction.tolist() == by_id[request_id]
    assert mine[FEATURES[0]].notna().all()

    from jupyter_mlops.monitoring import figures

    numbers = figures("iris", last=None, config=config_a, drift=False)
    assert numbers["requests_v1"] >= 10
    assert numbers["requests"] == frame.request_id.nunique()

    # The password shows nowhere: listings, the server's log.
    listed = list_deployments(config_a)
    assert SECRET not in str(listed) + listed._repr_html_() + json.dumps(
        [d.to_dict() for d in listed], default=str
    )
    assert SECRET not in on_a.log_file.read_text()


def test_two_hosts_write_one_table_concurrently(
    hosts: tuple[Config, Config], servers: tuple[Deployment, Deployment], shared_log: str,
    iris: Any,
) -> None:  # fmt: skip
    config_a, config_b = hosts
    on_a, on_b = servers
    bodies = [_rows(iris, 1 + i % 3, i) for i in range(400)]
    results: dict[str, list[httpx.Response]] = {}

    def load(dep: Deployment) -> None:
        results[dep.url] = fire(f"{dep.url}/predict", bodies, concurrency=16)

    threads = [threading.Thread(target=load, args=(d,)) for d in (on_a, on_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    responses = results[on_a.url] + results[on_b.url]
    assert [r.status_code for r in responses] == [200] * 800
    ids = {r.headers["x-request-id"] for r in responses}
    assert len(ids) == 800
    assert _wait_for_ids(shared_log, ids) == set()
    stored = _table_ids(shared_log, "iris")
    assert len(stored) == len(set(stored))
    # Either host reads what both answered (B's journal included, stored or not).
    for config in (config_a, config_b):
        frame = read_predictions("iris", config=config)
        assert ids <= set(frame.request_id)
        rows = frame[frame.request_id.isin(ids)]
        assert len(rows) == 2 * sum(len(b) for b in bodies)


# -- PostgreSQL down ----------------------------------------------------------------------


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


def test_postgres_outage_loses_nothing(
    hosts: tuple[Config, Config], own_cluster: Cluster, iris: Any
) -> None:
    config_a, _ = hosts
    url = _with_password(own_cluster.create_database("predlog"))
    with running("iris-rf@champion", config_a, name="iris-outage", prediction_log=url) as dep:
        before = fire(f"{dep.url}/predict", [_rows(iris, 1, i) for i in range(50)])
        assert [r.status_code for r in before] == [200] * 50
        ids = {r.headers["x-request-id"] for r in before}
        assert _wait_for_ids(url, ids) == set()

        own_cluster.stop()
        during = fire(f"{dep.url}/predict", [_rows(iris, 2, i) for i in range(300)])
        assert [r.status_code for r in during] == [200] * 300
        down_ids = {r.headers["x-request-id"] for r in during}
        time.sleep(3.0)  # several ingestion rounds fail meanwhile
        assert httpx.get(f"{dep.url}/health", timeout=10).status_code == 200
        journal = "".join(p.read_text() for p in (dep.folder / JOURNAL_DIR).glob("*.jsonl"))
        assert all(request_id in journal for request_id in down_ids)  # waiting there
        log = dep.log_file.read_text()
        assert "cannot be written" in log
        assert SECRET not in log
        assert "mlops:***@" in log

        own_cluster.start()
        assert _wait_for_ids(url, ids | down_ids) == set()
        assert len(_table_ids(url)) == 350
        deadline = time.monotonic() + 10
        while "written again" not in dep.log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "written again" in dep.log_file.read_text()
        frame = read_predictions("iris-outage", config=config_a)
        assert set(frame.request_id) == ids | down_ids
        assert len(frame) == 50 + 600
        assert set(frame.model_version) == {"1"}


def test_server_starting_while_postgres_is_down(tmp_path: Path, own_cluster: Cluster) -> None:
    """The log writer of a server (re)starting during an outage opens the store later."""
    url = own_cluster.create_database("predlog")
    own_cluster.stop()
    writer = LogWriter(tmp_path / "journal", url, interval=0.1)  # must not raise
    records = [_record(i) for i in range(25)]
    for i in range(0, 25, 5):
        writer.append(records[i : i + 5])
    time.sleep(0.5)
    writer.close()  # the store is still down: the records stay in the journal
    assert len(list((tmp_path / "journal").glob("*.jsonl"))) >= 1
    own_cluster.start()
    writer = LogWriter(tmp_path / "journal", url, interval=0.1)  # replays at start
    try:
        assert sorted(_table_ids(url)) == [r["request_id"] for r in records]
        assert len(list((tmp_path / "journal").glob("*.jsonl"))) == 1  # its own, new one
    finally:
        writer.close()
