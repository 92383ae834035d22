"""The shared scores equal scikit-learn's on random labels, probabilities and values."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from jupyter_mlops.predlog.scores import (
    classification_scores,
    confusion_counts,
    regression_scores,
)


@pytest.mark.parametrize("k", [2, 3, 5])
def test_classification_scores_equal_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    n = 2000
    proba = rng.dirichlet(np.ones(k), size=n)
    classes = [f"c{i}" for i in range(k)]
    truth = np.array(classes)[rng.integers(0, k, n)]
    pred = np.array(classes)[proba.argmax(axis=1)]
    got = classification_scores(truth, pred, proba=proba, classes=classes)
    assert got["accuracy"] == pytest.approx(metrics.accuracy_score(truth, pred))
    assert got["f1"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    assert got["precision"] == pytest.approx(
        metrics.precision_score(truth, pred, average="macro", zero_division=0)
    )
    assert got["recall"] == pytest.approx(metrics.recall_score(truth, pred, average="macro"))
    assert got["log_loss"] == pytest.approx(metrics.log_loss(truth, proba, labels=classes))
    if k == 2:
        expected = metrics.roc_auc_score(truth == classes[1], proba[:, 1])
    else:
        expected = metrics.roc_auc_score(truth, proba, multi_class="ovr", labels=classes)
    assert got["roc_auc"] == pytest.approx(expected)


def test_integer_labels_and_unseen_predictions() -> None:
    truth = [0, 1, 1, 0, 1]
    pred = [0, 1, 0, 2, 1]  # 2: a label never in the truth
    got = classification_scores(truth, pred)
    assert got["accuracy"] == pytest.approx(0.6)
    assert got["f1"] == pytest.approx(metrics.f1_score(truth, pred, average="macro"))
    assert "roc_auc" not in got  # no probabilities: not made up
    assert classification_scores([], []) == {}


def test_confusion_counts_of_the_positive_class() -> None:
    truth = [1, 1, 0, 0, 1, 0]
    pred = [1, 0, 0, 1, 1, 0]
    counts = confusion_counts(truth, pred)
    tn, fp, fn, tp = metrics.confusion_matrix(truth, pred).ravel()
    assert (counts["tp"], counts["fp"], counts["tn"], counts["fn"]) == (tp, fp, tn, fn)
    assert counts["n"] == 6 and counts["correct"] == 4
    flipped = confusion_counts(truth, pred, positive=0)
    assert flipped["tp"] == tn and flipped["fn"] == fp


def test_regression_scores_equal_sklearn_and_skip_missing() -> None:
    rng = np.random.default_rng(1)
    truth = rng.normal(size=500)
    pred = truth + rng.normal(scale=0.3, size=500)
    got = regression_scores(truth, pred)
    assert got["rmse"] == pytest.approx(np.sqrt(metrics.mean_squared_error(truth, pred)))
    assert got["mae"] == pytest.approx(metrics.mean_absolute_error(truth, pred))
    assert got["r2"] == pytest.approx(metrics.r2_score(truth, pred))
    with_gaps = regression_scores([1.0, np.nan, 3.0], [1.5, 2.0, None])
    assert with_gaps == {"rmse": 0.5, "mae": 0.5}  # one row left: R² undefined
