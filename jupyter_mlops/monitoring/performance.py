"""Model performance in production: predictions joined to their outcomes, per model version.

Outcomes (ground truth) arrive late, through ``POST /feedback`` or
:func:`~jupyter_mlops.predlog.record_outcomes`, keyed by the request id each prediction
returned. :func:`performance` reads the labelled rows of a window
(:func:`~jupyter_mlops.predlog.read_outcomes`) and the number of rows predicted
(:func:`~jupyter_mlops.predlog.prediction_counts`), and scores them per model version, role
and time window with :mod:`jupyter_mlops.predlog.scores` (the one place the metric math
lives): accuracy, macro F1, ROC AUC and log loss for classifiers (the last two when the log
holds the predicted probabilities), RMSE/MAE/R2 for regressors; label coverage (labelled
rows / predicted rows) and delay (median seconds from prediction to outcome); business
metrics (:mod:`~jupyter_mlops.monitoring.business`); and, with ``estimate``, the accuracy
estimated from the predicted probabilities before the labels arrive
(:mod:`~jupyter_mlops.monitoring.estimation`).

Concept drift (the relation between inputs and outcome changes while the inputs stay put)
shows here and not in input drift. The same numbers are figures for alert rules and
retraining triggers (``accuracy < 0.9``, ``revenue_per_1k < 500``): see
:meth:`PerformanceReport.figures` and :func:`add_performance`, which
:func:`~jupyter_mlops.monitoring.figures` calls.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MlopsError, MonitoringError
from jupyter_mlops.monitoring.business import BusinessMetric, get_business
from jupyter_mlops.monitoring.vitals import Figures
from jupyter_mlops.monitoring.window import parse_window

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = [
    "PERFORMANCE_FIGURES",
    "PerformanceReport",
    "add_performance",
    "performance",
    "score_outcomes",
]

CLASSIFICATION = "classification"
REGRESSION = "regression"
KEYS = ("model_version", "role")
#: The figures performance gives (business metrics and estimates add their own names).
PERFORMANCE_FIGURES = (
    "accuracy", "f1", "roc_auc", "log_loss", "rmse", "mae", "r2", "label_coverage",
    "label_delay_s", "n_labelled",
)  # fmt: skip
_SCORES = {
    CLASSIFICATION: ("accuracy", "f1", "precision", "recall", "roc_auc", "log_loss"),
    REGRESSION: ("rmse", "mae", "r2"),
}
NO_OUTCOMES = "no outcomes recorded in the window (POST /feedback or record_outcomes)"


@dataclass(repr=False)
class PerformanceReport:
    """Realised (and estimated) performance of a deployment's model versions.

    ``rows``: one row per ``model_version, role, window_start``; ``totals``: one per
    ``model_version, role`` over the whole window; ``overall``: every labelled row of the
    window together; ``by_role``/``by_version``: pooled per role / per version. Each holds
    ``n_predictions, n_labelled, coverage, delay_s_median``, the task's scores, business
    metrics (``<name>``, ``<name>_per_1k``) and estimates when asked.
    """

    deployment: str
    window: str
    task: str
    classes: list[str] | None
    rows: pd.DataFrame
    totals: pd.DataFrame
    overall: dict[str, Any] = field(default_factory=dict)
    by_role: dict[str, dict[str, Any]] = field(default_factory=dict)
    by_version: dict[str, dict[str, Any]] = field(default_factory=dict)
    business: list[BusinessMetric] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)

    def figures(self) -> Figures:
        """Flat figures for alert rules and retraining triggers: ``accuracy``, ``f1``...,
        ``label_coverage``, ``label_delay_s``, business names, ``estimated_accuracy``, each
        also per role (``_primary``/``_canary``) and per version (``_v<version>``)."""
        out = Figures(deployment=self.deployment, window=self.window, notes=self.notes)
        groups = [("", self.overall)]
        groups += [(f"_{role}", g) for role, g in sorted(self.by_role.items()) if role]
        groups += [(f"_v{v}", g) for v, g in sorted(self.by_version.items()) if v]
        for suffix, group in groups:
            for key, value in _figure_values(group).items():
                out[f"{key}{suffix}"] = value
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "window": self.window,
            "task": self.task,
            "classes": self.classes,
            "business": [m.to_dict() for m in self.business],
            "totals": _records(self.totals),
            "rows": _records(self.rows),
            "figures": dict(self.figures()),
            "notes": dict(self.notes),
        }

    def __str__(self) -> str:
        head = f"{self.deployment} ({self.window}): {self.task}"
        if self.totals.empty:
            return "\n".join([head, *(f"  {k}: {v}" for k, v in sorted(self.notes.items()))])
        shown = self.totals.drop(columns=["window_start"], errors="ignore")
        return f"{head}\n{shown.to_string(index=False, float_format=lambda v: f'{v:.4g}')}"

    def __repr__(self) -> str:  # the table, not pages of frames, where no HTML is shown
        return f"<PerformanceReport {self}>"

    def _repr_html_(self) -> str:
        from html import escape

        table = self.rows.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="")
        notes = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in sorted(self.notes.items()))
        return (
            f"<div><b>Performance of {escape(self.deployment)}</b> ({escape(self.window)}, "
            f"{escape(self.task)}){table}<ul>{notes}</ul></div>"
        )


def _figure_values(group: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in group.items():
        if key in ("model_version", "role", "window_start", "n_predictions", "delay_s_median"):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
    if "coverage" in out:
        out["label_coverage"] = out.pop("coverage")
    delay = group.get("delay_s_median")
    if isinstance(delay, int | float) and math.isfinite(delay):
        out["label_delay_s"] = float(delay)
    return out


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for record in frame.to_dict("records"):
        row = {}
        for key, value in record.items():
            if hasattr(value, "isoformat"):
                value = value.isoformat()
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            row[str(key)] = value
        out.append(row)
    return out


# -- reading and scoring ------------------------------------------------------------------


def performance(
    deployment: str,
    *,
    last: str | float | None = "1h",
    every: str | float | None = None,
    business: Iterable[str | Mapping[str, Any] | BusinessMetric] | None = None,
    estimate: bool = False,
    task: str | None = None,
    positive: Any = None,
    reference: Any = None,
    config: Config | None = None,
) -> PerformanceReport:
    """Performance of ``deployment`` over the last ``last`` (None = all), per ``every``.

    ``business``: metrics (``"revenue = 12*tp - 3*fp"``) computed beside the stored ones
    (:func:`~jupyter_mlops.monitoring.business.set_business`; a given one replaces a stored
    one of the same name). ``estimate``: also the accuracy estimated from the predicted
    probabilities of every prediction of the window, labelled or not. ``task``:
    ``"classification"`` or ``"regression"`` when the outcomes alone do not tell.
    ``positive``: the class ``tp``/``fp``... count (default: the last class).
    ``reference``: what the estimate calibrates on (a DataFrame or CSV/Parquet path with
    ``proba_<class>`` columns and a target column) instead of each version's labelled
    predictions from before the window.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.predlog import prediction_counts, read_outcomes

    config = config or load_config()
    seconds = parse_window(last)
    every_s = parse_window(every) if every is not None else None
    since = time.time() - seconds if seconds is not None else None
    outcomes = read_outcomes(deployment, since=since, config=config)
    counts = prediction_counts(deployment, since=since, bucket_s=every_s, config=config)
    metrics = _merge_business(get_business(deployment, config=config), business)
    report = score_outcomes(
        outcomes,
        counts,
        every=every_s,
        business=metrics,
        task=task,
        positive=positive,
        deployment=deployment,
        window=f"last {last}" if seconds is not None else "all time",
        since=since,
    )
    if estimate:
        from jupyter_mlops.monitoring.estimated import add_estimates

        add_estimates(
            report, deployment, since=since, every=every_s, reference=reference, config=config
        )
    return report


