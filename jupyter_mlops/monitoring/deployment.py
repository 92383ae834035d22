"""Drift of a deployment, with no configuration: its logged inputs against its training data.

The current data is the deployment's prediction log for a window (:mod:`.window`); the
reference is the training data of the deployed model version, through lineage and DVC
(:mod:`.reference`). With the model's predictions logged, they are compared with the
model's predictions on the reference rows (predicted once, cached with the reference).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.drift import drift
from jupyter_mlops.monitoring.feature import FeatureDrift
from jupyter_mlops.monitoring.profile import ReferenceProfile, cached_profile
from jupyter_mlops.monitoring.reference import Reference, deployment_reference
from jupyter_mlops.monitoring.report import DriftReport
from jupyter_mlops.monitoring.verdict import DriftThresholds
from jupyter_mlops.monitoring.window import input_columns, parse_window, predictions_window

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config


def deployment_model(deployment: str, model: str = "primary", config: Config | None = None) -> Any:
    """The ModelRef a deployment serves as ``primary`` or ``canary`` (or a version number)."""
    from jupyter_mlops.serving import get_deployment

    dep = get_deployment(deployment, config=config)
    if model == "primary":
        return dep.primary
    if model == "canary":
        if dep.canary is None:
            raise MonitoringError(f"Deployment {deployment!r} has no canary.")
        return dep.canary
    for ref in (dep.primary, dep.canary):
        if ref is not None and str(ref.version) == str(model).lstrip("v"):
            return ref
    raise MonitoringError(
        f"Deployment {deployment!r} serves no model version {model!r} "
        f"(primary {dep.primary.label}{', canary ' + dep.canary.label if dep.canary else ''})."
    )


def drift_for_deployment(
    deployment: str,
    *,
    last: str | float | None = "1h",
    reference: pd.DataFrame | ReferenceProfile | str | os.PathLike[str] | None = None,
    model: str = "primary",
    prediction: bool = True,
    current: pd.DataFrame | None = None,
    config: Config | None = None,
    **options: Any,
) -> DriftReport:
    """Drift of a deployment's recent inputs (and predictions) against its training data.

    Current data: the prediction log of the last ``last`` (``"1h"``, ``"30m"``, None =
    all), or ``current``. Reference: ``reference`` (a DataFrame, a profile, or a
    CSV/Parquet path), by default the training data of the deployed ``model``
    (``primary``, ``canary`` or a version number) restored from DVC through lineage.
    Reference columns that are not model inputs (the target) are left out. With
    ``prediction``, that model's answers in the window are compared with its answers on the
    reference rows (predicted once, cached with the reference). Other keywords go to
    :func:`drift` (thresholds, ``features``, ``categorical``...).
    """
    from jupyter_mlops.config import load_config

    config = config or load_config()
    ref_model = deployment_model(deployment, model, config)
    frame = current if current is not None else predictions_window(deployment, last, config)
    inputs = input_columns(frame)
    bins = int(options.get("bins", DriftThresholds.bins))
    ref = deployment_reference(reference, ref_model, inputs, bins=bins, config=config)
    notes = []
    dropped = [c for c in ref.profile.columns if c not in inputs]
    if dropped:
        notes.append(f"reference columns that are not model inputs, left out: {', '.join(dropped)}")
    window = f"last {last}" if parse_window(last) is not None else "all"
    cur_info = {
        "deployment": deployment,
        "model": ref_model.name,
        "model_version": ref_model.version,
        "window": window,
        "description": f"{len(frame):,} logged inputs of {deployment} ({window})",
    }
    features = options.pop("features", None) or inputs
    report = drift(
        ref.profile, frame, features=features, reference_info=ref.info, current_info=cur_info,
        **options,
    )  # fmt: skip
    report.notes.extend(notes)
    if prediction and "prediction" in frame.columns:
        report.prediction, why = _prediction_drift(frame, ref_model, ref, inputs, bins, options)
        if why:
            report.notes.append(f"prediction drift not computed: {why}")
    return report


def _prediction_drift(
    frame: pd.DataFrame,
    ref_model: Any,
    ref: Reference,
    inputs: Sequence[str],
    bins: int,
    options: Mapping[str, Any],
) -> tuple[FeatureDrift | None, str | None]:
    """The served model's predictions in the window against its predictions on the reference."""
    rows = ref.rows
    if rows is None:
        return None, "the reference is a profile, without rows to predict on"
    served = frame
    if ref_model.version and "model_version" in frame.columns:
        served = frame[frame["model_version"].astype(str) == str(ref_model.version)]
    if served.empty:
        return None, f"{ref_model.label} answered no request in the window"
    uri_digest = hashlib.sha1(str(ref_model.uri).encode()).hexdigest()[:12]

    def predict() -> pd.DataFrame:
        return _predict_reference(rows(), inputs, ref_model)

    try:
        if ref.key is not None:
            key = f"{ref.key}-pred-{uri_digest}"
            pred = cached_profile(key, bins, ref.cache_dir, predict, None)
        else:
            pred = ReferenceProfile.from_frame(predict(), bins=bins)
    except MonitoringError as exc:
        return None, str(exc)
    report = drift(pred, served[["prediction"]], features=[], prediction="prediction", **options)
    return report.prediction, None


def _predict_reference(table: pd.DataFrame, inputs: Sequence[str], ref_model: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    missing = [c for c in inputs if c not in table.columns]
    if missing:
        raise MonitoringError(f"the reference lacks the model inputs {missing}")
    try:
        import mlflow.pyfunc

        from jupyter_mlops.client import quiet_mlflow

        with quiet_mlflow():
            model = mlflow.pyfunc.load_model(ref_model.source or ref_model.uri)
            out = model.predict(table[list(inputs)])
    except Exception as exc:
        raise MonitoringError(
            f"cannot predict the reference with {ref_model.label}: {exc}"
        ) from exc
    if isinstance(out, pd.DataFrame):
        if out.shape[1] != 1:
            raise MonitoringError("the model answers several columns; only one is compared")
        out = out.iloc[:, 0]
    values = np.asarray(out)
    if values.ndim != 1:
        raise MonitoringError(
            f"the model's predictions have shape {values.shape}, not one value per row"
        )
    return pd.DataFrame({"prediction": values})
