"""Estimated performance beside the realised one: ``%monitor DEP --performance --estimate``.

Labels arrive late; the predicted class probabilities are there at once. Confidence-based
estimation (:mod:`jupyter_mlops.monitoring.estimation`) calibrates the probabilities on a
labelled reference and turns the window's probabilities into an expected accuracy with its
band. The reference of a model version is its labelled predictions from before the analysed
window (or a table given as ``reference=``); the estimate covers every prediction of the
window, labelled or not, and sits in the report's rows beside the realised accuracy.
Assumptions (no concept drift, probabilities that calibrate) are the estimator's;
regressors are not estimated.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config
    from jupyter_mlops.monitoring.performance import PerformanceReport

KEYS = ("model_version", "role")


def add_estimates(
    report: PerformanceReport,
    deployment: str,
    *,
    since: float | None,
    every: float | None,
    reference: Any = None,
    config: Config,
) -> None:
    """Put ``estimated_accuracy`` (its band, and what else the estimator gives) into
    ``report``'s rows, totals and pooled groups; notes say where it could not."""
    from jupyter_mlops.monitoring.estimation_reference import estimator_for

    if report.task != "classification":
        report.notes["estimated_accuracy"] = (
            "not estimated for regressors: a single predicted number has no confidence "
            "to turn into an expected error"
        )
        return
    from jupyter_mlops import predlog

    if since is None and reference is None:
        report.notes["estimated_accuracy"] = (
            "no reference: the window covers all time (give last=... so the labels before it "
            "calibrate the estimate, or reference=)"
        )
        return
    predictions = predlog.read_predictions(deployment, since=since, config=config)
    proba = [c for c in predictions.columns if str(c).startswith("proba_")]
    if predictions.empty or not proba:
        report.notes["estimated_accuracy"] = "the window's predictions hold no probabilities"
        return
    predictions = predictions.assign(model_version=predictions["model_version"].astype(str))
    earlier = None
    if reference is None:
        earlier = predlog.read_outcomes(deployment, until=since, config=config)
    estimators = {}
    for version in sorted(predictions["model_version"].unique()):
        try:
            estimators[version] = estimator_for(
                deployment,
                model_version=version,
                before=since,
                reference=reference,
                outcomes=earlier,
                config=config,
            )
        except MonitoringError as exc:
            report.notes.setdefault("estimated_accuracy", str(exc))  # it names the version
    if estimators:
        _apply(report, predictions, proba, estimators, every)


def _apply(
    report: PerformanceReport,
    predictions: pd.DataFrame,
    proba: list[str],
    estimators: dict[str, Any],
    every: float | None,
) -> None:
    import pandas as pd

    def estimate(part: pd.DataFrame, version: str) -> dict[str, float]:
        values = part[proba].to_numpy(dtype=float)
        pred = part["prediction"].to_numpy(dtype=object) if "prediction" in part else None
        out = estimators[version].estimate(values, y_pred=pred)
        return {str(k): float(v) for k, v in out.items() if str(k).startswith("estimated_")}

    known = predictions[predictions["model_version"].isin(estimators)]
    if every:
        bucket = known["timestamp"].dt.floor(f"{int(every)}s")
        known = known.assign(window_start=bucket)
    keys = [*KEYS, "window_start"] if every else list(KEYS)
    found = []
    for key, part in known.groupby(keys, sort=True):
        names = dict(zip(keys, key, strict=True))
        found.append({**names, **estimate(part, str(names["model_version"]))})
    if found:
        extra = pd.DataFrame(found)
        report.rows = _merge(report.rows, extra, keys)
    totals = [
        {**dict(zip(KEYS, key, strict=True)), **estimate(part, str(key[0]))}
        for key, part in known.groupby(list(KEYS), sort=True)
    ]
    if totals:
        report.totals = _merge(report.totals, pd.DataFrame(totals), list(KEYS))
    for version, part in known.groupby("model_version"):
        report.by_version.setdefault(str(version), {}).update(estimate(part, str(version)))
    one_version = known["model_version"].nunique() == 1
    for role, part in known.groupby("role"):
        if part["model_version"].nunique() == 1:  # an estimator is per version
            group = report.by_role.setdefault(str(role), {})
            group.update(estimate(part, str(part["model_version"].iloc[0])))
    if one_version:
        report.overall.update(estimate(known, str(known["model_version"].iloc[0])))
    else:
        report.notes.setdefault(
            "estimated_accuracy",
            "estimated per version only (_v<version>, _primary, _canary): versions differ",
        )


def _merge(frame: pd.DataFrame, extra: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    extra = extra.assign(model_version=extra["model_version"].astype(str))
    frame = frame.assign(model_version=frame["model_version"].astype(str))
    return frame.merge(extra, on=keys, how="outer", sort=False)
