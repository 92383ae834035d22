"""The tracking server, or the PostgreSQL behind it, going away in the middle of work."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.tracking import buffer
from jupyter_mlops.tracking.server import probe, start_server, stop_server
from tests.conftest import IRIS_CELL
from tests.helpers import free_port
from tests.team.pg import Cluster, new_cluster


def _serve(backend: str, folder: Path, port: int) -> None:
    start_server(
        backend_store_uri=backend,
        artifacts_destination=str(folder / "artifacts"),
        port=port,
        workers=1,
        config=load_config(folder),
    )


@pytest.fixture
def own_server(postgres: Cluster, tmp_path: Path, project: Path, monkeypatch):  # type: ignore[no-untyped-def]
    """A tracking server of this test's own (it gets stopped), on a fresh database."""
    folder = tmp_path / "server"
    (folder / ".mlops").mkdir(parents=True)
    backend = postgres.create_database(f"failure_{free_port()}")
    port = free_port()
    _serve(backend, folder, port)
    url = f"http://127.0.0.1:{port}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    yield backend, folder, port, url
    for info in (folder / ".mlops" / "server").glob("*.json"):
        stop_server(int(info.stem), load_config(folder))


def test_server_down_before_and_during_a_run_loses_nothing(
    ip, own_server, iris_csv: Path, capsys
) -> None:
    backend, folder, port, url = own_server
    assert ip.run_cell("%%track --name first\n" + IRIS_CELL).success
    stop_server(port, load_config(folder))
    assert not probe(url).ok

    # 1. Unreachable from the start: the cell still runs, its run waits in the buffer.
    result = ip.run_cell("%%track --name offline\n" + IRIS_CELL + "offline_acc = acc\n")
    assert result.success, result.error_in_exec
    err = capsys.readouterr().err
    assert url in err and "%mlops retry" in err
    assert ip.user_ns["offline_acc"] > 0.9  # the cell's own work is in the kernel
    [first] = buffer.pending()
    assert first.run_name == "offline" and first.orphan_run_id is None
    assert "Max retries exceeded" in first.reason  # MLflow's own client found it down
    # The next cell asks /health first instead of waiting for MLflow's retries again.
    assert ip.run_cell("%%track --name offline-again\n" + IRIS_CELL).success
    again = buffer.pending()[-1]
    assert again.run_name == "offline-again" and again.reason.startswith("still unreachable")

    # 2. The server dies between the run's start and the end of the cell.
    _serve(backend, folder, port)
    cell = (
        "%%track --name cut\n"
        + IRIS_CELL
        + "from jupyter_mlops.tracking.server import stop_server\n"
        + f"stop_server({port}, load_config({str(folder)!r}))\n"
    )
    ip.user_ns["load_config"] = load_config
    assert ip.run_cell(cell).success
    pending = buffer.pending()
    assert [p.run_name for p in pending] == ["offline", "offline-again", "cut"]
    orphan = pending[2].orphan_run_id
    assert orphan

    # Retrying while the server is still down keeps everything buffered, and says why.
    retried = ip.run_cell("%mlops retry")
    assert not retried.success and url in str(retried.error_in_exec)
    assert len(buffer.pending()) == 3

    # 3. Back up: both runs are logged whole, the half-written one is marked FAILED.
    _serve(backend, folder, port)
    assert ip.run_cell("%mlops retry").success
    assert buffer.pending() == []
    client = MlflowClient(url)
    every = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], max_results=100
    )
    runs = {r.info.run_name: r for r in every if buffer.TAG_SUPERSEDED_BY not in r.data.tags}
    assert sorted(r.info.run_name for r in every) == [
        "cut", "cut", "first", "offline", "offline-again"
    ]  # fmt: skip
    for name in ("offline", "offline-again", "cut"):
        run = runs[name]
        assert run.info.status == "FINISHED"
        assert run.data.params["n_estimators"] == "100"
        assert run.data.metrics["acc"] > 0.9
        assert run.data.tags[buffer.TAG_REPLAYED_FROM]
        model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        assert len(model.predict(ip.user_ns["X_test"])) == len(ip.user_ns["X_test"])
        arts = {a.path for a in client.list_artifacts(run.info.run_id, "mlops")}
        assert {"mlops/cell.py", "mlops/environment.json"} <= arts
    half = client.get_run(orphan)
    assert half.info.status == "FAILED"
    assert half.data.tags[buffer.TAG_SUPERSEDED_BY] == runs["cut"].info.run_id
    assert not [r for r in every if r.info.status == "RUNNING"]


def test_postgres_down_under_the_server(
    ip, project: Path, iris_csv: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    cluster = new_cluster()
    folder = tmp_path / "server"
    (folder / ".mlops").mkdir(parents=True)
    port = free_port()
    try:
        _serve(cluster.create_database("mlflow"), folder, port)
        url = f"http://127.0.0.1:{port}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        assert ip.run_cell("%%track --name before\n" + IRIS_CELL).success
        cluster.stop()
        assert ip.run_cell("%%track --name during\n" + IRIS_CELL).success
        assert "unreachable" in capsys.readouterr().err
        assert [p.run_name for p in buffer.pending()] == ["during"]
        cluster.start()
        assert ip.run_cell("%mlops retry").success
        client = MlflowClient(url)
        exps = [e.experiment_id for e in client.search_experiments()]
        names = {r.info.run_name: r.info.status for r in client.search_runs(exps)}
        assert names == {"before": "FINISHED", "during": "FINISHED"}
    finally:
        stop_server(port, load_config(folder))
        cluster.destroy()
