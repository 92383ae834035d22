"""Where a deployment's performance estimate is calibrated from: its labelled reference.

Confidence-based estimation (``monitoring.estimation``) calibrates a model's probabilities
on rows whose true class is known. For a deployment these are, by default, its own
labelled predictions: the outcomes recorded for the **same model version** (another version
has other probabilities) **before the analysed window** (the estimate must not see the
labels of the rows it estimates). Or the caller gives the reference: a DataFrame or a
CSV/Parquet path with ``proba_<class>`` columns and a target column (a holdout set scored
by the model, say).

Frames are the prediction log's and the outcome store's: ``proba_<class>`` columns (one per
class, the model's ``predict_proba``), ``prediction`` (the predicted class), ``outcome``
(the true class), ``model_version``, ``timestamp`` (prediction time, UTC).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.estimation import Estimator, fit_estimator

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = ["PROBA_PREFIX", "estimator_for", "estimator_from_frame", "frame_classes", "labelled"]

#: Columns of class probabilities in prediction-log and outcome frames.
PROBA_PREFIX = "proba_"
_TARGETS = ("outcome", "target", "y_true", "label", "y")


def frame_classes(frame: pd.DataFrame, *, what: str = "The reference") -> list[str]:
    """The classes whose probabilities ``frame`` holds (its ``proba_<class>`` columns, in
    order); a one-line :class:`MonitoringError` when it has none."""
    classes = [
        str(c)[len(PROBA_PREFIX) :] for c in frame.columns if str(c).startswith(PROBA_PREFIX)
    ]
    if not classes:
        raise MonitoringError(
            f"{what} has no predicted probabilities (no proba_<class> columns): performance is "
            "estimated only for classifiers that give predict_proba"
        )
    if len(classes) < 2:
        raise MonitoringError(f"{what} has probabilities of one class only ({classes[0]})")
    return classes


def labelled(
    outcomes: pd.DataFrame,
    *,
    model_version: Any = None,
    before: Any = None,
    target: str = "outcome",
) -> pd.DataFrame:
    """The rows of an outcome frame usable as a reference: of ``model_version`` (when
    given), predicted before ``before`` (a datetime, ISO text or epoch seconds; when given),
    with a label and every probability (none without ``proba_<class>`` columns)."""
    rows = _of_version(outcomes, model_version, before, target)
    proba = [c for c in rows.columns if str(c).startswith(PROBA_PREFIX)]
    return rows[rows[proba].notna().all(axis=1)] if proba else rows.iloc[:0]


def _of_version(
    outcomes: pd.DataFrame, model_version: Any, before: Any, target: str
) -> pd.DataFrame:
    """The labelled rows of ``model_version`` predicted before ``before``, probabilities
    or not."""
    import pandas as pd

    rows = outcomes
    if model_version is not None and "model_version" in rows.columns:
        rows = rows[rows["model_version"].astype(str) == str(model_version)]
    if before is not None and "timestamp" in rows.columns:
        rows = rows[pd.to_datetime(rows["timestamp"], utc=True) < _moment(before)]
    return rows[rows[target].notna()] if target in rows.columns else rows


def estimator_from_frame(
    frame: pd.DataFrame | str | os.PathLike[str],
    *,
    target: str | None = None,
    prediction: str = "prediction",
    classes: Sequence[Any] | None = None,
) -> Estimator:
    """Fit estimation on a labelled table: ``proba_<class>`` columns, a target column
    (``target``, or the first of outcome/target/y_true/label/y present) and optionally the
    predicted class (``prediction``; default the most probable class)."""
    from jupyter_mlops.monitoring.reference import read_table

    table = read_table(frame) if isinstance(frame, str | os.PathLike) else frame
    what = f"The reference {frame}" if isinstance(frame, str | os.PathLike) else "The reference"
    names = list(classes) if classes is not None else frame_classes(table, what=what)
    if target is None:
        target = next((t for t in _TARGETS if t in table.columns), None)
        if target is None:
            raise MonitoringError(
                f"{what} has no target column (one of {', '.join(_TARGETS)}, or name it "
                "with target=): estimation is calibrated on labelled rows"
            )
    elif target not in table.columns:
        raise MonitoringError(f"{what} has no target column {target!r}")
    rows = labelled(table, target=target)
    pred = rows[prediction] if prediction in rows.columns else None
    return fit_estimator(
        rows[[f"{PROBA_PREFIX}{c}" for c in names]].to_numpy(dtype=float),
        rows[target].to_numpy(),
        names,
        reference_pred=None if pred is None else pred.to_numpy(),
    )


def estimator_for(
    deployment: str,
    *,
    model_version: Any,
    before: Any = None,
    reference: pd.DataFrame | str | os.PathLike[str] | None = None,
    target: str | None = None,
    outcomes: pd.DataFrame | None = None,
    config: Config | None = None,
) -> Estimator:
    """The estimator of ``deployment``'s ``model_version``: fitted on ``reference`` when
    given, else on the version's labelled predictions from before ``before`` (the start of
    the analysed window). ``outcomes`` is the deployment's outcome frame when the caller
    has already read it (else it is read from the outcome store)."""
    if reference is not None:
        return estimator_from_frame(reference, target=target)
    if outcomes is None:
        outcomes = _read_outcomes(deployment, until=before, config=config)
    version = f"{deployment} v{model_version}"
    target = target or "outcome"
    mine = labelled(outcomes, model_version=model_version, before=before, target=target)
    if len(mine) == 0:
        when = f" before {_moment(before).isoformat()}" if before is not None else ""
        if len(_of_version(outcomes, model_version, before, target)):
            raise MonitoringError(
                f"{version} logged no probabilities (its model has no predict_proba): there "
                "is nothing to estimate performance from"
            )
        raise MonitoringError(
            f"No labelled predictions of {version}{when} to calibrate the estimate on: "
            "record outcomes (record_outcomes, POST /feedback) or pass reference= a table "
            "with proba_<class> columns and a target column"
        )
    try:
        return estimator_from_frame(mine, target=target)
    except MonitoringError as exc:  # too few rows, labels that are not classes: say whose
        message = str(exc)
        raise MonitoringError(f"{version}: {message[:1].lower()}{message[1:]}") from None


def _read_outcomes(deployment: str, *, until: Any, config: Config | None) -> pd.DataFrame:
    """The deployment's labelled predictions from the outcome store (``predlog``)."""
    from jupyter_mlops.predlog import read_outcomes

    return read_outcomes(
        deployment, until=_moment(until) if until is not None else None, config=config
    )


def _moment(value: Any) -> pd.Timestamp:
    """A datetime, ISO text or epoch seconds as a UTC timestamp."""
    import pandas as pd

    if isinstance(value, int | float):
        return pd.Timestamp(value, unit="s", tz="UTC")
    moment = pd.Timestamp(value)
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")
