"""Model performance on the server's ``/metrics``: how right each served version is, from the
outcomes joined to its predictions, as Prometheus gauges per model version and role.

The server computes these itself, off the request path: a task of its event loop wakes every
``every_s`` seconds (``JUPYTER_MLOPS_GAUGES_EVERY_S``, default 15; longer when a refresh is
costly, so that refreshing takes at most a tenth of the time) and, in a worker thread,
reads the outcome store (``predlog.read_outcomes`` and ``predlog.prediction_counts``) over the
last ``window_s`` seconds of prediction time (``JUPYTER_MLOPS_GAUGES_WINDOW_S``, default one
hour), scores it with ``predlog.scores`` (the same math as ``%monitor --performance``), and
keeps the result. ``/metrics`` only reads the kept snapshot, so scraping costs nothing more
and a slow or failing store never delays a prediction. A version with no labelled row in the
window has no score series (absent, not 0); one the window no longer holds loses its series.

Families (labels ``deployment, model_name, model_version, role``):

- ``jupyter_mlops_model_accuracy``, ``_f1``, ``_roc_auc``, ``_log_loss`` (classifiers;
  ROC AUC and log loss where the log holds predicted probabilities), ``_rmse``, ``_mae``,
  ``_r2`` (regressors);
- ``jupyter_mlops_label_coverage_ratio``: labelled / predicted rows in the window (0-1);
- ``jupyter_mlops_labelled_rows``: labelled prediction rows in the window;
- ``jupyter_mlops_outcomes_total``: outcomes this server saw arrive (a counter, by arrival
  time: it starts with those of the first window and restarts with the server, as counters
  do) for predictions in the window;
- ``jupyter_mlops_last_outcome_age_seconds`` and ``jupyter_mlops_label_delay_median_seconds``;
- ``jupyter_mlops_performance_window_seconds`` and
  ``jupyter_mlops_performance_refreshed_timestamp_seconds`` (deployment only): what the
  figures cover and when they were computed.

A classifier is a version served with ``predict_proba`` classes, or whose outcomes are not
all numbers, or are whole numbers with few distinct values; otherwise a regressor.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.urls import redact_text, safe_logger
from jupyter_mlops.predlog.scores import classification_scores, regression_scores

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = ["PerformanceGauges", "Snapshot", "score_window", "start_gauges", "stop_gauges"]

_log = safe_logger("jupyter_mlops.serving")
DEFAULT_EVERY_S = 15.0
DEFAULT_WINDOW_S = 3600.0
#: Refreshing takes at most 1/MAX_DUTY of the server's time (the wait grows with its cost).
MAX_DUTY = 10
#: Whole-number outcomes with at most this many distinct values are taken as classes.
MAX_CLASSES = 50
_LABELS = ("deployment", "model_name", "model_version", "role")
#: Score families: (score name, help).
SCORES = (
    ("accuracy", "Share of labelled predictions that were right (classifiers)."),
    ("f1", "Macro F1 score of the labelled predictions (classifiers)."),
    ("roc_auc", "ROC AUC of the logged probabilities (classifiers; macro one-vs-rest)."),
    ("log_loss", "Log loss of the logged probabilities (classifiers)."),
    ("rmse", "Root mean squared error of the labelled predictions (regressors)."),
    ("mae", "Mean absolute error of the labelled predictions (regressors)."),
    ("r2", "Coefficient of determination of the labelled predictions (regressors)."),
)


@dataclass
class Snapshot:
    """What one refresh computed: per ``(model_name, model_version, role)``, its figures."""

    versions: dict[tuple[str, str, str], dict[str, float]] = field(default_factory=dict)
    refreshed_at: float | None = None
    window_s: float = DEFAULT_WINDOW_S


def _setting(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        value = float(raw) if raw else default
    except ValueError:
        _log.warning("%s=%r is not a number of seconds: %s used", name, raw, default)
        return default
    return value if value > 0 else default


def _epoch_seconds(column: pd.Series) -> pd.Series:
    """Times (datetimes of any resolution, or epoch seconds) as float epoch seconds."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return column.astype(float)
    moments = pd.to_datetime(column, utc=True)
    return (moments - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)


def _is_classification(outcome: pd.Series, classes: Sequence[Any] | None) -> bool:
    import numpy as np
    import pandas as pd

    if classes:
        return True
    numbers = pd.to_numeric(outcome, errors="coerce")
    if numbers.isna().any():
        return True
    values = numbers.to_numpy(dtype=float)
    whole = bool(np.all(values == np.round(values)))
    return whole and len(np.unique(values)) <= MAX_CLASSES


