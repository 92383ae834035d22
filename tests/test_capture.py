"""What a cell's code says about params, metrics and models (no MLflow involved)."""

from __future__ import annotations

import numpy as np
import pytest

from jupyter_mlops.tracking.capture import analyse_cell, capture, is_metric_name


@pytest.mark.parametrize(
    ("name", "literal", "expected"),
    [
        ("acc", False, True),
        ("roc_auc", False, True),
        ("f1_macro", False, True),
        ("val_loss", False, True),
        ("test_acc", True, True),
        ("cv_score", False, True),
        ("test_size", True, False),  # a literal split size is a parameter
        ("test_size", False, True),
        ("n_estimators", False, False),
        ("model", False, False),
    ],
)
def test_metric_names(name: str, literal: bool, expected: bool) -> None:
    assert is_metric_name(name, literal=literal) is expected


def test_literals_metrics_and_fits() -> None:
    src = (
        "lr = 0.1\nlayers = [64, 32]\nname = 'rf'\nneg = -3\n"
        "n = lr * 2\nacc = float(n)\nflag = True\nval_loss = np.float32(0.5)\n"
        "a, b = 1, 2\nfor i in range(3):\n    pass\n"
        "m.fit(X_tr, y_tr)\nm2 = Pipe().fit(X=X_tr, y=y_tr)\n"
    )
    facts = analyse_cell(src)
    assert facts.literals == {"lr": 0.1, "layers": [64, 32], "name": "rf", "neg": -3, "flag": True}
    assert facts.fitted == ["m", "m2"]
    ns = {
        "lr": 0.1,
        "layers": [64, 32],
        "name": "rf",
        "neg": -3,
        "n": 0.2,
        "acc": 0.2,
        "flag": True,
        "val_loss": np.float32(0.5),
        "a": 1,
        "b": 2,
        "i": 2,
    }
    got = capture(facts, ns, with_models=False)
    assert got.params == {
        "lr": "0.1",
        "layers": "[64, 32]",
        "name": "rf",
        "neg": "-3",
        "flag": "True",
    }
    assert got.metrics == {"acc": 0.2, "val_loss": 0.5}


def test_reassigned_literal_is_not_a_param() -> None:
    facts = analyse_cell("k = 3\nk += 1\n")
    assert "k" not in facts.literals


def test_models_found_with_training_data() -> None:
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.arange(10.0).reshape(5, 2)
    y = np.arange(5.0)
    unfitted = LinearRegression()
    pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    src = (
        "pipe = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)\n"
        "unfitted = LinearRegression()\n"
    )
    got = capture(analyse_cell(src), {"pipe": pipe, "unfitted": unfitted, "X": X, "y": y})
    assert list(got.models) == ["pipe"]
    assert got.training_data["pipe"][0] is X
    assert got.params["linearregression__fit_intercept"] == "True"


def test_fit_inputs_are_the_training_data_and_metric_lists_are_histories() -> None:
    from sklearn.linear_model import LinearRegression

    from jupyter_mlops.tracking.capture import CellFacts

    X = np.arange(10.0).reshape(5, 2)
    y = np.arange(5.0)
    model = LinearRegression().fit(X[:4], y[:4])
    facts = CellFacts(assigned=["model", "losses", "hidden"], literals={"hidden": [64, 32]})
    ns = {"model": model, "losses": [0.5, 0.25], "hidden": [64, 32]}
    got = capture(facts, ns, fit_inputs={"model": (X[:4], y[:4])})
    assert got.training_data["model"][0].shape == (4, 2)
    assert got.histories == {"losses": [0.5, 0.25]} and got.params["hidden"] == "[64, 32]"


def test_step_loop_is_the_innermost_holding_every_assignment() -> None:
    import ast

    from jupyter_mlops.tracking.instrument import plan_loops

    tree = ast.parse(
        "for epoch in range(3):\n"
        "    loss = 0.0\n"
        "    for batch in range(4):\n"
        "        loss += batch\n"
        "        batch_loss = batch\n"
        "    loss /= 4\n"
        "for x in range(2):\n"
        "    test_size = 0.2\n"  # a literal split size: a param, never stepped
    )
    assert plan_loops(tree) == 3
    epoch, second = tree.body
    inner = epoch.body[1]
    assert epoch.mlops_steps == [("loss", False)]  # stepped once per epoch, at its end
    assert inner.mlops_steps == [("batch_loss", True)]  # one assignment: appended in place
    assert second.mlops_steps == []