def _merge_business(
    stored: list[BusinessMetric],
    given: Iterable[str | Mapping[str, Any] | BusinessMetric] | None,
) -> list[BusinessMetric]:
    by_name = {m.name: m for m in stored}
    for metric in given or ():
        parsed = BusinessMetric.of(metric)
        by_name[parsed.name] = parsed
    return list(by_name.values())


def infer_task(outcomes: pd.DataFrame) -> str:
    """Classification when the log holds class probabilities or the labels are text,
    booleans or a few integers; regression when they are other numbers."""
    import numpy as np
    import pandas as pd

    if any(str(c).startswith("proba_") for c in outcomes.columns):
        return CLASSIFICATION
    values = pd.concat([outcomes["outcome"], outcomes["prediction"]], ignore_index=True)
    numbers = pd.to_numeric(values, errors="coerce")
    if values.map(lambda v: isinstance(v, bool | np.bool_)).any() or numbers.isna().any():
        return CLASSIFICATION
    whole = bool((numbers == np.round(numbers)).all())
    return CLASSIFICATION if whole and numbers.nunique() <= 20 else REGRESSION


def score_outcomes(
    outcomes: pd.DataFrame,
    counts: pd.DataFrame | None = None,
    *,
    every: float | None = None,
    business: Iterable[BusinessMetric] = (),
    task: str | None = None,
    positive: Any = None,
    deployment: str = "",
    window: str = "",
    since: float | None = None,
) -> PerformanceReport:
    """Score labelled rows (a ``read_outcomes`` frame) against predicted-row ``counts`` (a
    ``prediction_counts`` frame, bucketed by ``every`` seconds when given): the work of
    :func:`performance`, on frames (tests, notebooks with their own joins)."""
    import pandas as pd

    from jupyter_mlops.monitoring.scoring import GroupScorer

    metrics = list(business)
    notes: dict[str, str] = {}
    if task is None:
        task = infer_task(outcomes) if len(outcomes) else CLASSIFICATION
    if task not in _SCORES:
        raise MonitoringError(f"task must be {CLASSIFICATION} or {REGRESSION}, not {task!r}")
    scorer = GroupScorer(outcomes, task, metrics, positive=positive, notes=notes)
    every = float(max(int(every), 1)) if every else None  # whole seconds, as buckets are
    predicted = _predicted(counts, every)
    keys = [*KEYS, "window_start"] if every else list(KEYS)
    labelled = scorer.frame
    if every:
        labelled = labelled.assign(window_start=labelled["timestamp"].dt.floor(f"{int(every)}s"))
        predicted = predicted.assign(window_start=predicted["bucket"])
    groups: dict[Any, Any] = labelled.groupby(keys, sort=True, dropna=False).indices
    keys_grouped = list(keys)
    predicted_rows = predicted.groupby(keys, dropna=False)["n"].sum()
    all_keys: list[Any] = sorted(set(groups) | set(predicted_rows.index), key=str)
    rows = []
    for key in all_keys:
        n_pred = int(predicted_rows.get(key, 0))
        rows.append(_row(dict(zip(keys, key, strict=True)), scorer.score(groups.get(key)), n_pred))
    if not every:  # one window: it starts where the window does (or at the first label)
        first = labelled["timestamp"].min() if len(labelled) else pd.NaT
        start = pd.Timestamp(since, unit="s", tz="UTC") if since is not None else first
        for row in rows:
            row["window_start"] = start
    keys = [*KEYS, "window_start"]
    columns = [*keys, "n_predictions", "n_labelled", "coverage", "delay_s_median",
               *_SCORES[task]]  # fmt: skip
    frame = pd.DataFrame(rows)
    rows_frame = frame.reindex(columns=[*columns, *_extra(frame, columns)])
    totals, by_role, by_version, overall = _pooled(scorer, groups, keys_grouped, predicted, columns)
    if not len(outcomes):
        for name in _SCORES[task]:
            notes.setdefault(name, NO_OUTCOMES)
    return PerformanceReport(
        deployment=deployment,
        window=window,
        task=task,
        classes=scorer.classes,
        rows=rows_frame,
        totals=totals,
        overall=overall,
        by_role=by_role,
        by_version=by_version,
        business=metrics,
        notes=notes,
    )


