"""A tracked run is readable by MLflow's own server, the backend of its UI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from jupyter_mlops.config import load_config
from tests.helpers import free_port


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read()


@pytest.mark.slow
def test_mlflow_server_serves_tracked_run(ip, iris_csv: Path) -> None:
    from .conftest import IRIS_CELL

    ip.run_cell_magic("track", "-e ui --quiet", IRIS_CELL)
    uri = load_config().tracking_uri
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            uri,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if _get(f"{base}/health") == b"OK":
                    break
            except OSError:
                pass
            assert proc.poll() is None, "mlflow server exited"
            assert time.monotonic() < deadline, "mlflow server did not start"
            time.sleep(0.5)
        exps = json.loads(_get(f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=ui"))
        exp_id = exps["experiment"]["experiment_id"]
        req = urllib.request.Request(
            f"{base}/api/2.0/mlflow/runs/search",
            data=json.dumps({"experiment_ids": [exp_id]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        (run,) = json.loads(urllib.request.urlopen(req, timeout=10).read())["runs"]
        params = {p["key"]: p["value"] for p in run["data"]["params"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert params["n_estimators"] == "100"
        assert metrics["acc"] == pytest.approx(ip.user_ns["acc"])
        run_id = run["info"]["run_id"]
        # The UI shows artifacts through this endpoint.
        code = _get(f"{base}/get-artifact?path=mlops/cell.py&run_uuid={run_id}").decode()
        assert code == IRIS_CELL
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
