"""Issue 15 items 1 and 4 in a real kernel: a notebook executed by papermill.

The kernel path (``jupyter-mlops execute``, pipelines) runs ``%%track`` through the same
magic as a notebook: only this execution's values are recorded, a loop's metric is logged
per step, and the live chart's last state stays in the saved notebook as a static SVG.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import load_config
from jupyter_mlops.pipelines.execute import execute_notebook

from .test_kernel import _notebook

TRAIN = """\
%%track -e kernel-steps
import time
clf = DummyClassifier(strategy="most_frequent").fit(X, y)
if clf.score(X, y) > 0.99:
    test_auc = clf.score(X, y)
n_estimators = 120
for epoch in range(12):
    loss = 1.0 / (epoch + 1)
    time.sleep(0.1)
"""


@pytest.mark.slow
def test_kernel_records_this_execution_and_keeps_the_step_chart(project: Path) -> None:
    nb = _notebook(
        project / "steps.ipynb",
        "%load_ext jupyter_mlops",
        "import numpy as np\nfrom sklearn.dummy import DummyClassifier\n"
        "X = np.arange(40.0).reshape(20, 2)\ny = np.array([0, 1] * 10)\n"
        "test_auc = 0.996\nn_estimators = 300",
        TRAIN,
    )
    out = execute_notebook(nb, project / "steps.out.ipynb")
    client = MlflowClient(load_config().tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name("kernel-steps").experiment_id])
    assert run.info.status == "FINISHED"
    assert "test_auc" not in run.data.metrics
    assert run.data.params["n_estimators"] == "120"
    history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss"))
    assert history == [(i, 1.0 / (i + 1)) for i in range(12)]

    outputs = nbformat.read(out, as_version=4).cells[2].outputs
    charts = [o for o in outputs if "mlops-step-chart" in o.get("data", {}).get("text/html", "")]
    assert len(charts) == 1  # updated in place, not appended
    final = charts[0]["data"]
    assert "loss = 0.08333" in final["text/html"] and "12 steps" in final["text/html"]
    assert "<polyline" in final["text/html"]
    assert "loss=0.08333 (step 11)" in final["text/plain"]
