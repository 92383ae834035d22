"""The MLflow UI tells the whole story of a tracked, registered model (MLflow 3.17's own
UI, served by ``mlflow server`` over the project's SQLite store, in headless Chromium):

* the run page lists the ``--data`` file under "Datasets" (name and DVC md5) and the
  registered version under "Registered models";
* the logged model's page lists its model versions and is "Logged from" the notebook;
* the registered model's page lists the version, and the alias line for people;
* the version's page names its source run and source model.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
from jupyter_mlops.config import load_config
from tests.helpers import free_port

SERVER_START_TIMEOUT = 120  # s; a fresh mlflow server answers /health in 10-20 s here
# Where the screenshots of the docs go, when asked for ($MLOPS_UI_DOCS_SHOTS).
DOCS_SHOTS = os.environ.get("MLOPS_UI_DOCS_SHOTS")


@contextlib.contextmanager
def mlflow_server(backend: str, cwd: Path) -> Iterator[str]:
    """``mlflow server`` (one worker, no job runner) on 127.0.0.1 over ``backend``;
    stopped by its process group: SIGTERM, then SIGKILL after a timeout."""
    port = free_port()
    log = cwd.parent / "mlflow-server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("mlflow")),
                "server",
                "--backend-store-uri",
                backend,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{url}/health", timeout=5) as resp,
            ):
                if resp.read() == b"OK":
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                pytest.fail(f"mlflow server did not start:\n{tail}")
            time.sleep(0.5)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)


def _text(page: Any, url: str, waits_for: str) -> str:
    """The page's visible text, once ``waits_for`` shows."""
    page.goto(url)
    page.get_by_text(waits_for, exact=False).first.wait_for()
    page.wait_for_timeout(500)  # the rest of the page's requests land
    text: str = page.inner_text("body")
    return text


def _shot(page: Any, shots: Path, name: str) -> None:
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    if DOCS_SHOTS:
        page.screenshot(path=str(Path(DOCS_SHOTS) / f"{name}.png"))


def test_mlflow_ui_shows_datasets_versions_and_sources(
    project: Path, iris_csv: Path, browser: Any, shots: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = project / "train.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    monkeypatch.setenv("JUPYTER_MLOPS_NOTEBOOK", str(notebook))
    X, y = load_iris(return_X_y=True, as_frame=True)
    with jupyter_mlops.track(experiment="ui-links", data=["data/iris.csv"]) as run:
        run.log_metrics({"accuracy": 0.93})
        run.log_model(LogisticRegression(max_iter=300).fit(X, y), "model", X=X)
    jupyter_mlops.register(run.run_id, name="iris-ui", aliases=["champion"])
    md5 = run.data[0].md5
    model_id = run.models["model"].model_id
    assert model_id

    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    page = context.new_page()
    page.set_default_timeout(60_000)
    try:
        with mlflow_server(load_config().tracking_uri, project) as url:
            # The run: the data file among its datasets, and the version it became.
            text = _text(page, f"{url}/#/experiments/{run.experiment_id}/runs/{run.run_id}", md5)
            assert f"iris.csv ({md5})" in text
            about = text[text.index("About this run") :]
            assert re.search(r"Registered models\s+iris-ui\s+v1", about), about
            assert re.search(r"Source\s+train\.ipynb", about), about
            _shot(page, shots, "mlflow-ui-run")

            # The logged model: its versions, and the notebook it came from.
            text = _text(
                page, f"{url}/#/experiments/{run.experiment_id}/models/{model_id}", "Model versions"
            )
            assert re.search(r"Model versions\s+iris-ui\s+v1", text), text
            assert re.search(r"Logged from\s+train\.ipynb", text), text
            _shot(page, shots, "mlflow-ui-logged-model")

            # The registered model: its version, and one line per alias.
            text = _text(page, f"{url}/#/models/iris-ui", "Version 1")
            assert re.search(r"mlops\.alias\.champion\s+v1 since .* register by ", text), text
            assert "mlops.history." not in text
            _shot(page, shots, "mlflow-ui-model")

            # The version: its source run and source model.
            text = _text(page, f"{url}/#/models/iris-ui/versions/1", "Source Run")
            run_name = json.dumps(run.run_name)[1:-1]
            assert re.search(rf"Source Run\s*:\s*{re.escape(run_name)}", text), text
            assert re.search(r"Source Model\s*:\s*model", text), text
            _shot(page, shots, "mlflow-ui-version")
    finally:
        context.close()
