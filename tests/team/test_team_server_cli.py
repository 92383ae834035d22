"""`jupyter-mlops server start|status|stop` and `info` as a team lead would use them."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers import free_port
from tests.team.pg import Cluster


def cli(root: Path, *args: str, uri: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(
        [sys.executable, "-m", "jupyter_mlops.cli", *args],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_server_start_status_stop_and_info(project: Path, postgres: Cluster) -> None:
    postgres.create_database("cli_server")
    backend = f"postgresql://mlops:s3cret@127.0.0.1:{postgres.port}/cli_server"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = cli(project, "server", "start", "--backend-store-uri", backend, "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        assert f"export MLFLOW_TRACKING_URI={url}" in started.stdout
        assert "s3cret" not in started.stdout and "mlops:***@" in started.stdout

        status = cli(project, "server", "status")
        assert url in status.stdout and "reachable (HTTP 200" in status.stdout
        again = cli(project, "server", "start", "--backend-store-uri", backend, "--port", str(port))
        assert again.returncode == 1 and "already runs" in again.stderr

        info = cli(project, "info", uri=url)
        assert f"{url} (MLFLOW_TRACKING_URI)" in info.stdout
        assert "reachable (HTTP 200" in info.stdout
        assert cli(project, "runs", uri=url).returncode == 0
    finally:
        stopped = cli(project, "server", "stop", "--port", str(port))
    assert stopped.returncode == 0, stopped.stderr
    down = cli(project, "info", uri=url)
    assert "UNREACHABLE (cannot connect" in down.stdout
    assert "No tracking server started" in cli(project, "server", "status").stdout


def test_server_start_refuses_an_unreachable_database(project: Path) -> None:
    dead = f"postgresql://mlops@127.0.0.1:{free_port()}/mlflow"
    result = cli(project, "server", "start", "--backend-store-uri", dead, "--port", "5999")
    assert result.returncode == 1
    assert "Cannot reach the backend store" in result.stderr and "database server" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = cli(project, "server", "start", "--port", port)
    assert busy.returncode == 1 and f"Port {port} on 127.0.0.1 is in use" in busy.stderr
    stop = cli(project, "server", "stop", "--port", port)
    assert stop.returncode == 1 and "No server started from this project" in stop.stderr
