"""The evidence behind a canary decision: each role's labelled rows, and the tests that say
whether a difference between them is more than chance.

:func:`sides` turns an outcome frame (the columns of ``read_outcomes``) into one
:class:`Side` per role; :func:`p_value` tests one comparison of a figure between the roles
(or of a role's figure with a number), one-sided in the direction asserted:

- accuracy, error_rate (rates): a two-proportion z-test (against a number: one-proportion);
- mae, rmse and the mean of an outcome column: Welch's t-test on the per-row values
  (absolute errors; squared errors for rmse, which order the sides as the rmse does);
  against a number, a one-sample t-test;
- f1, precision, recall: a bootstrap of the confusion matrices (multinomial resamples, so a
  resample costs k x k, not a pass over the rows);
- roc_auc, log_loss, r2: a bootstrap of the rows.

Scores come from :mod:`jupyter_mlops.predlog.scores`, as monitoring's do.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jupyter_mlops.predlog.scores import classification_scores, matrix_scores, regression_scores

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from jupyter_mlops.registry.refs import ModelRef

__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_ROWS", "FIGURES", "Side", "p_value", "sides"]

#: Resamples of a bootstrap; a row bootstrap takes fewer on many rows (at most
#: BOOTSTRAP_ROWS rows scored per comparison, at least 200 resamples).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_ROWS = 400_000
_SEED = 18  # a decision repeated on the same rows gives the same p-value

_RATES = ("accuracy", "error_rate")
_MATRIX = ("f1", "precision", "recall")
_ROW_MEANS = ("mae", "rmse")
#: Every figure a side can have, by task (besides the means of outcome columns).
FIGURES = {
    "classification": ("accuracy", "error_rate", *_MATRIX, "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}
_ALTERNATIVE = {">": "greater", ">=": "greater", "<": "less", "<=": "less", "!=": "two-sided"}
_KNOWN = {
    "request_id", "row", "timestamp", "arrived", "delay_s", "deployment", "model_name",
    "model_version", "run_id", "role", "prediction", "outcome", "endpoint", "latency_ms",
}  # fmt: skip


@dataclass
class Side:
    """One role's labelled rows in the window, as arrays the tests resample."""

    role: str
    model: str
    task: str
    true: np.ndarray  # class codes, or float outcomes
    pred: np.ndarray
    classes: list[str] = field(default_factory=list)  # code -> class (classification)
    proba: np.ndarray | None = None  # rows x classes with probabilities (first columns)
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.true.size)

    def matrix(self) -> np.ndarray:
        import numpy as np

        k = len(self.classes)
        return np.bincount(self.true * k + self.pred, minlength=k * k).reshape(k, k)

    def score(self, metric: str, rows: np.ndarray | None = None) -> float | None:
        """``metric`` on all rows or on ``rows`` (indices, repeats allowed)."""
        if metric in self.extras:
            values = self.extras[metric] if rows is None else self.extras[metric][rows]
            return float(values.mean()) if values.size else None
        true, pred = (self.true, self.pred) if rows is None else (self.true[rows], self.pred[rows])
        if self.task == "regression":
            return regression_scores(true, pred).get(metric)
        if metric == "error_rate":
            return 1.0 - float((true == pred).mean()) if true.size else None
        proba = None
        if self.proba is not None:
            proba = self.proba if rows is None else self.proba[rows]
        k = self.proba.shape[1] if self.proba is not None else len(self.classes)
        scores = classification_scores(true, pred, proba=proba, classes=list(range(k)))
        return scores.get(metric)

    def figures(self) -> dict[str, float]:
        names = ("rmse", "mae", "r2") if self.task == "regression" else _class_names(self)
        out = {m: self.score(m) for m in (*names, *self.extras)}
        return {m: v for m, v in out.items() if v is not None}

    def values(self, metric: str) -> np.ndarray:
        """Per-row values whose mean orders the sides as ``metric`` does."""
        import numpy as np

        if metric in self.extras:
            return self.extras[metric]
        if metric in _RATES:
            correct = np.asarray(self.true == self.pred, dtype=float)
            return correct if metric == "accuracy" else 1.0 - correct
        error = np.asarray(self.pred - self.true, dtype=float)
        return np.asarray(np.abs(error) if metric == "mae" else error * error, dtype=float)