def score_window(
    outcomes: pd.DataFrame,
    counts: pd.DataFrame | None,
    *,
    now: float,
    served: Mapping[str, tuple[str, Sequence[Any] | None]] | None = None,
) -> dict[tuple[str, str, str], dict[str, float]]:
    """Figures per ``(model_name, model_version, role)`` of a ``read_outcomes`` frame and a
    ``prediction_counts`` frame over the same window (``served``: per model version, the
    served model's name and class order, None without ``predict_proba``)."""
    import pandas as pd

    out: dict[tuple[str, str, str], dict[str, float]] = {}
    predicted: dict[tuple[str, str], int] = {}
    if counts is not None and not counts.empty:
        for version, role, n in counts[["model_version", "role", "n_predictions"]].itertuples(
            index=False
        ):
            predicted[(str(version), str(role))] = predicted.get((str(version), str(role)), 0) + n
    served = served or {}
    names = {version: name for version, (name, _) in served.items()}
    if not outcomes.empty:
        proba_columns = [c for c in outcomes.columns if str(c).startswith("proba_")]
        keys = ["model_name", "model_version", "role"]
        used = [*keys, "prediction", "outcome", "arrived", "delay_s", *proba_columns]
        frame = outcomes[[c for c in used if c in outcomes.columns]]  # split less per group
        for (name, version, role), part in frame.groupby(keys, sort=True, dropna=False):
            version, role, name = str(version), str(role), str(name)
            names[version] = name
            known = served.get(version, (name, None))[1]
            figures: dict[str, float] = {"labelled_rows": float(len(part))}
            if _is_classification(part["outcome"], known):
                proba = None
                classes_seen = [c[len("proba_") :] for c in proba_columns]
                if proba_columns and part[proba_columns].notna().all(axis=1).all():
                    proba = part[proba_columns].to_numpy(dtype=float)
                figures.update(
                    classification_scores(
                        part["outcome"],
                        part["prediction"],
                        proba=proba,
                        classes=classes_seen if proba is not None else known,
                    )
                )
            else:
                figures.update(
                    regression_scores(
                        pd.to_numeric(part["outcome"], errors="coerce"),
                        pd.to_numeric(part["prediction"], errors="coerce"),
                    )
                )
            figures["last_arrived"] = float(_epoch_seconds(part["arrived"]).max())
            figures["last_outcome_age_seconds"] = max(0.0, now - figures["last_arrived"])
            if "delay_s" in part and part["delay_s"].notna().any():
                figures["label_delay_median_seconds"] = float(part["delay_s"].median())
            n = predicted.get((version, role))
            if n:
                figures["label_coverage_ratio"] = min(1.0, len(part) / n)
            out[(name, version, role)] = figures
    for (version, role), n in predicted.items():  # predicted, none labelled yet
        key = (names.get(version, ""), version, role)
        if n and not any(k[1:] == (version, role) for k in out):
            out[key] = {"labelled_rows": 0.0, "label_coverage_ratio": 0.0}
    return out


