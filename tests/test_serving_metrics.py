"""The server's Prometheus exposition: traffic as a 0-1 ratio, the served models' identity
(``jupyter_mlops_model_info``) and ``process_*`` metrics, in one process and summed over
several uvicorn workers. Parsed with prometheus_client's own parser, and checked with
``promtool check metrics`` where Prometheus is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from jupyter_mlops.client import client
from jupyter_mlops.config import load_config
from jupyter_mlops.serving import canary, promote
from jupyter_mlops.serving.metrics import Metrics
from jupyter_mlops.serving.state import read_acks
from tests.helpers import register_iris, running


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of the exposition by sample name: ``[(labels, value), ...]``."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def promtool_check(text: str) -> None:
    """``promtool check metrics`` (the exposition linter) when Prometheus is installed."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_traffic_ratio_model_info_and_process_metrics() -> None:
    metrics = Metrics("iris")
    metrics.set_traffic(
        [(("iris-rf", "1"), "primary", 90.0, "run1"), (("iris-rf", "2"), "canary", 10.0, "run2")]
    )
    got = samples(metrics.render()[0].decode())
    weights = {s[0]["role"]: s[1] for s in got["jupyter_mlops_traffic_weight_ratio"]}
    assert weights == {"primary": 0.9, "canary": 0.1}
    info = {
        (s[0]["model_version"], s[0]["run_id"], s[0]["role"]): s[1]
        for s in got["jupyter_mlops_model_info"]
    }
    assert info == {("1", "run1", "primary"): 1.0, ("2", "run2", "canary"): 1.0}
    assert got["process_resident_memory_bytes"][0][1] > 0
    assert "process_cpu_seconds_total" in got and "process_open_fds" in got

    # The canary ends: its series go, the primary takes the whole traffic.
    metrics.set_traffic([(("iris-rf", "1"), "primary", 100.0, "run1")])
    text = metrics.render()[0].decode()
    got = samples(text)
    assert [s[1] for s in got["jupyter_mlops_traffic_weight_ratio"]] == [1.0]
    assert [s[0]["model_version"] for s in got["jupyter_mlops_model_info"]] == ["1"]
    promtool_check(text)


def _live_workers(folder: Path, count: int) -> set[str]:
    """The pids of the deployment's workers once ``count`` of them acknowledged the state."""
    deadline = time.monotonic() + 60
    while True:
        workers = {str(ack["pid"]) for ack in read_acks(folder)}
        if len(workers) >= count or time.monotonic() > deadline:
            return workers
        time.sleep(0.1)


@pytest.mark.slow
def test_two_workers_report_identity_and_each_worker_process(project: Path) -> None:
    config = load_config(project)
    register_iris(config, 10, 0, "champion")
    register_iris(config, 5, 1, "challenger")
    run_ids = {v: client(config).get_model_version("iris-rf", v).run_id for v in ("1", "2")}
    with running("iris-rf@champion", config, name="two", workers=2) as dep:
        workers = _live_workers(dep.folder, 2)
        text = httpx.get(f"{dep.url}/metrics", timeout=30).text
        promtool_check(text)
        got = samples(text)
        assert len(workers) == 2
        # process_* once per live worker, told apart by pid: a sum would mean nothing.
        assert {s[0]["pid"] for s in got["process_resident_memory_bytes"]} == workers
        assert {s[0]["pid"] for s in got["process_start_time_seconds"]} == workers
        info = {
            (s[0]["model_name"], s[0]["model_version"], s[0]["run_id"], s[0]["role"]): s[1]
            for s in got["jupyter_mlops_model_info"]
        }
        assert info == {("iris-rf", "1", run_ids["1"], "primary"): 1.0}
        assert [s[1] for s in got["jupyter_mlops_traffic_weight_ratio"]] == [1.0]

        # After a promote both workers' files still hold v1's series: it reads 0, v2 reads 1.
        canary("two", "iris-rf@challenger", 0, config=config)
        promote("two", config=config)
        got = samples(httpx.get(f"{dep.url}/metrics", timeout=30).text)
        info = {
            (s[0]["model_version"], s[0]["run_id"], s[0]["role"]): s[1]
            for s in got["jupyter_mlops_model_info"]
        }
        assert info[("2", run_ids["2"], "primary")] == 1.0
        assert info[("1", run_ids["1"], "primary")] == 0.0
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None  # only the server set it
