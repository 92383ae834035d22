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


@pytest.fixture(scope="session")
def tracking_server(postgres: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The team's shared tracking server (PostgreSQL backend, proxied artifacts)."""
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.server import start_server, stop_server

    folder = tmp_path_factory.mktemp("mlflow-server")
    (folder / ".mlops").mkdir()
    config, port = load_config(folder), free_port()
    info = start_server(
        backend_store_uri=postgres.create_database("mlflow"),
        artifacts_destination=str(folder / "artifacts"),
        port=port,
        config=config,
    )
    yield info.url
    stop_server(port, config)


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