def _predicted(counts: pd.DataFrame | None, every: float | None) -> pd.DataFrame:
    """``counts`` as ``model_version, role, bucket, n`` (whatever its count column is named)."""
    import pandas as pd

    if counts is None or counts.empty:
        return pd.DataFrame({"model_version": [], "role": [], "bucket": [], "n": []})
    out = counts.copy()
    value = [c for c in out.columns if c not in (*KEYS, "bucket")]
    out = out.rename(columns={value[0]: "n"}) if value and "n" not in out.columns else out
    out["model_version"] = out["model_version"].astype(str)
    if "bucket" in out.columns:
        bucket = out["bucket"]
        if not isinstance(bucket.dtype, pd.DatetimeTZDtype):
            bucket = pd.to_datetime(bucket, unit="s", utc=True)
        out["bucket"] = bucket
    elif every:
        raise MonitoringError("prediction counts per time bucket are needed with every=")
    return out


def _row(key: dict[str, Any], scored: dict[str, Any], n_predictions: int) -> dict[str, Any]:
    n_labelled = int(scored.get("n_labelled", 0))
    coverage = n_labelled / n_predictions if n_predictions else math.nan
    return {**key, "n_predictions": n_predictions, **scored, "n_labelled": n_labelled,
            "coverage": coverage}  # fmt: skip


