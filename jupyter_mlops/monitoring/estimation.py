"""Classifier performance estimated before the labels arrive (confidence-based estimation).

Labels come late (a default months later, a chargeback in weeks), but a classifier says how
sure it is of every prediction. If its probabilities are calibrated (of the rows it gives
0.8, 80% are right), the expected accuracy of a window is the mean probability of the
predicted classes, and the expected confusion matrix, F1 and ROC AUC follow the same way.
This is NannyML's CBPE (confidence-based performance estimation), reproduced to agree with
NannyML 0.13 within 0.01 (tests/test_estimation_nannyml.py) and vectorized with numpy:

- :func:`fit_estimator` takes labelled reference rows (probabilities, true classes) and
  decides, per class, whether isotonic calibration is needed and fits it (NannyML's rule and
  cross-validation: ``monitoring.calibration``). Binary: one calibrator of the second class's
  probability. Multiclass: one per class (one-vs-rest), rows renormalised to sum to 1.
- :meth:`Estimator.estimate` takes the probabilities of a window without labels and gives
  ``estimated_accuracy`` (the mean calibrated probability of the predicted class) with its
  band ``estimated_accuracy_low``/``_high``: the estimate +- 3 standard errors, the standard
  error being the standard deviation of correctness on the reference over sqrt(n rows), as
  NannyML's sampling error (clipped to [0, 1]); ``estimated_f1`` (macro, as the realised
  ``f1`` of ``predlog.scores``: per class, TP is the sum of calibrated probabilities of
  the rows predicted as it, FP the sum of their complements, FN the class's probabilities
  on the other rows) and ``estimated_roc_auc`` (the ROC curve of the model's own scores
  with each row counted as a positive by its calibrated probability and as a negative by
  the rest; multiclass: the mean one-vs-rest).

Assumptions, which the estimate cannot check: **no concept drift** (the relation between
inputs and outcome is the one of the reference; only the inputs may shift, covariate
shift, which is what this tracks), and **calibrated probabilities after calibration** (the
reference is large and like production enough for the isotonic map to hold where the
window's scores fall). A window whose labels then arrive shows the realised value next to
the estimate; a gap beyond the band is the sign that an assumption broke (usually concept
drift). The band covers sampling error only, not a broken assumption.

Regressors: nothing is estimated. A regressor gives one number per row and no spread, so
there is no confidence to turn into an expected error; NannyML's way (DLE: a second model
trained on the reference to predict each row's error) needs the input features and a model
fitted per deployment. Their realised RMSE/MAE/R2 come with the outcomes instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.calibration import (
    Calibrator,
    calibrate,
    calibrator_if_needed,
    roc_auc,
)

if TYPE_CHECKING:
    import numpy as np

__all__ = ["ESTIMATED", "MIN_REFERENCE_ROWS", "Estimator", "fit_estimator", "proba_matrix"]

#: Fewer labelled reference rows than this cannot calibrate nor judge calibration.
MIN_REFERENCE_ROWS = 20
#: What :meth:`Estimator.estimate` can give (each as ``estimated_<name>``).
ESTIMATED = ("accuracy", "f1", "roc_auc")
#: The band is the estimate +- this many standard errors (NannyML's SAMPLING_ERROR_RANGE).
BAND_SE = 3.0


@dataclass(frozen=True)
class Estimator:
    """Calibration fitted on a labelled reference, ready to estimate unlabelled windows.

    ``calibrators`` holds one isotonic map per calibrated column (binary: the second class
    only; multiclass: every class), None where NannyML's rule found calibration not needed.
    """

    classes: tuple[Any, ...]
    calibrators: tuple[Calibrator | None, ...]
    n_reference: int
    reference_accuracy: float
    accuracy_std: float

    @property
    def binary(self) -> bool:
        return len(self.classes) == 2

    @property
    def calibrated(self) -> dict[str, bool]:
        """Which classes' probabilities are recalibrated (binary: the second class)."""
        names = self.classes[1:] if self.binary else self.classes
        return {str(c): cal is not None for c, cal in zip(names, self.calibrators, strict=True)}

    def calibrate(self, proba: Any) -> np.ndarray:
        """Calibrated probabilities (rows x classes) of ``proba`` (rows x classes)."""
        import numpy as np

        raw = proba_matrix(proba, self.classes)
        if self.binary:
            (cal,) = self.calibrators
            second = raw[:, 1] if cal is None else calibrate(cal, raw[:, 1])
            return np.column_stack([1.0 - second, second])
        out = np.column_stack(
            [
                raw[:, j] if cal is None else calibrate(cal, raw[:, j])
                for j, cal in enumerate(self.calibrators)
            ]
        )
        total = out.sum(axis=1, keepdims=True)
        uniform = np.full_like(out, 1.0 / out.shape[1])
        calibrated: np.ndarray = np.divide(out, total, out=uniform, where=total != 0)
        return calibrated

    def estimate(
        self, proba: Any, y_pred: Any = None, *, metrics: Sequence[str] | None = None
    ) -> dict[str, float]:
        """Estimated accuracy (with its band), macro F1 and ROC AUC of the rows of ``proba``
        (rows x classes: an array in ``classes`` order or a frame with ``proba_<class>``
        columns), whose predicted classes are ``y_pred`` (default: the most probable class).

        ``metrics`` limits the work to some of ``accuracy``, ``f1``, ``roc_auc`` (default:
        all; accuracy is always given). Rows with a missing probability are left out; ``n``
        says how many were used.
        """
        import numpy as np

        raw = proba_matrix(proba, self.classes)
        keep = np.isfinite(raw).all(axis=1)
        pred = self._predicted(raw, y_pred)
        if not keep.all():
            raw, pred = raw[keep], pred[keep]
        n = int(raw.shape[0])
        if n == 0:
            return {"n": 0}
        cal = self.calibrate(raw)
        k = len(self.classes)
        known = pred >= 0
        code = pred if known.all() else np.where(known, pred, 0)
        # The chance each row is right: the calibrated probability of its predicted class
        # (0 for a predicted label the model's classes do not hold).
        right = np.take_along_axis(cal, code[:, None], axis=1)[:, 0]
        if not known.all():
            right = np.where(known, right, 0.0)
        accuracy = float(right.mean())
        se = self.accuracy_std / np.sqrt(n)
        out = {
            "n": n,
            "estimated_accuracy": accuracy,
            "estimated_accuracy_low": float(max(0.0, accuracy - BAND_SE * se)),
            "estimated_accuracy_high": float(min(1.0, accuracy + BAND_SE * se)),
        }
        wanted = ESTIMATED if metrics is None else tuple(metrics)
        if "f1" in wanted:
            out["estimated_f1"] = _macro_f1(cal, code, right, known)
        if "roc_auc" in wanted:
            columns = [1] if self.binary else range(k)
            aucs = [roc_auc(raw[:, j], cal[:, j]) for j in columns]
            if all(a is not None for a in aucs):
                out["estimated_roc_auc"] = float(np.mean([a for a in aucs if a is not None]))
        return out

    def _predicted(self, raw: np.ndarray, y_pred: Any) -> np.ndarray:
        """Predicted classes as column codes (-1: a label outside ``classes``)."""
        import numpy as np

        if y_pred is None:
            return np.asarray(np.argmax(np.nan_to_num(raw, nan=-1.0), axis=1), dtype=np.int64)
        return _codes(y_pred, self.classes, raw.shape[0])


