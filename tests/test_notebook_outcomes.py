"""``notebooks/04-outcomes-and-business-metrics.ipynb`` executed top to bottom with papermill
in a real kernel and a fresh git project (as tests/test_notebooks.py runs the others; a file
of its own so the two test workers run it beside them). Afterwards the project's outcome
store, alert record and deployment history must hold what the notebook claims."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from jupyter_mlops.config import load_config
from jupyter_mlops.pipelines.execute import execute_notebook

from .test_notebooks import CELL_TIMEOUT_S, fresh_project, outputs_text, processes_in

pytestmark = pytest.mark.slow

NAME = "04-outcomes-and-business-metrics.ipynb"


def test_outcomes_notebook_runs_top_to_bottom(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sklearn.metrics import accuracy_score

    from jupyter_mlops import monitoring
    from jupyter_mlops.predlog import read_outcomes, read_predictions
    from jupyter_mlops.serving import get_deployment

    root = fresh_project(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    notebook = root / "notebooks" / NAME
    executed = execute_notebook(
        notebook,
        notebook.with_suffix(".out.ipynb"),
        timeout=CELL_TIMEOUT_S,
        env={"DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"), "DVC_NO_ANALYTICS": "1"},
    )
    text = " ".join(outputs_text(executed).split())
    config = load_config(root)

    # 4 phases of 40 requests x 25 rows, every row labelled (half of phase 1 via /feedback)
    logged = read_predictions("convert-prod", config=config)
    joined = read_outcomes("convert-prod", config=config)
    assert len(logged) == 4000 and logged.request_id.nunique() == 160
    assert len(joined) == 4000 and set(joined.model_version) == {"1", "2"}
    assert "order_value" in joined.columns
    # the bad feedback was refused and stored nothing: one outcome per predicted row
    assert not joined.duplicated(["request_id", "row"]).any()
    for code in ("404 UNKNOWN_REQUEST_ID", "409 DUPLICATE_OUTCOME", "422 OUTCOME_TYPE"):
        assert code in text, code
    # the realised accuracy is scikit-learn's on the joined rows
    report = monitoring.performance("convert-prod", last=None, config=config)
    primary = joined[joined.model_version == "1"]
    expected = accuracy_score(primary.outcome.astype(int), primary.prediction.astype(int))
    totals = report.totals.set_index(["model_version", "role"])
    assert totals.loc[("1", "primary"), "accuracy"] == pytest.approx(expected)
    # concept drift: the accuracy and business rules fired to the webhook, latency did not
    fired = monitoring.alert_history("convert-prod", config=config)
    assert {f["rule"] for f in fired} == {"accuracy < 0.7", "revenue_per_1k < 2000"}
    assert all(f["notified"] and f["webhook"]["status"] == 204 for f in fired)
    assert "2 firing, 1 quiet, 0 unknown" in text
    # the weak canary was not promoted, and the history says why
    deployment = get_deployment("convert-prod", config=config)
    assert deployment.status == "stopped" and deployment.primary.version == "1"
    (decision,) = deployment.decisions
    assert decision["action"] == "promotion refused"
    assert "condition false" in decision["decision"]["reason"]

    deadline = time.monotonic() + 15
    while (left := processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"the notebook left processes running in its project: {left}"
