"""Fixtures of the server-extension tests: jupyter_server's pytest plugin, scoped to this folder.

The plugin's fixtures (``jp_fetch``, ``jp_serverapp``, an autouse event loop) are imported
here rather than listed in the top-level ``pytest_plugins``, so they apply to these tests
only. ``jp_root_dir`` is a project whose MLflow store is filled once per session with real
runs (``jupyter_mlops.track``) and registered versions (``jupyter_mlops.register``).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pytest_jupyter", reason="server tests need pytest-jupyter[server]")
from pytest_jupyter.jupyter_server import *  # noqa: F403

XSS_NAME = "<img src=x onerror=alert(1)>"
SWEEP_RUNS = 7


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last (a stable sort; nothing else moves).

    Their session-wide sync Playwright keeps an asyncio loop running in the main thread
    until the session ends, after which the jp_fetch tests here cannot run their own loop
    ("This event loop is already running"). Better placed in tests/browser/conftest.py;
    harmless twice.
    """
    browser = Path(__file__).resolve().parent.parent / "browser"
    items.sort(key=lambda item: browser in Path(str(item.fspath)).resolve().parents)


@pytest.fixture
def jp_server_config() -> dict[str, Any]:  # replaces the plugin's
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_mlops": True, "jupyter_server_terminals": False},
            # Every endpoint must work with authentication required.
            "allow_unauthenticated_access": False,
        }
    }


def _make_project(root: Path) -> dict[str, Any]:
    """Runs, versions and a pipeline record, made through the public API."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.run import TAG_DATA

    (root / ".mlops").mkdir(parents=True)
    (root / "nb").mkdir()
    (root / "nb" / "train.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    config = load_config(root)
    X, y = load_iris(return_X_y=True, as_frame=True)
    ids: dict[str, Any] = {"sweep": []}
    for label, acc, c in (("baseline", 0.81, 0.01), ("better", 0.95, 1.0)):
        with jupyter_mlops.track(
            "iris", name=label, notebook="nb/train.ipynb", config=config
        ) as run:
            model = LogisticRegression(C=c, max_iter=200).fit(X, y)
            run.log_params({"C": c})
            run.log_metrics({"accuracy": acc, "f1": acc - 0.01})
            run.log_model(model, "model", X=X)
            run.log_source(f"model = LogisticRegression(C={c}).fit(X, y)\nacc = {acc}\n")
            run.set_tags(
                {
                    TAG_DATA: json.dumps(
                        [
                            {
                                "path": "data/iris.csv",
                                "md5": "0123456789abcdef" * 2,
                                "size": 4551,
                                "nfiles": 1,
                            }
                        ]
                    )
                }
            )
        ids[label] = run.run_id
    with jupyter_mlops.track(
        "iris", name=XSS_NAME, config=config, tags={"note": "<script>alert(2)</script>"}
    ) as run:
        run.log_params({"html": "<b>bold</b>"})
        run.log_metrics({"accuracy": 0.5})
    ids["xss"] = run.run_id
    for i in range(SWEEP_RUNS):
        with jupyter_mlops.track("sweep", name=f"sweep-{i}", config=config) as run:
            run.log_metrics({"loss": 1.0 / (i + 1)})
        ids["sweep"].append(run.run_id)
    jupyter_mlops.register(ids["baseline"], name="iris-clf", aliases=["champion"], config=config)
    jupyter_mlops.register(ids["better"], name="iris-clf", aliases=["challenger"], config=config)
    from jupyter_mlops.pipelines.records import PipelineRun, StepRun

    folder = root / ".mlops" / "pipelines" / "20250101-retrain"
    (root / "runs").mkdir()
    (root / "runs" / "prepare.ipynb").write_text("{}")
    PipelineRun(
        run_id="20250101-retrain",
        pipeline="retrain",
        spec="pipeline.yaml",
        folder=str(folder),
        status="FAILED",
        started=1735689600.0,
        ended=1735689660.0,
        steps={
            "prepare": StepRun(
                "prepare",
                "prepare.ipynb",
                "local",
                status="SUCCEEDED",
                executed_notebook="runs/prepare.ipynb",
            ),
            "train": StepRun(
                "train",
                "train.ipynb",
                "local",
                status="FAILED",
                executed_notebook=".mlops/pipelines/20250101-retrain/train.ipynb",
                error="<b>boom</b>",
            ),
            "report": StepRun(
                "report", "report.ipynb", "local", status="SKIPPED", executed_notebook="/etc/passwd"
            ),
        },
    ).save()
    while mlflow.active_run() is not None:
        mlflow.end_run()
    return ids


@pytest.fixture(scope="session")
def _sidebar_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("sidebar") / "proj"
    with pytest.MonkeyPatch.context() as mp:
        for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
            mp.delenv(var, raising=False)
        ids = _make_project(root)
    yield root, ids


@pytest.fixture
def sidebar_project(
    _sidebar_store: tuple[Path, dict], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict]:
    """A copy of the session's filled project, so tests may change it freely."""
    source, ids = _sidebar_store
    root = tmp_path / "proj"
    shutil.copytree(source, root)
    # The store's artifact locations point into the session's project: fine for reading.
    for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(root)
    return root, ids


@pytest.fixture
def jp_root_dir(sidebar_project: tuple[Path, dict]) -> Path:
    """Jupyter serves the project folder itself."""
    return sidebar_project[0]


@pytest.fixture
def warm_views(jp_serverapp: Any) -> Any:
    """The server's views once their background first read of the store is done."""
    from jupyter_mlops.server.handlers import VIEWS_KEY

    views = jp_serverapp.web_app.settings[VIEWS_KEY]
    assert views.warmed.wait(60)
    return views