def _extra(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    return [c for c in frame.columns if c not in columns]


def _pooled(
    scorer: Any,
    groups: dict[Any, Any],
    keys: list[str],
    predicted: pd.DataFrame,
    columns: list[str],
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]], dict[str, dict[str, Any]], dict[str, Any]]:
    """Totals per version and role, per role, per version and overall, from the rows of the
    finest ``groups`` (keyed by ``keys``) put together: no other pass over the frame, and
    the scorer scores a set of rows once however many of these groups it is."""
    import numpy as np
    import pandas as pd

    everything = np.arange(scorer.size)
    overall = _row({}, scorer.score(everything), int(predicted["n"].sum()))

    def pooled(by: list[str]) -> dict[Any, dict[str, Any]]:
        at = [keys.index(b) for b in by]
        parts: dict[Any, list[Any]] = {}
        for key, idx in groups.items():
            fine = key if isinstance(key, tuple) else (key,)
            parts.setdefault(tuple(fine[i] for i in at), []).append(idx)
        made = predicted.groupby(by, dropna=False)["n"].sum()
        made_keys = {k if isinstance(k, tuple) else (k,) for k in made.index}
        out = {}
        for key in sorted(set(parts) | made_keys, key=str):
            found = parts.get(key)
            idx = None
            if found:  # rows ascending, as the scorer keeps them ordered
                idx = found[0] if len(found) == 1 else np.sort(np.concatenate(found), kind="stable")
            lookup = key if len(by) > 1 else key[0]
            out[lookup] = _row(dict(zip(by, key, strict=True)), scorer.score(idx),
                               int(made.get(lookup, 0)))  # fmt: skip
        return out

    totals = pooled(list(KEYS))
    by_role = {str(k): v for k, v in pooled(["role"]).items()}
    by_version = {str(k): v for k, v in pooled(["model_version"]).items()}
    frame = pd.DataFrame(list(totals.values()))
    keep = [c for c in columns if c != "window_start"]
    return frame.reindex(columns=[*keep, *_extra(frame, columns)]), by_role, by_version, overall


# -- inside monitoring.figures ------------------------------------------------------------


def add_performance(
    out: Figures,
    deployment: str,
    *,
    last: str | float | None,
    estimate: bool | None = None,
    config: Config,
) -> PerformanceReport | None:
    """Add the performance figures of ``deployment`` to ``out`` (what
    :func:`~jupyter_mlops.monitoring.figures` calls); when there are none, notes say why."""
    why = None
    report: PerformanceReport | None = None
    try:
        if estimate is None:  # by default: when a stored alert rule reads an estimate
            estimate = _rules_estimate(deployment, config)
        report = performance(deployment, last=last, estimate=estimate, config=config)
    except MonitoringError as exc:
        why = str(exc)
    else:
        out.update(report.figures())
        for key, note in report.notes.items():
            out.notes.setdefault(key, note)
        if not report.overall.get("n_labelled"):
            why = NO_OUTCOMES
    if why:
        for name in PERFORMANCE_FIGURES:
            if name not in out and name != "n_labelled":
                out.notes.setdefault(name, why)
    return report


def _rules_estimate(deployment: str, config: Config) -> bool:
    """Whether a stored alert rule of ``deployment`` reads an estimated figure."""
    from jupyter_mlops.monitoring.rules import get_rules

    try:
        rules = get_rules(deployment, config=config).rules
    except MlopsError:  # unreadable rules are reported by the check itself
        return False
    return any(name.startswith("estimated_") for rule in rules for name in rule.metrics)
