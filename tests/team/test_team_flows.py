"""Every face, unchanged, against a shared tracking server on PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import mlflow
import pandas as pd
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops import pipelines, registry, serving
from jupyter_mlops.server.views import SidebarViews as SidebarBackend
from jupyter_mlops.tracking import restore_data
from tests.conftest import IRIS_CELL, git
from tests.test_pipelines import notebook, write_pipeline


def test_track_compare_register_deploy_and_trace_on_the_server(
    ip, team_project: Path, iris_csv: Path, tracking_server: str, model_name: str, capsys
) -> None:
    git(team_project, "init", "-q")
    for n in (10, 100):
        cell = IRIS_CELL.replace("n_estimators = 100", f"n_estimators = {n}")
        assert ip.run_cell(f"%%track --data data/iris.csv --name rf{n}\n" + cell).success
    assert "View run" not in capsys.readouterr().out  # the card says where the run is

    shown = str(ip.run_cell("%mlops").result)
    assert tracking_server in shown and "reachable (HTTP 200" in shown

    # Comparison reads the server through MLflow's client (no SQLite file to read).
    frame = jupyter_mlops.runs(where="params.n_estimators >= 100")
    assert frame["run_name"].tolist() == ["rf100"]
    assert ip.run_cell("%compare --metric acc").success
    page = SidebarBackend(team_project).runs(limit=10)  # what the sidebar shows
    assert sorted(r["run_name"] for r in page["runs"]) == ["rf10", "rf100"]

    reg = jupyter_mlops.register(name=model_name, aliases=["champion"], gate="acc >= 0.9")
    client = MlflowClient(tracking_server)  # plain MLflow sees it
    assert str(client.get_model_version_by_alias(model_name, "champion").version) == reg.version
    art = client.get_run(reg.run_id).info.artifact_uri
    assert art.startswith("mlflow-artifacts:")  # proxied: clients need no artifact access

    dep = serving.deploy(f"{model_name}@champion", name=f"{model_name}-api")
    try:
        rows = pd.read_csv(iris_csv).drop(columns="target").head(3)
        reply = httpx.post(f"{dep.url}/predict", json=rows.to_dict("records"))
        assert reply.status_code == 200, reply.text
        body = reply.json()
        assert body["model"]["version"] == reg.version and len(body["predictions"]) == 3
    finally:
        serving.stop(dep.name)

    lineage = registry.lineage(f"{model_name}@champion")
    assert lineage.run_id == reg.run_id
    restored = restore_data(reg.run_id, "data/iris.csv", team_project / "restored.csv")
    assert restored.read_bytes() == iris_csv.read_bytes()


def test_pipeline_steps_track_to_the_server(team_project: Path, tracking_server: str) -> None:
    (team_project / "data").mkdir()
    (team_project / "data" / "points.txt").write_text("1\n2\n3\n4\n")
    notebook(
        team_project / "score.ipynb",
        "%load_ext jupyter_mlops",
        "%%track\nvalues = [float(x) * scale for x in open(data).read().split()]\n"
        "mean_score = sum(values) / len(values)",
        params="data = 'data/points.txt'\nscale = 1.0",
    )
    spec = write_pipeline(
        team_project,
        {
            "name": "scores",
            "params": {"data": "data/points.txt", "scale": 1.0},
            "steps": {
                "score": {
                    "notebook": "score.ipynb",
                    "inputs": ["${data}"],
                }
            },
        },
    )
    sweep = pipelines.sweep(spec, {"scale": [1.0, 3.0]})  # two pipeline runs
    runs = sweep.runs
    assert sweep.ok, runs
    client = MlflowClient(tracking_server)
    means = sorted(
        client.get_run(r.steps["score"].mlflow_run_id).data.metrics["mean_score"] for r in runs
    )
    assert means == [2.5, 7.5]
    for r in runs:
        parent = client.get_run(r.mlflow_run_id)
        assert json.loads(parent.data.tags["mlops.data"])[0]["path"] == "data/points.txt"


WORKER = textwrap.dedent(
    """
    import os, sys
    os.environ["MLFLOW_TRACKING_URI"] = sys.argv[1]
    os.chdir(sys.argv[2])
    import jupyter_mlops
    worker, n = int(sys.argv[3]), int(sys.argv[4])
    for i in range(n):
        with jupyter_mlops.track(name=f"w{worker}-{i}") as run:
            run.log_params({"worker": worker, "i": i})
            run.log_metrics({"score": worker * 1000 + i})
    """
)


def test_four_kernels_tracking_250_runs_each_lose_nothing(
    team_project: Path, tracking_server: str
) -> None:
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, tracking_server, str(team_project), str(w), "250"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(4)
    ]
    for p in procs:
        _, err = p.communicate(timeout=900)
        assert p.returncode == 0, err[-3000:]
    experiment = jupyter_mlops.config.load_config().experiment
    client = MlflowClient(tracking_server)
    exp = client.get_experiment_by_name(experiment)
    found = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], max_results=1000, page_token=token)
        found += page
        token = page.token
        if not token:
            break
    assert len(found) == 1000
    seen = set()
    for r in found:
        w, i = int(r.data.params["worker"]), int(r.data.params["i"])
        assert r.info.run_name == f"w{w}-{i}" and r.info.status == "FINISHED"
        assert r.data.metrics["score"] == w * 1000 + i
        seen.add((w, i))
    assert len(seen) == 1000
    # The same runs read back through our fast reader and plain MLflow agree.
    frame = jupyter_mlops.runs(experiment)
    assert len(frame) == 1000
    assert mlflow.search_runs([exp.experiment_id], max_results=2000).shape[0] == 1000
