"""The `jupyter-mlops` command line over the same API."""

from __future__ import annotations

import json
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import jupyter_mlops
from jupyter_mlops.cli import main


def test_cli_register_promote_history_lineage(project: Path, capsys) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    with jupyter_mlops.track(experiment="cli") as run:
        run.log_metrics({"accuracy": 0.9})
        run.log_model(LogisticRegression(max_iter=300).fit(X, y), "model", X=X)

    assert main(["register", "--name", "cli-model", "--gate", "accuracy > 2"]) == 1
    assert "fails gate" in capsys.readouterr().err
    assert main(["register", run.run_id[:10], "--name", "cli-model", "--alias", "champion"]) == 0
    assert "Registered cli-model version 1" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "cli-model" in out and "champion" in out
    assert main(["history", "cli-model"]) == 0
    assert "register" in capsys.readouterr().out
    assert main(["lineage", "cli-model@champion", "--json"]) == 0
    lineage = json.loads(capsys.readouterr().out)
    assert lineage["run_id"] == run.run_id and lineage["version"] == "1"
    assert main(["rollback", "cli-model", "champion"]) == 1
    assert "Nothing to roll back" in capsys.readouterr().err
    assert main(["info"]) == 0
    assert str(project) in capsys.readouterr().out
    assert main(["runs"]) == 0
    assert run.run_id[:12] in capsys.readouterr().out
