"""A regressor's error estimated before the labels arrive (direct loss estimation, DLE).

A regressor gives one number per row and no confidence, so confidence-based estimation
(``monitoring.estimation``) has nothing to work with. NannyML's answer is DLE: on labelled
reference rows, a second model learns the size of the first one's error from the same
inputs (and its prediction); on a window without labels, the mean of its predicted errors
is the estimated MAE, and the root of the mean predicted squared error the estimated RMSE.
Here the second model is scikit-learn's ``HistGradientBoostingRegressor`` (NannyML uses
LightGBM); inputs are the numeric columns, text columns as category codes of the
reference's categories.

Assumptions, as for classifiers: no concept drift (the relation between inputs and outcome,
and so between inputs and error, is the reference's; only the inputs may shift), and
enough reference rows where the window's inputs fall. The band is the estimate +- 3
standard errors (the standard deviation of the reference's absolute errors over sqrt(n)).

It needs the inputs of every reference and window row: a table, not the outcome store
alone (which keeps predictions and labels), so ``%monitor --estimate`` does not call it;
use it from Python on a scored holdout and the logged inputs
(``predlog.read_predictions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

__all__ = ["ErrorEstimator", "fit_error_estimator"]

#: Fewer labelled reference rows than this cannot teach the error model.
MIN_ROWS = 100
BAND_SE = 3.0


@dataclass(frozen=True)
class ErrorEstimator:
    """Two fitted error models (absolute and squared error) and the reference's spread."""

    columns: tuple[str, ...]
    categories: dict[str, tuple[Any, ...]]
    absolute: Any
    squared: Any
    n_reference: int
    abs_error_std: float

    def estimate(self, inputs: pd.DataFrame, y_pred: Any) -> dict[str, float]:
        """``estimated_mae`` (with ``_low``/``_high``) and ``estimated_rmse`` of a window's
        predictions ``y_pred`` made from ``inputs`` (the reference's columns)."""
        import numpy as np

        features = _features(inputs, self.columns, self.categories, y_pred)
        n = int(features.shape[0])
        if n == 0:
            return {"n": 0}
        mae = float(np.mean(np.clip(self.absolute.predict(features), 0.0, None)))
        mse = float(np.mean(np.clip(self.squared.predict(features), 0.0, None)))
        se = self.abs_error_std / np.sqrt(n)
        return {
            "n": n,
            "estimated_mae": mae,
            "estimated_mae_low": float(max(0.0, mae - BAND_SE * se)),
            "estimated_mae_high": float(mae + BAND_SE * se),
            "estimated_rmse": float(np.sqrt(mse)),
        }


def fit_error_estimator(
    reference_inputs: pd.DataFrame,
    reference_pred: Any,
    reference_y: Any,
    *,
    columns: Sequence[str] | None = None,
    seed: int = 0,
) -> ErrorEstimator:
    """Fit DLE on labelled reference rows: their ``inputs`` (a frame; ``columns`` to pick
    some), the regressor's predictions and the true values."""
    import numpy as np
    import pandas as pd
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    names = tuple(str(c) for c in (columns if columns is not None else reference_inputs.columns))
    missing = [c for c in names if c not in reference_inputs.columns]
    if missing:
        raise MonitoringError(f"The reference has no input column(s) {', '.join(missing)}")
    truth = np.asarray(reference_y, dtype=float)
    pred = np.asarray(reference_pred, dtype=float)
    keep = np.isfinite(truth) & np.isfinite(pred)
    if int(keep.sum()) < MIN_ROWS:
        raise MonitoringError(
            f"The reference has {int(keep.sum())} labelled rows; error estimation needs at "
            f"least {MIN_ROWS}"
        )
    rows = reference_inputs.loc[keep, list(names)]
    categories = {
        c: tuple(rows[c].astype("category").cat.categories)
        for c in names
        if not pd.api.types.is_numeric_dtype(rows[c].dtype)
    }
    features = _features(rows, names, categories, pred[keep])
    error = pred[keep] - truth[keep]

    def model(target: np.ndarray) -> Any:
        # One thread: small models, and OpenMP threads fight over a busy machine's cores.
        with threadpool_limits(1):
            return HistGradientBoostingRegressor(max_iter=100, random_state=seed).fit(
                features, target
            )

    return ErrorEstimator(
        columns=names,
        categories=categories,
        absolute=model(np.abs(error)),
        squared=model(error**2),
        n_reference=int(keep.sum()),
        abs_error_std=float(np.abs(error).std()),
    )


def _features(
    inputs: pd.DataFrame,
    columns: Sequence[str],
    categories: dict[str, tuple[Any, ...]],
    pred: Any,
) -> np.ndarray:
    """The error model's inputs: the columns as floats (text as reference category codes,
    -1 for an unseen one) and the prediction last."""
    import numpy as np
    import pandas as pd

    missing = [c for c in columns if c not in inputs.columns]
    if missing:
        raise MonitoringError(f"The window has no input column(s) {', '.join(missing)}")
    out = []
    for c in columns:
        if c in categories:
            index = {value: float(i) for i, value in enumerate(categories[c])}
            out.append(inputs[c].map(index).fillna(-1.0).to_numpy(dtype=float))
        else:
            out.append(pd.to_numeric(inputs[c], errors="coerce").to_numpy(dtype=float))
    out.append(np.asarray(pred, dtype=float).reshape(-1))
    if len({len(v) for v in out}) != 1:
        raise MonitoringError("The predictions and the input rows differ in number")
    return np.column_stack(out)
