"""%%track in a real kernel: a notebook executed by papermill, and data restored from DVC."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nbformat
import pytest
from mlflow import MlflowClient

import jupyter_mlops
from jupyter_mlops.config import load_config
from jupyter_mlops.pipelines.execute import NotebookExecutionError, execute_notebook

from .conftest import IRIS_CELL

SETUP = """\
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score
from sklearn.model_selection import train_test_split
"""


def _notebook(path: Path, *cells: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_papermill_run_tracks_and_restores_data(git_project: Path, iris_csv: Path) -> None:
    nb = _notebook(
        git_project / "train.ipynb",
        "%load_ext jupyter_mlops",
        SETUP,
        "%%track -e kernel --data data/iris.csv\n" + IRIS_CELL,
        "acc",
    )
    out = execute_notebook(nb, git_project / "train.out.ipynb")
    executed = nbformat.read(out, as_version=4)
    card = executed.cells[2].outputs
    assert any("text/html" in o.get("data", {}) for o in card), card

    client = MlflowClient(load_config().tracking_uri)
    exp = client.get_experiment_by_name("kernel")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.tags["mlflow.source.name"] == "train.ipynb"
    assert run.data.tags["mlops.notebook"] == "train.ipynb"
    printed_acc = float(executed.cells[3].outputs[0]["data"]["text/plain"])
    assert run.data.metrics["acc"] == pytest.approx(printed_acc)
    (snap,) = json.loads(run.data.tags["mlops.data"])
    original = iris_csv.read_bytes()
    assert snap["path"] == "data/iris.csv"
    assert snap["md5"] == hashlib.md5(original).hexdigest()
    assert snap["size"] == len(original)

    # The data changes afterwards; the run's snapshot still restores byte for byte.
    iris_csv.write_text("target\n1\n")
    dest = jupyter_mlops.restore_data(
        run.info.run_id, "data/iris.csv", git_project / "restored.csv"
    )
    assert dest.read_bytes() == original
    with pytest.raises(jupyter_mlops.NotFoundError, match="no data snapshot"):
        jupyter_mlops.restore_data(run.info.run_id, "data/other.csv", git_project / "x.csv")
    with pytest.raises(jupyter_mlops.NotFoundError, match="No run"):
        jupyter_mlops.restore_data("0" * 32, "data/iris.csv", git_project / "x.csv")


@pytest.mark.slow
def test_failing_cell_in_kernel_fails_notebook_and_run(project: Path) -> None:
    nb = _notebook(
        project / "bad.ipynb",
        "%load_ext jupyter_mlops",
        "%%track -e kernel-bad\nrmse = 1.5\nraise RuntimeError('broken step')",
        "after = True",
    )
    with pytest.raises(NotebookExecutionError, match="broken step") as info:
        execute_notebook(nb)
    assert info.value.output.is_file()
    client = MlflowClient(load_config().tracking_uri)
    exp = client.get_experiment_by_name("kernel-bad")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.metrics["rmse"] == 1.5
    executed = nbformat.read(info.value.output, as_version=4)
    assert not executed.cells[2].get("outputs")  # papermill stopped at the failing cell
