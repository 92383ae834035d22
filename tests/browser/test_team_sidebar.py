"""The sidebar of a lab whose project tracks to a team's MLflow server on PostgreSQL (set by
``[tool.jupyter-mlops] tracking_uri``): runs, details read through the server's artifact
proxy, models, and a promotion that lost a race to another user."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("playwright", reason="browser tests need Python playwright")
from playwright.sync_api import expect

from tests.helpers import free_port

from .conftest import Lab, start_lab
from .test_sidebar import PANEL, _expand, _open_lab, _open_panel, _run


@pytest.fixture(scope="module")
def team_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Lab, str]]:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import jupyter_mlops
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.server import start_server, stop_server
    from tests.team.pg import new_cluster

    base = tmp_path_factory.mktemp("team-lab")
    cluster = new_cluster()
    server_dir = base / "server"
    (server_dir / ".mlops").mkdir(parents=True)
    port = free_port()
    try:
        info = start_server(
            backend_store_uri=cluster.create_database("mlflow"),
            artifacts_destination=str(server_dir / "artifacts"),
            port=port,
            config=load_config(server_dir),
        )
        root = base / "home" / "project"
        (root / ".mlops").mkdir(parents=True)
        (root / "pyproject.toml").write_text(f'[tool.jupyter-mlops]\ntracking_uri = "{info.url}"\n')
        config = load_config(root)
        assert config.tracking_uri == info.url
        X, y = load_iris(return_X_y=True, as_frame=True)
        for name, c in (("team-first", 0.01), ("team-second", 1.0)):
            with jupyter_mlops.track("team-iris", name=name, config=config) as run:
                run.log_metrics({"accuracy": 0.8 + c / 10})
                run.log_model(LogisticRegression(C=c, max_iter=300).fit(X, y), "model", X=X)
                run.log_source(f"model = LogisticRegression(C={c}).fit(X, y)\n")
            jupyter_mlops.register(run.run_id, name="iris-team", config=config)
        jupyter_mlops.promote("iris-team/1", "champion", config=config)
        with start_lab(root) as lab:
            yield lab, info.url
    finally:
        stop_server(port, load_config(server_dir))
        cluster.destroy()


def test_sidebar_on_a_team_server(page: Any, team_lab: tuple[Lab, str]) -> None:
    from mlflow import MlflowClient

    from jupyter_mlops import registry
    from jupyter_mlops.config import load_config

    lab, url = team_lab
    _open_lab(page, lab)
    _open_panel(page)
    details = _expand(_run(page, "team-second"))
    expect(details).to_contain_text("LogisticRegression(C=1.0)")  # via the artifact proxy
    expect(details).to_contain_text("registered as iris-team v2")

    model = page.locator(f"{PANEL} .jp-mlops-model[data-model='iris-team']")
    model.wait_for(timeout=30_000)
    expect(model.locator(".jp-mlops-alias[data-alias='champion']")).to_contain_text("v1")
    # Another user promotes v2 while this panel still shows v1 ...
    registry.promote("iris-team/2", "champion", config=load_config(lab.root))
    # ... and this user, deciding on what the panel shows, promotes v2 over "v1": refused.
    model.get_by_role("button", name="Promote iris-team v2").click()
    dialog = page.locator(".jp-Dialog")
    dialog.get_by_label("Alias").fill("champion")
    dialog.get_by_role("button", name="Promote").click()
    expect(
        page.locator(".Toastify__toast").filter(has_text="moved from version 1 to 2")
    ).to_be_visible()
    # The panel then shows the real holder; plain MLflow agrees, and nothing else moved.
    expect(model.locator(".jp-mlops-alias[data-alias='champion']")).to_contain_text("v2")
    client = MlflowClient(url)
    assert str(client.get_model_version_by_alias("iris-team", "champion").version) == "2"
    assert [e.version for e in registry.history("iris-team", config=load_config(lab.root))] == [
        "1",
        "2",
    ]
