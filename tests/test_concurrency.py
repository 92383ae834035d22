"""Two processes tracking into one embedded store at once lose and corrupt nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import load_config

RUNS_PER_PROCESS = 200

WORKER = """
import sys
import jupyter_mlops

worker, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with jupyter_mlops.track(experiment="race", name=f"{worker}-{i}") as run:
        run.log_params({"worker": worker, "i": i})
        run.log_metrics({"score": i / n})
"""


@pytest.mark.slow
def test_two_processes_track_at_once(project: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, worker, str(RUNS_PER_PROCESS)],
            cwd=project,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for worker in ("a", "b")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]

    client = MlflowClient(load_config().tracking_uri)
    exp = client.get_experiment_by_name("race")
    runs = client.search_runs([exp.experiment_id], max_results=10_000)
    assert len(runs) == 2 * RUNS_PER_PROCESS
    seen = set()
    for run in runs:
        worker, i = run.info.run_name.split("-")
        assert run.info.status == "FINISHED"
        assert run.data.params == {"worker": worker, "i": i}
        assert run.data.metrics["score"] == int(i) / RUNS_PER_PROCESS
        seen.add((worker, int(i)))
    assert len(seen) == 2 * RUNS_PER_PROCESS
    assert len(client.search_experiments(filter_string="name = 'race'")) == 1
