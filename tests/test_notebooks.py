"""The demo notebooks, executed top to bottom with papermill in real kernels, each in a fresh
git project made from a copy of ``notebooks/`` (as a Binder user or ``make demo`` gets it),
on the embedded SQLite store, with deployments on 127.0.0.1 only.

A cell that raises fails the test; afterwards the project's own store and ``.mlops/`` folder
must hold what the notebook claims to have done, and no process may be left running in it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.pipelines.execute import execute_notebook

from .conftest import git

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 600


def fresh_project(tmp_path: Path) -> Path:
    """``notebooks/`` copied into a new git repository, committed, nothing else."""
    root = tmp_path / "proj"
    shutil.copytree(
        NOTEBOOKS,
        root / "notebooks",
        ignore=shutil.ignore_patterns("*.out.ipynb", ".ipynb_checkpoints", "data", "build"),
    )
    (root / ".gitignore").write_text(".mlops/\n*.out.ipynb\n")
    git(root, "init", "-q")
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "demo notebooks")
    return root


def processes_in(root: Path) -> list[str]:
    """Live processes whose working directory or command line is inside ``root``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
            if cwd.startswith(str(root)) or str(root) in cmdline:
                found.append(f"{proc.name}: {cmdline[:150]}")
    return found


def outputs_text(executed: Path) -> str:
    """Every text/plain output and stream of an executed notebook, joined."""
    nb = json.loads(executed.read_text())
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            if out["output_type"] == "stream":
                parts.append("".join(out["text"]))
            elif "data" in out:
                parts.append("".join(out["data"].get("text/plain", "")))
    return "\n".join(parts)


def aliases(config: Config, name: str) -> dict[str, str]:
    model = MlflowClient(config.tracking_uri).get_registered_model(name)
    return {alias: str(version) for alias, version in model.aliases.items()}


def versions(config: Config, name: str) -> list[str]:
    client = MlflowClient(config.tracking_uri)
    return sorted(str(v.version) for v in client.search_model_versions(f"name = '{name}'"))


# -- what each notebook must leave behind ------------------------------------------------------


def quickstart_did(root: Path, config: Config, text: str) -> None:
    from jupyter_mlops.serving import get_deployment, read_predictions

    client = MlflowClient(config.tracking_uri)
    experiment = client.get_experiment_by_name("Iris_Classification")
    assert experiment is not None
    tracked = client.search_runs([experiment.experiment_id])
    (run,) = [r for r in tracked if "mlops.reproduces" not in r.data.tags]
    assert run.info.status == "FINISHED" and run.data.metrics["acc"] >= 0.9
    assert run.data.tags["mlflow.source.name"] == "notebooks/01-quickstart.ipynb"
    # %reproduce re-executed the cell as a second run of the experiment, and said so
    (again,) = [r for r in tracked if r.data.tags.get("mlops.reproduces") == run.info.run_id]
    assert run.data.tags["mlops.reproduced"] == "REPRODUCED"
    assert run.data.tags["mlops.reproduced.by"] == again.info.run_id
    assert f"REPRODUCED: run {run.info.run_id} as {again.info.run_id}" in text
    assert again.data.metrics["acc"] == run.data.metrics["acc"]
    assert aliases(config, "iris-rf") == {"champion": "1"}
    # %register's "last run" is the one trained, not its reproduction
    assert client.get_model_version("iris-rf", "1").run_id == run.info.run_id
    assert get_deployment("iris-prod", config=config).status == "stopped"
    logged = read_predictions("iris-prod", config=config)
    assert len(logged) == 3 and logged.request_id.nunique() == 1  # one request of 3 rows
    assert set(logged.model_version) == {"1"}
    restored = root / "notebooks" / "build" / "restored-iris.csv"
    assert restored.read_bytes() == (root / "notebooks" / "data" / "iris.csv").read_bytes()
    assert "restored byte for byte from DVC" in text


