"""The comparison and explanation parts of a reproduction, on plain values (no kernel):
predictions within a tolerance, params/metrics/data of two runs, the ``%%track`` line
rebuilt for old runs, the context taken from a notebook copy, and the order of causes."""

from __future__ import annotations

import math

import nbformat
import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.data import DataSnapshot
from jupyter_mlops.reproduction.cellbook import context_cells, track_line
from jupyter_mlops.reproduction.compare import compare_runs
from jupyter_mlops.reproduction.inkernel import compare_predictions
from jupyter_mlops.reproduction.result import Cause, Difference, EnvironmentReport, PackageChange
from jupyter_mlops.reproduction.source import Recorded
from jupyter_mlops.reproduction.verdict import order_causes, package_causes, unseeded


def _run(**kw: object) -> Recorded:
    base: dict[str, object] = {
        "run_id": "a" * 32,
        "run_name": "calm-owl-1",
        "experiment": "iris",
        "experiment_id": "1",
        "status": "FINISHED",
        "start_ms": 0,
        "end_ms": 1000,
        "params": {},
        "metrics": {},
        "tags": {},
    }
    base.update(kw)
    return Recorded(**base)  # type: ignore[arg-type]


def test_predictions_equal_within_tolerance_and_rows_counted() -> None:
    a = np.array([[0.1, 0.9], [0.5, 0.5], [1.0, 0.0]])
    same = compare_predictions(a, a + 1e-12, 1e-9)
    assert same == {
        "rows": 3,
        "equal": True,
        "rows_differing": 0,
        "max_abs_diff": same["max_abs_diff"],
    }
    assert same["max_abs_diff"] == pytest.approx(1e-12, rel=1e-3)
    moved = a.copy()
    moved[1, 0] += 0.25
    differ = compare_predictions(a, moved, 1e-9)
    assert differ["equal"] is False and differ["rows_differing"] == 1
    assert differ["max_abs_diff"] == pytest.approx(0.25)
    labels = compare_predictions(pd.Series(["a", "b", "c"]), np.array(["a", "x", "c"]), 0.0)
    assert labels["rows_differing"] == 1 and labels["max_abs_diff"] is None
    nan = compare_predictions(np.array([math.nan, 1.0]), np.array([math.nan, 1.0]), 0.0)
    assert nan["equal"] is True
    shapes = compare_predictions(np.zeros(3), np.zeros(4), 0.0)
    assert shapes["equal"] is False and "shapes differ" in shapes["detail"]


def test_runs_compared_params_as_text_metrics_within_tolerance_absent_differs() -> None:
    snap = DataSnapshot("data/x.csv", "0" * 32, 10, 1)
    original = _run(
        params={"n": "100", "depth": "3"},
        metrics={"acc": 0.9, "loss": 0.30000000001, "gone": 1.0},
        data=[snap],
    )
    new = _run(
        params={"n": "100", "depth": "4"},
        metrics={"acc": 0.9, "loss": 0.3, "extra": 2.0},
        data=[DataSnapshot("data/x.csv", "1" * 32, 10, 1)],
    )
    differences, checked = compare_runs(original, new, None, 1e-9)
    assert checked == {"params": 2, "metrics": 4, "predictions": 0, "data": 1}
    found = {(d.kind, d.name): d for d in differences}
    assert set(found) == {
        ("param", "depth"),
        ("metric", "gone"),
        ("metric", "extra"),
        ("data", "data/x.csv"),
    }
    assert found[("metric", "gone")].detail == "absent from the reproduction"
    assert found[("metric", "extra")].detail == "only in the reproduction"
    loose, _ = compare_runs(_run(metrics={"m": 1.0}), _run(metrics={"m": 1.05}), None, 0.1)
    assert loose == []


def test_prediction_results_become_differences_and_are_counted() -> None:
    original = _run(models={"model": "models:/m-1", "other": "models:/m-2"})
    new = _run(models={"model": "models:/m-3", "other": "models:/m-4"})
    found = {
        "models": {
            "model": {
                "checks": [
                    {"on": "input example", "rows": 5, "equal": True, "rows_differing": 0},
                    {
                        "on": "training data (X_train)",
                        "rows": 120,
                        "equal": False,
                        "rows_differing": 7,
                        "max_abs_diff": 1.0,
                    },
                ]
            },
            "other": {"uri": "models:/m-2", "error": "cannot load: OSError: gone"},
        }
    }
    differences, checked = compare_runs(original, new, found, 1e-9)
    assert checked["predictions"] == 2
    (prediction,) = [d for d in differences if d.kind == "prediction"]
    assert prediction.name == "model on training data (X_train)"
    assert prediction.detail == "7 of 120 rows differ, max abs diff 1"
    (model,) = [d for d in differences if d.kind == "model"]
    assert model.name == "other" and "OSError" in model.detail


def test_track_line_as_recorded_or_rebuilt_always_in_the_original_experiment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    recorded = _run(tags={"mlops.track.args": "--data data/x.csv --quiet"}, experiment="my exp")
    assert track_line(recorded, tmp_path, tmp_path) == (
        "%%track --data data/x.csv --quiet -e 'my exp' -n calm-owl-1-repro"
    )
    old = _run(data=[DataSnapshot("data/x.csv", "0" * 32, 1, 1)])
    notebooks = tmp_path / "notebooks"
    assert track_line(old, notebooks, tmp_path) == (
        "%%track --data ../data/x.csv -e iris -n calm-owl-1-repro"
    )


def test_old_run_context_from_its_notebook_copy() -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_mlops"),
        nbformat.v4.new_markdown_cell("# notes"),
        nbformat.v4.new_code_cell("import pandas as pd"),
        nbformat.v4.new_code_cell("%%track -e prep\nclean = 1"),
        nbformat.v4.new_code_cell("%%track -e iris\nmodel = fit(clean)"),
        nbformat.v4.new_code_cell("print(model)"),
    ]
    old = _run(cell="model = fit(clean)\n", notebook_copy=nbformat.writes(nb))
    cells, causes = context_cells(old)
    assert cells == ["import pandas as pd", "clean = 1"]  # no second %load_ext, no run
    assert causes[0].kind == "code" and "best effort" in causes[0].message
    recorded = _run(cell="x = 1", context="# In[3]\nimport numpy as np\n")
    assert context_cells(recorded) == (["# In[3]\nimport numpy as np"], [])


def test_causes_ordered_by_likelihood() -> None:
    env = EnvironmentReport(
        mode="current",
        python="/usr/bin/python3",
        changes=[PackageChange("scikit-learn", "1.5.2", "1.9.1")],
    )
    (package,) = package_causes(env)
    assert "scikit-learn 1.5.2 -> 1.9.1" in package.message and "fresh" in package.message
    found = {"models": {"m": {"class": "RF"}}}
    seeds = unseeded(_run(params={"random_state": "None"}), None, found)
    assert [(c.kind, c.subject) for c in seeds] == [("unseeded", "RF")]
    code = Cause("code", "abc", "another commit")
    metric = [Difference("metric", "acc", 0.9, 0.8)]
    ordered = order_causes(metric, unseeded=seeds, packages=[package], code=[code])
    assert [c.kind for c in ordered] == ["unseeded", "package", "code"]
    param = [Difference("param", "n", "1", "2")]
    ordered = order_causes(param, unseeded=seeds, packages=[package], code=[code, code])
    assert [c.kind for c in ordered] == ["code", "unseeded", "package"]
