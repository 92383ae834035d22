"""A regressor's error estimated before its labels arrive (DLE, issue #18): the estimated
MAE and RMSE follow the realised ones as the inputs shift into regions where the model errs
more, and stay put on an unshifted window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.estimation_regression import fit_error_estimator


def _draw(n: int, shift: float, seed: int) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """A regressor right on average whose error grows with |x| (twice as fast for kind b)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(shift, 1, n)
    z = rng.normal(0, 1, n)
    kind = rng.choice(["a", "b"], n)
    spread = 0.3 + np.abs(x) * (1 + (kind == "b"))
    y = 2 * x + z + rng.normal(0, 1, n) * spread
    return pd.DataFrame({"x": x, "z": z, "kind": kind}), 2 * x + z, y


def test_estimated_error_tracks_covariate_shift() -> None:
    inputs, pred, y = _draw(3_000, 0.0, 1)
    estimator = fit_error_estimator(inputs, pred, y)
    found = []
    for shift in (0.0, 1.0, 2.0):
        window, window_pred, window_y = _draw(3_000, shift, 2)
        result = estimator.estimate(window, window_pred)
        mae = float(np.mean(np.abs(window_pred - window_y)))
        rmse = float(np.sqrt(np.mean((window_pred - window_y) ** 2)))
        assert result["n"] == 3_000
        assert abs(result["estimated_mae"] - mae) <= 0.1 * mae
        assert abs(result["estimated_rmse"] - rmse) <= 0.15 * rmse
        assert result["estimated_mae_low"] < result["estimated_mae"] < result["estimated_mae_high"]
        found.append((result["estimated_mae"], mae))
    (still, still_real), _, (far, far_real) = found
    assert far_real > 1.8 * still_real  # the shift matters...
    assert far > 1.8 * still  # ...and the estimate sees it
    # An unseen category and a missing value are inputs like others, not failures.
    odd = window.assign(kind="c")
    odd.loc[0, "x"] = np.nan
    assert estimator.estimate(odd, window_pred)["n"] == 3_000


def test_error_estimation_errors() -> None:
    inputs, pred, y = _draw(50, 0.0, 1)
    with pytest.raises(MonitoringError, match="at least 100"):
        fit_error_estimator(inputs, pred, y)
    inputs, pred, y = _draw(500, 0.0, 1)
    with pytest.raises(MonitoringError, match="no input column"):
        fit_error_estimator(inputs, pred, y, columns=["x", "w"])
    estimator = fit_error_estimator(inputs, pred, y)
    with pytest.raises(MonitoringError, match="window has no input column"):
        estimator.estimate(inputs.drop(columns=["z"]), pred)