def monitoring_did(root: Path, config: Config, text: str) -> None:
    from jupyter_mlops import monitoring
    from jupyter_mlops.serving import get_deployment, read_predictions

    assert aliases(config, "iris-rf") == {"champion": "1"}
    assert get_deployment("iris-monitored", config=config).status == "stopped"
    logged = read_predictions("iris-monitored", config=config)
    assert len(logged) == 300 and logged.request_id.nunique() == 60  # 60 requests of 5 rows
    (fired,) = monitoring.alert_history("iris-monitored", config=config)[:1]
    assert fired["rule"] == "drift_share > 0.3" and fired["value"] == 0.5
    assert fired["notified"] and fired["webhook"]["status"] == 204
    rules = [r.expression for r in monitoring.get_rules("iris-monitored", config=config).rules]
    assert rules == ["drift_share > 0.3", "p99_ms > 5000"]
    # what the notebook showed is what the logged traffic says: the petals moved, not the sepals
    report = monitoring.drift_for_deployment("iris-monitored", last=None, config=config)
    status = {f.name: f.status for f in report.features}
    assert status["petal length (cm)"] == status["petal width (cm)"] == "drift"
    assert status["sepal length (cm)"] != "drift" and status["sepal width (cm)"] != "drift"
    assert "DRIFT: 2 of 4 features drifted" in text
    assert "1 firing, 1 quiet, 0 unknown" in text and "exit status: 1" in " ".join(text.split())


def retraining_did(root: Path, config: Config, text: str) -> None:
    from jupyter_mlops import pipelines
    from jupyter_mlops.serving import get_deployment

    runs = pipelines.list_pipeline_runs(config=config)
    assert len(runs) == 7  # one run, a sweep of 4, the promoted retrain, the kept-champion one
    assert all(r.ok for r in runs), [str(r) for r in runs if not r.ok]
    swept = sorted(
        (r.sweep["params"]["n_estimators"], r.sweep["params"]["max_depth"]) for r in runs if r.sweep
    )
    assert swept == [(10, 2), (10, 4), (100, 2), (100, 4)]
    decisions = pipelines.list_decisions(config=config, model="iris-rf")
    assert [d.action for d in decisions] == ["kept-champion", "promoted", "not-triggered"]
    kept, promoted, quiet = decisions
    assert quiet.pipeline_run is None and quiet.figures["drift_share"] > 0.3
    assert promoted.triggered and promoted.same_holdout and promoted.incumbent_version == "1"
    assert promoted.candidate > promoted.incumbent + 0.2  # the old champion fails on new data
    assert [d["path"] for d in promoted.data] == ["notebooks/data/iris-new.csv"]
    assert kept.same_holdout and kept.candidate == kept.incumbent and kept.version is None
    assert versions(config, "iris-rf") == ["1", "2"]
    assert aliases(config, "iris-rf") == {"champion": "2", "challenger": "2"}
    deployment = get_deployment("iris-live", config=config)
    assert deployment.status == "stopped" and deployment.primary.version == "2"
    assert "challenger lost" in text


CASES: dict[str, Callable[[Path, Config, str], None]] = {
    "01-quickstart.ipynb": quickstart_did,
    "02-monitoring-and-drift.ipynb": monitoring_did,
    "03-retraining-pipeline.ipynb": retraining_did,
}


#: Notebooks run by a test file of their own (so the two test workers share the load).
ELSEWHERE = {"04-outcomes-and-business-metrics.ipynb": "tests/test_notebook_outcomes.py"}


def test_every_notebook_is_tested() -> None:
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == sorted([*CASES, *ELSEWHERE])
    root = Path(__file__).resolve().parents[1]
    assert all((root / path).is_file() for path in ELSEWHERE.values())


def test_committed_notebooks_carry_no_outputs() -> None:
    for path in [*NOTEBOOKS.glob("*.ipynb"), *NOTEBOOKS.glob("pipeline/*.ipynb")]:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("name", sorted(CASES))
def test_notebook_runs_top_to_bottom_in_a_fresh_project(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fresh_project(tmp_path)
    for var in ("MLFLOW_TRACKING_URI", "JPY_SESSION_NAME", "JUPYTER_MLOPS_NOTEBOOK"):
        monkeypatch.delenv(var, raising=False)  # the kernel inherits this environment
    monkeypatch.chdir(tmp_path)  # not inside the project: the notebook must find it itself
    notebook = root / "notebooks" / name
    started = time.monotonic()
    executed = execute_notebook(
        notebook,
        notebook.with_suffix(".out.ipynb"),
        timeout=CELL_TIMEOUT_S,
        env={"DVC_SITE_CACHE_DIR": str(tmp_path / "dvc-site-cache"), "DVC_NO_ANALYTICS": "1"},
    )
    took = time.monotonic() - started
    assert took < 300, f"{name} took {took:.0f} s; the demos should run in a few minutes"

    config = load_config(root)
    assert config.root == root.resolve() and config.tracking_uri.startswith("sqlite:")
    CASES[name](root, config, outputs_text(executed))

    deadline = time.monotonic() + 15
    while (left := processes_in(root)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"{name} left processes running in its project: {left}"
