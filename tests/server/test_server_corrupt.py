"""A bad record never hides the good ones, through the sidebar's REST API (issue 17):
an odd registered model, a damaged alias-history tag and a damaged pipeline run record
are flagged in 200 answers, never a 500 for the whole panel."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.server.test_server_api import get


async def test_odd_model_and_damaged_records_are_flagged(
    jp_fetch: Any, sidebar_project: tuple[Path, dict], warm_views: Any
) -> None:
    from jupyter_mlops.client import client

    root, _ = sidebar_project
    mlflow_client = client(warm_views.config)
    mlflow_client.create_registered_model("my model")  # legal in MLflow, refused here
    mlflow_client.set_registered_model_tag("iris-clf", "mlops.history.0001", '{"unexpected": 1}')
    record = root / ".mlops" / "pipelines" / "20250101-retrain" / "run.json"
    record.write_text(record.read_text()[:200])

    models = {m["name"]: m for m in (await get(jp_fetch, "models"))["data"]}
    assert set(models) == {"iris-clf", "my model"}
    assert "not here" in models["my model"]["problem"]
    assert "mlops.history.0001" in models["iris-clf"]["problem"]
    assert len(models["iris-clf"]["history"]) == 2  # the good events are all there

    pipelines = await get(jp_fetch, "pipelines")
    assert str(record) in pipelines["message"]
    assert [d["path"] for d in pipelines["damaged"]] == [str(record)]
    response = await jp_fetch(
        "jupyter-mlops", "api", "pipelines", "20250101-retrain", raise_error=False
    )
    assert response.code == 400 and "is damaged" in json.loads(response.body)["message"]