def _class_names(side: Side) -> tuple[str, ...]:
    names = ("accuracy", "error_rate", *_MATRIX)
    return (*names, "roc_auc", "log_loss") if side.proba is not None else names


def sides(frame: pd.DataFrame, primary: ModelRef, canary: ModelRef) -> dict[str, Side]:
    """The primary's and the canary's labelled rows of an outcome frame (the columns of
    ``read_outcomes``); rows of other model versions are left out."""
    import numpy as np
    import pandas as pd

    proba_cols = [c for c in frame.columns if str(c).startswith("proba_")]
    classes_p = [str(c)[len("proba_") :] for c in proba_cols]
    extras = [
        c
        for c in frame.columns
        if c not in _KNOWN and c not in proba_cols and pd.api.types.is_numeric_dtype(frame[c])
    ]
    task = _task(frame, bool(proba_cols))
    if task == "classification":
        true_s, pred_s = _label_text(frame["outcome"]), _label_text(frame["prediction"])
        seen = set(true_s.unique()) | set(pred_s.unique())
        classes = classes_p + sorted(seen - set(classes_p))
        true = pd.Categorical(true_s, categories=classes).codes.astype(np.int64)
        pred = pd.Categorical(pred_s, categories=classes).codes.astype(np.int64)
        keep = np.ones(len(frame), dtype=bool)
    else:
        classes = []
        true = pd.to_numeric(frame["outcome"], errors="coerce").to_numpy(dtype=float)
        pred = pd.to_numeric(frame["prediction"], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(true) & np.isfinite(pred)
    out = {}
    for role, ref in (("primary", primary), ("canary", canary)):
        rows = keep & (frame["role"] == role).to_numpy()
        rows &= (frame["model_version"].astype(str) == str(ref.version)).to_numpy()
        if ref.name and "model_name" in frame:
            rows &= (frame["model_name"].astype(str) == ref.name).to_numpy()
        proba = frame.loc[rows, proba_cols].to_numpy(dtype=float) if proba_cols else None
        out[role] = Side(
            role, ref.label, task, true[rows], pred[rows], classes, proba,
            {c: frame.loc[rows, c].dropna().to_numpy(dtype=float) for c in extras},
        )  # fmt: skip
    return out


def _label_text(labels: pd.Series) -> pd.Series:
    """Class labels as text, whole numbers without a fraction (1.0 and 1 are class "1", as a
    ``proba_1`` column names it)."""
    import numpy as np
    import pandas as pd

    text = labels.astype(str)
    numbers = pd.to_numeric(labels, errors="coerce")
    flags = labels.map(lambda v: isinstance(v, bool | np.bool_)).astype(bool)
    whole = numbers.notna() & (np.mod(numbers.fillna(0.5), 1) == 0) & ~flags
    text[whole] = numbers[whole].astype("int64").astype(str)
    return text


def _task(frame: pd.DataFrame, has_proba: bool) -> str:
    """classification (probabilities, or labels) or regression (numbers not all whole)."""
    import numpy as np
    import pandas as pd

    if has_proba or frame.empty:
        return "classification"
    numbers = [pd.to_numeric(frame[c], errors="coerce") for c in ("prediction", "outcome")]
    if any(n.isna().any() for n in numbers) or frame["prediction"].dtype == bool:
        return "classification"
    whole = all(bool(np.all(np.mod(n.to_numpy(dtype=float), 1) == 0)) for n in numbers)
    return "classification" if whole else "regression"


def p_value(metric: str, a: Side, b: Side | None, constant: float, op: str) -> tuple[float, str]:
    """The p-value of ``metric`` of ``a`` ``op`` (>, >=, <, <=, !=) that of ``b`` (or
    ``constant``) against no difference, and the test's name."""
    alt = _ALTERNATIVE[op]
    if metric in _RATES or metric in _ROW_MEANS or metric in a.extras:
        x = a.values(metric)
        y = b.values(metric) if b is not None else None
        if metric in _RATES:
            return _z_test(x, y, constant, alt)
        if metric == "rmse" and y is None:
            constant *= abs(constant)  # squared errors against rmse squared
        return _welch(x, y, constant, alt)
    return _bootstrap(metric, a, b, constant, alt)


def _tail(z: float, alt: str) -> float:
    from scipy.stats import norm

    if alt == "greater":
        return float(norm.sf(z))
    if alt == "less":
        return float(norm.cdf(z))
    return float(2 * norm.sf(abs(z)))


def _z_test(x: np.ndarray, y: np.ndarray | None, p0: float, alt: str) -> tuple[float, str]:
    if y is None:
        p, se = float(x.mean()), math.sqrt(max(p0 * (1 - p0), 0.0) / x.size)
        name = "one-proportion z-test"
        diff = p - p0
    else:
        pooled = (x.sum() + y.sum()) / (x.size + y.size)
        se = math.sqrt(pooled * (1 - pooled) * (1 / x.size + 1 / y.size))
        diff, name = float(x.mean() - y.mean()), "two-proportion z-test"
    if se == 0:  # no spread: the difference is certain, or there is none
        return (0.0 if _certain(diff, alt) else 1.0), name
    return _tail(diff / se, alt), name


def _certain(diff: float, alt: str) -> bool:
    return diff > 0 if alt == "greater" else diff < 0 if alt == "less" else diff != 0


def _welch(x: np.ndarray, y: np.ndarray | None, c: float, alt: str) -> tuple[float, str]:
    import numpy as np
    from scipy.stats import ttest_1samp, ttest_ind

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # no spread: a NaN, judged below
        if y is None:
            p, name = float(ttest_1samp(x, c, alternative=alt).pvalue), "one-sample t-test"
            diff = float(x.mean() - c)
        else:
            p = float(ttest_ind(x, y, equal_var=False, alternative=alt).pvalue)
            diff, name = float(x.mean() - y.mean()), "Welch t-test"
    if math.isnan(p):  # too few rows to say (no evidence), or no spread at all (certain)
        few = x.size < 2 or (y is not None and y.size < 2)
        p = 0.0 if not few and _certain(diff, alt) else 1.0
    return p, name


def _bootstrap(metric: str, a: Side, b: Side | None, c: float, alt: str) -> tuple[float, str]:
    """Resample each side (confusion matrices for F1/precision/recall, rows otherwise) and
    count the resamples on the wrong side of no difference."""
    import numpy as np

    rng = np.random.default_rng(_SEED)
    rows = a.n + (b.n if b is not None else 0)
    resamples = max(200, min(BOOTSTRAP_RESAMPLES, BOOTSTRAP_ROWS // max(rows, 1)))

    def resampled(side: Side) -> np.ndarray:
        if metric in _MATRIX:
            k = len(side.classes)
            cells = side.matrix().ravel() / side.n
            draws = rng.multinomial(side.n, cells, size=BOOTSTRAP_RESAMPLES)
            return np.array([matrix_scores(d.reshape(k, k))[metric] for d in draws])
        values = [side.score(metric, rng.integers(0, side.n, side.n)) for _ in range(resamples)]
        return np.array([np.nan if v is None else v for v in values], dtype=float)

    diff = resampled(a) - (resampled(b) if b is not None else c)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return 1.0, "bootstrap (no resample defined the figure)"
    below, above = (
        (1 + np.sum(diff <= 0)) / (diff.size + 1),
        (1 + np.sum(diff >= 0)) / (diff.size + 1),
    )
    p = below if alt == "greater" else above if alt == "less" else min(1.0, 2 * min(below, above))
    return float(p), f"bootstrap ({diff.size} resamples)"
