"""%%track records only what THIS execution of the cell assigned (issue 15, item 1).

Each test drives a real IPython shell and reads the run back from a real MLflow store. An
earlier, untracked cell leaves values in the namespace; the tracked cell must not pass
them off as its own.
"""

from __future__ import annotations

import pytest
from IPython.core.error import UsageError
from mlflow import MlflowClient

from jupyter_mlops.config import load_config

DATA = (
    "import numpy as np\n"
    "from sklearn.dummy import DummyClassifier\n"
    "rng = np.random.default_rng(0)\n"
    "X = rng.normal(size=(200, 4))\n"
    "y = (X[:, 0] > 0).astype(int)\n"
)


def _run(experiment: str):  # type: ignore[no-untyped-def]
    client = MlflowClient(load_config().tracking_uri)
    (run,) = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    return run


def test_branch_not_taken_is_not_recorded_and_the_gate_refuses(ip) -> None:
    ip.run_cell(DATA)
    ip.run_cell("test_auc = 0.996")  # an earlier cell's result, still in the namespace
    cell = (
        "clf = DummyClassifier(strategy='most_frequent').fit(X, y)\n"
        "if clf.score(X, y) > 0.99:\n"
        "    test_auc = clf.score(X, y)\n"
    )
    ip.run_cell_magic("track", "-e branch --quiet", cell)
    run = _run("branch")
    assert run.info.status == "FINISHED"
    assert "test_auc" not in run.data.metrics and "test_auc" not in run.data.params
    assert ip.user_ns["test_auc"] == 0.996  # the namespace itself is untouched
    with pytest.raises(UsageError, match="test_auc"):
        ip.run_line_magic("register", "--name dummy --gate 'test_auc >= 0.95'")
    assert MlflowClient(load_config().tracking_uri).search_registered_models() == []


def test_loop_that_does_not_run_records_nothing_of_its_body(ip) -> None:
    ip.run_cell("val_acc = 0.93\nbest_depth = 7\ndepth = 2")
    cell = (
        "depths = []\nfor depth in depths:\n    best_depth = depth\n    val_acc = 1.0\nseed = 1\n"
    )
    ip.run_cell_magic("track", "-e empty-loop --quiet", cell)
    run = _run("empty-loop")
    assert run.data.params == {"seed": "1", "depths": "[]"}
    assert run.data.metrics == {}


def test_del_removes_a_name_from_the_record(ip) -> None:
    ip.run_cell("old_score = 0.9")
    cell = "lr = 0.1\ntmp_score = 0.5\ndel tmp_score\nold_score = 0.4\ndel old_score\n"
    ip.run_cell_magic("track", "-e deleted --quiet", cell)
    run = _run("deleted")
    assert run.data.params == {"lr": "0.1"}
    assert run.data.metrics == {}


def test_reassignment_to_the_same_value_is_recorded(ip) -> None:
    ip.run_cell("n_estimators = 100\nacc = 0.75\nname = 'rf'")
    ip.run_cell_magic("track", "-e same --quiet", "n_estimators = 100\nacc = 0.75\nname = 'rf'\n")
    run = _run("same")
    assert run.data.params == {"n_estimators": "100", "name": "rf"}
    assert run.data.metrics == {"acc": 0.75}


def test_exception_mid_cell_keeps_only_what_ran_before_it(ip) -> None:
    ip.run_cell("n_estimators = 300\nmax_depth = 9\nval_loss = 0.1")
    cell = "n_estimators = 120\nval_loss = 0.5\nraise ValueError('boom')\nmax_depth = 3\n"
    with pytest.raises(ValueError, match="boom"):
        ip.run_cell_magic("track", "-e failing --quiet", cell)
    run = _run("failing")
    assert run.info.status == "FAILED"
    assert run.data.params == {"n_estimators": "120"}
    assert run.data.metrics == {"val_loss": 0.5}


def test_instrumented_cell_keeps_tracebacks_display_and_functions(ip, capsys) -> None:
    # The line of the failing statement is the one the traceback shows.
    cell = "a = 1\nb = 2\n\n1 / 0\nc = 3\n"
    ip.run_cell_magic("track", "-e lines --quiet", "x = 5\nx")
    assert "__mlops_rec__" not in ip.user_ns
    with pytest.raises(ZeroDivisionError) as info:
        ip.run_cell_magic("track", "-e lines --quiet", cell)
    frames = [
        f for f in info.traceback if "<ipython-input" in str(f.path) or "ipykernel" in str(f.path)
    ]
    assert frames and frames[-1].lineno + 1 == 4  # pytest's lineno is 0-based
    assert "__mlops_rec__" not in ip.user_ns

    # The last expression is still the cell's value; walrus, with-as and functions work.
    cell = (
        "import contextlib\n"
        "def twice(v):\n    out = v * 2\n    return out\n"
        "gen = (twice(i) for i in range(3))\n"
        "with contextlib.nullcontext(4) as four:\n    pass\n"
        "if (half := 0.5) > 0:\n    pass\n"
        "twice(four) + half\n"
    )
    value = ip.run_cell_magic("track", "-e expr --quiet", cell)
    assert value == 8.5
    # defined in the cell, called after it: not instrumented, so no recorder needed
    assert ip.user_ns["twice"](3) == 6 and list(ip.user_ns["gen"]) == [0, 2, 4]
    client = MlflowClient(load_config().tracking_uri)
    exp = client.get_experiment_by_name("expr").experiment_id
    (run,) = client.search_runs([exp])
    assert run.data.params == {"half": "0.5"}  # `out` is the function's local, not the cell's


def test_fit_inputs_are_the_values_the_calls_received(ip) -> None:
    from jupyter_mlops.magics import ShellCells
    from jupyter_mlops.tracking.recorder import Recorder

    ip.run_cell(
        DATA + "from sklearn.linear_model import SGDClassifier\nfrom sklearn.pipeline import "
        "make_pipeline\nfrom sklearn.preprocessing import StandardScaler\nimport pandas as pd\n"
        "frame = pd.DataFrame(X, columns=list('abcd'))\n"
    )
    cell = (
        "head = DummyClassifier().fit(X[:150], y=y[:150])\n"
        "pipe = make_pipeline(StandardScaler(), DummyClassifier()).fit(frame.iloc[:120], y[:120])\n"
        "sgd = SGDClassifier()\n"
        "batch = np.empty((50, 4))\n"
        "for start in range(0, 200, 50):\n"
        "    batch[:] = X[start:start + 50]\n"
        "    sgd.partial_fit(batch, y[start:start + 50], classes=[0, 1])\n"
        "if False:\n    never = DummyClassifier().fit(X, y)\n"
    )
    recorder = Recorder()
    cells = ShellCells(ip)
    with recorder.installed(ip.user_ns):
        cells.execute(cells.transform(cell), recorder.instrument)
    done = recorder.result(ip.user_ns)
    assert set(done.fit_inputs) == {"head", "pipe", "sgd"}
    assert set(done.facts.fitted) == {"head", "pipe", "sgd"}
    X, y = ip.user_ns["X"], ip.user_ns["y"]
    hx, hy = done.fit_inputs["head"]
    assert hx.shape == (150, 4) and hx.base is X and (hy == y[:150]).all()  # a view, not a copy
    px, _ = done.fit_inputs["pipe"]
    assert list(px.columns) == list("abcd") and len(px) == 120
    sx, sy = done.fit_inputs["sgd"]
    # the first partial_fit batch, copied: the loop refilled the buffer three times since
    assert sx is not ip.user_ns["batch"] and (sx == X[:50]).all() and (sy == y[:50]).all()
