"""Model quality from predictions joined to their outcomes: the one place its math lives.

Monitoring (``%monitor --performance``), the server's Prometheus gauges and the canary
decision all score the same joined rows, so they share these functions. They take numpy
arrays and stay vectorized (a confusion matrix by ``bincount``, ROC AUC by ranks), so a
million labelled rows score in well under a second; the results equal scikit-learn's
(``tests/test_scores.py`` compares them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "CLASSIFICATION_SCORES",
    "REGRESSION_SCORES",
    "classification_scores",
    "confusion_counts",
    "matrix_scores",
    "regression_scores",
]

#: What :func:`classification_scores` gives (``roc_auc``/``log_loss`` need probabilities).
CLASSIFICATION_SCORES = ("accuracy", "f1", "precision", "recall", "roc_auc", "log_loss")
#: What :func:`regression_scores` gives.
REGRESSION_SCORES = ("rmse", "mae", "r2")
#: Probabilities are clipped to [EPS, 1 - EPS] in the log loss, as scikit-learn does.
_EPS = 1e-15


def _codes(
    y_true: Any, y_pred: Any, classes: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """Labels as integer codes over one class list (``classes`` first, then any other label
    seen, sorted as text). Labels compare as text (``1`` and ``"1"`` are one class); the
    values are hashed once (``pandas.factorize``) and only the distinct ones turned to text,
    so a million rows take tens of milliseconds."""
    import numpy as np
    import pandas as pd

    true, pred = np.asarray(y_true), np.asarray(y_pred)
    both = np.concatenate([true.ravel(), pred.ravel()]) if true.size + pred.size else true
    raw, uniques = pd.factorize(both, use_na_sentinel=False)
    texts = [str(u) for u in np.asarray(uniques, dtype=object)]
    known = [str(c) for c in classes] if classes is not None else []
    names = known + sorted(set(texts) - set(known))
    index = {name: i for i, name in enumerate(names)}
    lookup = np.array([index[t] for t in texts], dtype=np.int64)
    codes = lookup[raw] if raw.size else raw.astype(np.int64)
    return codes[: true.size], codes[true.size :], names


def confusion_counts(
    y_true: Any, y_pred: Any, *, positive: Any = None, classes: Sequence[Any] | None = None
) -> dict[str, int]:
    """``tp``, ``fp``, ``tn``, ``fn`` of the ``positive`` class (by default the last of
    ``classes``, or of the labels seen, as scikit-learn's ``pos_label=1`` for 0/1), plus
    ``n`` and ``correct``: the names business metrics are written over."""
    import numpy as np

    true, pred, names = _codes(y_true, y_pred, classes)
    if positive is None:
        pos = len(names) - 1
    elif str(positive) in names:
        pos = names.index(str(positive))
    else:
        pos = -1  # a class never seen: no positives
    t, p = true == pos, pred == pos
    return {
        "tp": int(np.sum(t & p)),
        "fp": int(np.sum(~t & p)),
        "tn": int(np.sum(~t & ~p)),
        "fn": int(np.sum(t & ~p)),
        "n": int(true.size),
        "correct": int(np.sum(true == pred)),
    }


def classification_scores(
    y_true: Any,
    y_pred: Any,
    *,
    proba: Any = None,
    classes: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Accuracy, macro F1/precision/recall, and with ``proba`` (rows x ``classes``) ROC AUC
    (binary: of the last class; multiclass: macro one-vs-rest) and log loss.

    Empty input gives an empty dict; a score that is undefined on these rows (ROC AUC with
    one class present) is left out rather than made up.
    """
    import numpy as np

    true, pred, names = _codes(y_true, y_pred, classes)
    n = int(true.size)
    if n == 0:
        return {}
    k = len(names)
    out = matrix_scores(np.bincount(true * k + pred, minlength=k * k).reshape(k, k))
    if proba is not None and classes is not None:
        out.update(_probability_scores(true, np.asarray(proba, dtype=float), len(classes)))
    return out


def matrix_scores(matrix: np.ndarray) -> dict[str, float]:
    """Accuracy and macro F1/precision/recall of a k x k confusion matrix (rows: true class,
    columns: predicted): what a bootstrap of those scores resamples (the canary decision)."""
    import numpy as np

    tp = np.diag(matrix).astype(float)
    predicted, actual = matrix.sum(axis=0), matrix.sum(axis=1)
    present = (predicted + actual) > 0  # as scikit-learn: labels seen in either
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        recall = np.where(actual > 0, tp / actual, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return {
        "accuracy": float(tp.sum() / max(int(matrix.sum()), 1)),
        "f1": float(f1[present].mean()),
        "precision": float(precision[present].mean()),
        "recall": float(recall[present].mean()),
    }


def _probability_scores(true: np.ndarray, proba: np.ndarray, k: int) -> dict[str, float]:
    """ROC AUC and log loss of class probabilities (rows of ``proba`` over the first ``k``
    codes; rows whose label is another class are left out of both)."""
    import numpy as np

    keep = (true < k) & np.isfinite(proba).all(axis=1)
    true, proba = true[keep], proba[keep]
    out: dict[str, float] = {}
    if true.size == 0:
        return out
    picked = np.clip(proba[np.arange(true.size), true], _EPS, 1 - _EPS)
    totals = proba.sum(axis=1)
    picked = np.clip(picked / np.where(totals > 0, totals, 1.0), _EPS, 1 - _EPS)
    out["log_loss"] = float(-np.log(picked).mean())
    if k == 2:
        auc = _auc(true == 1, proba[:, 1])
        if auc is not None:
            out["roc_auc"] = auc
        return out
    aucs = [_auc(true == c, proba[:, c]) for c in range(k)]
    defined = [a for a in aucs if a is not None]
    if len(defined) == k:
        out["roc_auc"] = float(np.mean(defined))
    return out


def _auc(positive: np.ndarray, score: np.ndarray) -> float | None:
    """ROC AUC by the rank-sum (Mann-Whitney) formula, ties averaged; None with one class.

    One sort: the positives' rank sum is taken per group of equal scores, each group
    counting its average rank (as ``scipy.stats.rankdata`` gives, without its cost)."""
    import numpy as np

    n_pos = int(positive.sum())
    n_neg = int(positive.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score)  # ties are grouped below: no stable sort needed
    ordered = score[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], ordered.size]
    average_rank = (starts + 1 + ends) / 2.0
    positives = np.add.reduceat(positive[order].astype(np.int64), starts)
    rank_sum = float(np.dot(average_rank, positives))
    return float((rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def regression_scores(y_true: Any, y_pred: Any) -> dict[str, float]:
    """RMSE, MAE and R² (R² left out when the outcomes do not vary); rows where either side
    is missing are left out."""
    import numpy as np

    true = np.asarray(y_true, dtype=float)
    pred = np.asarray(y_pred, dtype=float)
    keep = np.isfinite(true) & np.isfinite(pred)
    true, pred = true[keep], pred[keep]
    if true.size == 0:
        return {}
    error = pred - true
    out = {
        "rmse": float(np.sqrt(np.mean(error**2))),
        "mae": float(np.mean(np.abs(error))),
    }
    spread = float(np.sum((true - true.mean()) ** 2))
    if spread > 0:
        out["r2"] = float(1 - np.sum(error**2) / spread)
    return out