def _macro_f1(cal: np.ndarray, code: np.ndarray, right: np.ndarray, known: np.ndarray) -> float:
    """Expected macro F1: per class, TP = calibrated probabilities of the rows predicted as
    it (``right``), FP = their complements, FN = its probabilities on the other rows."""
    import numpy as np

    k = cal.shape[1]
    weight = known.astype(float)
    predicted_count = np.bincount(code, weights=weight, minlength=k)
    tp = np.bincount(code, weights=right, minlength=k)  # right is 0 on unknown predictions
    fp = predicted_count - tp
    fn = cal.sum(axis=0) - tp
    denominator = tp + 0.5 * (fp + fn)
    return float(np.divide(tp, denominator, out=np.zeros(k), where=denominator > 0).mean())


def fit_estimator(
    reference_proba: Any,
    reference_y: Any,
    classes: Sequence[Any],
    *,
    reference_pred: Any = None,
) -> Estimator:
    """Fit confidence-based estimation on labelled reference rows.

    ``reference_proba``: rows x ``classes`` probabilities (an array in ``classes`` order, or
    a frame with ``proba_<class>`` columns); ``reference_y``: each row's true class;
    ``reference_pred``: the model's predicted classes (default: the most probable). Rows
    with a missing probability or label are left out. Raises :class:`MonitoringError` when
    fewer than ``MIN_REFERENCE_ROWS`` labelled rows remain.
    """
    import numpy as np

    classes = tuple(classes)
    if len(classes) < 2:
        raise MonitoringError(
            f"Estimation needs a classifier with at least 2 classes (got {list(classes)})"
        )
    raw = proba_matrix(reference_proba, classes)
    truth = _codes(reference_y, classes, raw.shape[0])
    pred = (
        np.argmax(np.nan_to_num(raw, nan=-1.0), axis=1)
        if reference_pred is None
        else _codes(reference_pred, classes, raw.shape[0])
    )
    if truth.size and (truth < 0).all():
        seen = ", ".join(str(v) for v in list(dict.fromkeys(np.asarray(reference_y).ravel()))[:5])
        raise MonitoringError(
            f"None of the reference labels ({seen}) is a class of the model "
            f"({', '.join(str(c) for c in classes)})"
        )
    keep = np.isfinite(raw).all(axis=1) & (truth >= 0)
    if not keep.all():
        raw, truth, pred = raw[keep], truth[keep], pred[keep]
    if truth.size < MIN_REFERENCE_ROWS:
        raise MonitoringError(
            f"The reference has {truth.size} labelled rows with probabilities; estimation "
            f"needs at least {MIN_REFERENCE_ROWS}"
        )
    columns = [1] if len(classes) == 2 else range(len(classes))
    calibrators = []
    for j in columns:
        calibrators.append(calibrator_if_needed(raw[:, j], (truth == j).astype(np.int64)))
    correct = (truth == pred).astype(float)
    return Estimator(
        classes=classes,
        calibrators=tuple(calibrators),
        n_reference=int(truth.size),
        reference_accuracy=float(correct.mean()),
        accuracy_std=float(correct.std()),
    )