class PerformanceGauges:
    """A Prometheus collector of the latest :class:`Snapshot`, and the loop refreshing it."""

    def __init__(
        self,
        deployment: str,
        config: Config,
        *,
        served: Callable[[], Mapping[str, tuple[str, Sequence[Any] | None]]] | None = None,
        every_s: float | None = None,
        window_s: float | None = None,
    ) -> None:
        self.deployment = deployment
        self.config = config
        self.served = served or dict
        self.every_s = every_s or _setting("JUPYTER_MLOPS_GAUGES_EVERY_S", DEFAULT_EVERY_S)
        self.window_s = window_s or _setting("JUPYTER_MLOPS_GAUGES_WINDOW_S", DEFAULT_WINDOW_S)
        self.snapshot = Snapshot(window_s=self.window_s)
        self.error: str | None = None
        # outcomes seen arrive, per series: counted by arrival time past the high-water mark
        self._seen: dict[tuple[str, str, str], float] = {}
        self._arrived_mark: float | None = None

    # -- computing ---------------------------------------------------------------------
    def refresh(self, now: float | None = None) -> Snapshot:
        """Read the outcome store and score the window (blocking: run it in a thread)."""
        from jupyter_mlops.predlog import prediction_counts, read_outcomes

        now = time.time() if now is None else now
        since = now - self.window_s
        outcomes = read_outcomes(self.deployment, since=since, config=self.config)
        counts = prediction_counts(self.deployment, since=since, config=self.config)
        versions = score_window(outcomes, counts, now=now, served=self.served())
        self._count_arrivals(outcomes)
        for key, figures in versions.items():
            figures["outcomes_total"] = self._seen.get(key, 0.0)
        self.snapshot = Snapshot(versions=versions, refreshed_at=now, window_s=self.window_s)
        return self.snapshot

    def _count_arrivals(self, outcomes: pd.DataFrame) -> None:

        if outcomes.empty:
            return
        arrived = _epoch_seconds(outcomes["arrived"])
        fresh = outcomes if self._arrived_mark is None else outcomes[arrived > self._arrived_mark]
        keys = ["model_name", "model_version", "role"]
        sizes = fresh.groupby(keys, dropna=False).size()
        for (name, version, role), n in zip(sizes.index, sizes.to_numpy(), strict=True):
            key = (str(name), str(version), str(role))
            self._seen[key] = self._seen.get(key, 0.0) + float(n)
        self._arrived_mark = float(arrived.max())

    async def run(self) -> None:
        """Refresh every ``every_s`` seconds until cancelled; a failure is logged and kept
        in ``error`` (the previous figures stay), never raised into the server."""
        loop = asyncio.get_running_loop()
        while True:
            started = time.perf_counter()
            try:
                await loop.run_in_executor(None, self.refresh)
                self.error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                message = redact_text(f"{type(exc).__name__}: {exc}")
                if message != self.error:  # said once per distinct failure, not every tick
                    _log.warning("performance gauges not refreshed: %s", message)
                self.error = message
            # A long window of outcomes (a million rows: about a second) must not take the
            # predicting process's CPU: at most 1/MAX_DUTY of the time goes to refreshing.
            took = time.perf_counter() - started
            await asyncio.sleep(max(self.every_s, took * (MAX_DUTY - 1)))

    # -- Prometheus collector ------------------------------------------------------------
    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.snapshot
        series = sorted(snap.versions.items())

        def family(name: str, key: str, doc: str, kind: Any = GaugeMetricFamily) -> Any:
            metric = kind(name, doc, labels=_LABELS)
            for (model, version, role), figures in series:
                if key in figures:
                    metric.add_metric([self.deployment, model, version, role], figures[key])
            return metric

        for score, doc in SCORES:
            yield family(f"jupyter_mlops_model_{score}", score, doc)
        yield family(
            "jupyter_mlops_label_coverage_ratio",
            "label_coverage_ratio",
            "Labelled prediction rows / predicted rows in the window (0-1).",
        )
        yield family(
            "jupyter_mlops_labelled_rows",
            "labelled_rows",
            "Labelled prediction rows in the window.",
        )
        yield family(
            "jupyter_mlops_outcomes",
            "outcomes_total",
            "Outcomes seen arriving by this server, for predictions in the window.",
            CounterMetricFamily,
        )
        yield family(
            "jupyter_mlops_last_outcome_age_seconds",
            "last_outcome_age_seconds",
            "Seconds from the newest outcome's arrival to the last refresh.",
        )
        yield family(
            "jupyter_mlops_label_delay_median_seconds",
            "label_delay_median_seconds",
            "Median seconds from a prediction to its outcome's arrival.",
        )
        window = GaugeMetricFamily(
            "jupyter_mlops_performance_window_seconds",
            "Seconds of prediction time the performance figures cover.",
            labels=("deployment",),
        )
        window.add_metric([self.deployment], snap.window_s)
        yield window
        if snap.refreshed_at is not None:
            stamp = GaugeMetricFamily(
                "jupyter_mlops_performance_refreshed_timestamp_seconds",
                "When the performance figures were last computed (Unix time).",
                labels=("deployment",),
            )
            stamp.add_metric([self.deployment], snap.refreshed_at)
            yield stamp


def start_gauges(
    deployment: str,
    folder: os.PathLike[str],
    served: Callable[[], Mapping[str, tuple[str, Sequence[Any] | None]]],
) -> tuple[PerformanceGauges, asyncio.Task[None]]:
    """The gauges of the deployment in ``folder`` (under its project's ``.mlops/``) and
    their running refresh task (call in the server's event loop)."""
    from jupyter_mlops.config import load_config

    gauges = PerformanceGauges(deployment, load_config(folder), served=served)
    return gauges, asyncio.get_running_loop().create_task(gauges.run())


async def stop_gauges(task: asyncio.Task[None] | None) -> None:
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
