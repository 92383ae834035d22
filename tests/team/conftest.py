"""Team mode against real engines: one PostgreSQL cluster and one ``mlflow server`` on it
(started with ``jupyter-mlops server start``'s API) for the whole session."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port
from tests.team.pg import Cluster, new_cluster


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    cluster = new_cluster()
    yield cluster
    cluster.destroy()


def start_tracking_server(cluster: Cluster, folder: Path, database: str) -> tuple[str, object]:
    """``mlflow server`` on a new database of ``cluster`` with artifacts under ``folder``."""
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.server import start_server

    (folder / ".mlops").mkdir(parents=True, exist_ok=True)
    config = load_config(folder)
    info = start_server(
        backend_store_uri=cluster.create_database(database),
        artifacts_destination=str(folder / "artifacts"),
        port=free_port(),
        workers=1,
        config=config,
    )
    return info.url, config


@pytest.fixture(scope="session")
def tracking_server(postgres: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The team's shared tracking server (PostgreSQL backend, proxied artifacts)."""
    from jupyter_mlops.tracking.server import servers, stop_server

    folder = tmp_path_factory.mktemp("mlflow-server")
    url, config = start_tracking_server(postgres, folder, "mlflow")
    yield url
    for info, _ in servers(config):  # type: ignore[arg-type]
        stop_server(int(info.url.rsplit(":", 1)[1]), config)  # type: ignore[arg-type]


@pytest.fixture
def team_project(project: Path, tracking_server: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project whose kernels track to the shared server, in an experiment of its own."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_server)
    (project / "pyproject.toml").write_text(
        f'[tool.jupyter-mlops]\nexperiment = "team-{uuid.uuid4().hex[:8]}"\n'
    )
    return project


@pytest.fixture
def model_name() -> str:
    """A registered-model name no other test uses (the server is shared)."""
    return f"iris-{uuid.uuid4().hex[:8]}"