def proba_matrix(proba: Any, classes: Sequence[Any]) -> np.ndarray:
    """Probabilities as a float array of rows x ``classes``: from an array (columns in
    ``classes`` order; binary also one column, the second class's probability) or a frame
    (``proba_<class>`` columns, as prediction-log and outcome frames have, or columns named
    by the classes)."""
    import numpy as np

    k = len(classes)
    if hasattr(proba, "columns"):
        names = [str(c) for c in proba.columns]
        wanted = [f"proba_{c}" for c in classes]
        if not all(w in names for w in wanted):
            wanted = [str(c) for c in classes]
        missing = [w for w in wanted if w not in names]
        if missing:
            raise MonitoringError(
                f"No probabilities of class(es) {', '.join(missing)} (columns proba_<class>): "
                "estimation needs a model that gives predict_proba"
            )
        lookup = {str(c): c for c in proba.columns}
        matrix = proba[[lookup[w] for w in wanted]].to_numpy(dtype=float)
    else:
        matrix = np.asarray(proba, dtype=float)
    matrix = cast("np.ndarray", matrix)
    if matrix.ndim == 1 and k == 2:
        matrix = np.column_stack([1.0 - matrix, matrix])
    if matrix.ndim != 2 or matrix.shape[1] != k:
        raise MonitoringError(
            f"Probabilities of shape {matrix.shape} do not fit {k} classes {list(classes)}"
        )
    return matrix


def _codes(labels: Any, classes: Sequence[Any], n: int) -> np.ndarray:
    """Labels as column codes of ``classes`` (matched as text, so 1, "1" and 1.0 agree;
    -1 for a label outside them or missing)."""
    import numpy as np
    import pandas as pd

    values = np.asarray(labels).reshape(-1)
    if values.size != n:
        raise MonitoringError(f"{values.size} labels for {n} rows of probabilities")
    if values.dtype.kind == "b":  # True/False labels, classes named "True"/"False"
        values = np.where(values, "True", "False")
    if values.dtype.kind in "iufUS":
        # Numbers or fixed-width text: one vectorized comparison per class.
        codes = np.full(n, -1, dtype=np.int64)
        numeric = values.dtype.kind in "iuf"
        for j, c in enumerate(classes):
            wanted = _label_number(c) if numeric else _label_text(c)
            if wanted is not None:
                codes[(codes < 0) & (values == wanted)] = j
        return codes
    # Python objects: each distinct label matched once (a hash factorisation), then spread.
    found, uniques = pd.factorize(values, use_na_sentinel=True)
    index = {_label_text(c): i for i, c in enumerate(classes)}
    lookup = np.array([index.get(_label_text(u), -1) for u in uniques] + [-1], dtype=np.int64)
    return lookup[found]  # the sentinel -1 (missing) picks the trailing -1


def _label_number(value: Any) -> float | None:
    """A class as a number, for numeric labels (1, 1.0 and "1" alike), or None."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _label_text(value: Any) -> Any:
    """A label as comparable text: 1, 1.0 and "1" are one label; missing stays missing."""
    import numpy as np

    if value is None or (isinstance(value, float | np.floating) and value != value):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)
