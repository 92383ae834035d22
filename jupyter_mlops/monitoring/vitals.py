"""A deployment's vital signs as numbers, by name: traffic, latency, errors and drift.

Where each number comes from:

* ``requests``, ``rps``, ``p50_ms``/``p95_ms``/``p99_ms``: the prediction log, one entry
  per answered request (``read_predictions``), over the window asked. ``rps`` divides by
  the window, or by the time the deployment has been up when that is shorter.
* ``errors``, ``error_rate``: the server's Prometheus counters (``/metrics``), because
  requests that fail are not in the prediction log. Counters only grow, so the count over
  a window is the difference between two readings: every reading is kept in
  ``.mlops/monitoring/<deployment>/metrics.jsonl``, and the window's baseline is the last
  reading before it started (or zero when the server started inside the window). Without
  such a reading the rate covers the time since the first one, and a note says so.
* ``drift_share``, ``n_drifted``: :func:`jupyter_mlops.monitoring.drift_for_deployment`
  over the same window.
* ``accuracy``, ``f1``, ``roc_auc``, ``log_loss`` | ``rmse``, ``mae``, ``r2``,
  ``label_coverage``, ``label_delay_s`` and business metrics: predictions joined to their
  outcomes (:func:`jupyter_mlops.monitoring.performance`), when outcomes were recorded.

Per model version there are ``<figure>_primary``/``<figure>_canary`` and
``<figure>_v<version>`` variants (e.g. ``p99_ms_canary``, ``error_rate_v3``). A figure
that cannot be computed is absent, and :attr:`Figures.notes` says why: an alert rule over
it then reports "unknown" instead of a silent "quiet".
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MlopsError, MonitoringError
from jupyter_mlops.monitoring.window import parse_window

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

SCRAPES_FILE = "metrics.jsonl"
SCRAPES_KEPT_S = 8 * 86400
SCRAPE_TIMEOUT_S = 2.0
LATENCY_FIGURES = (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99))


def monitoring_dir(deployment: str, config: Config) -> Path:
    """``<project>/.mlops/monitoring/<deployment>/``: rules, alerts, metric readings."""
    return config.mlops_dir / "monitoring" / deployment


class Figures(dict[str, float]):
    """Figures by name (a plain ``dict[str, float]``) with notes on the absent ones."""

    def __init__(
        self,
        values: Mapping[str, float] | None = None,
        *,
        deployment: str = "",
        window: str = "",
        notes: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(values or {})
        self.deployment = deployment
        self.window = window
        self.notes: dict[str, str] = dict(notes or {})
        self.drift_report: Any = None
        self.performance_report: Any = None

    def __str__(self) -> str:
        lines = [f"{self.deployment} ({self.window})"]
        width = max((len(k) for k in self), default=8)
        for key in sorted(self):
            lines.append(f"  {key:<{width}}  {_fmt(self[key])}")
        lines.extend(f"  {k}: not available ({why})" for k, why in sorted(self.notes.items()))
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(
            f"<tr><td>{escape(k)}</td><td style='text-align:right'>{_fmt(v)}</td></tr>"
            for k, v in sorted(self.items())
        )
        notes = "".join(
            f"<tr><td>{escape(k)}</td><td style='color:#666'>n/a: {escape(why)}</td></tr>"
            for k, why in sorted(self.notes.items())
        )
        return (
            f"<div><b>{escape(self.deployment)}</b> ({escape(self.window)})"
            f"<table>{rows}{notes}</table></div>"
        )


def _fmt(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# -- Prometheus readings ------------------------------------------------------------------


def scrape(
    deployment: str, *, config: Config | None = None, token: str | None = None
) -> dict[str, Any]:
    """Read the running server's request/error counters and keep the reading.

    Returns ``{"t", "pid", "started_at", "series": {"<version>|<role>": [requests,
    errors]}}``; raises MlopsError when the server is not running or does not answer.
    ``token`` (default: ``$MLOPS_TOKEN``) for deployments that require one.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving import get_deployment

    config = config or load_config()
    dep = get_deployment(deployment, config=config)
    if dep.status != "running":
        raise MlopsError(f"deployment {deployment!r} is {dep.status}")
    request = urllib.request.Request(f"{dep.url}/metrics")
    token = token or os.environ.get("MLOPS_TOKEN")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
    except urllib.error.HTTPError as exc:
        why = "it needs a token (set MLOPS_TOKEN)" if exc.code in (401, 403) else f"HTTP {exc.code}"
        raise MlopsError(f"cannot read {dep.url}/metrics: {why}") from None
    except (OSError, urllib.error.URLError) as exc:
        raise MlopsError(f"cannot read {dep.url}/metrics: {exc}") from None
    reading = {
        "t": time.time(),
        "pid": dep.pid,
        "started_at": dep.started_at,
        "series": parse_counters(text),
    }
    _append_reading(monitoring_dir(deployment, config) / SCRAPES_FILE, reading)
    return reading


def parse_counters(text: str) -> dict[str, list[float]]:
    """``{"<version>|<role>": [requests, errors]}`` from Prometheus exposition text."""
    from prometheus_client.parser import text_string_to_metric_families

    series: dict[str, list[float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in ("jupyter_mlops_requests", "jupyter_mlops_request_errors"):
            continue
        slot = 0 if family.name == "jupyter_mlops_requests" else 1
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            key = f"{sample.labels.get('model_version', '')}|{sample.labels.get('role', '')}"
            series.setdefault(key, [0.0, 0.0])[slot] += float(sample.value)
    return series


def _append_reading(path: Path, reading: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(reading) + "\n"
    with path.open("a") as fh:  # one short append: concurrent writers do not interleave
        fh.write(line)
    if path.stat().st_size > 4 << 20:  # keep the file small: drop readings past retention
        cutoff = time.time() - SCRAPES_KEPT_S
        kept = [r for r in read_readings(path) if r["t"] >= cutoff]
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(path)


def read_readings(path: Path) -> list[dict[str, Any]]:
    """Kept metric readings, oldest first (corrupt lines skipped)."""
    out = []
    with contextlib.suppress(FileNotFoundError):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
    return sorted(out, key=lambda r: r.get("t", 0))


def error_counts(
    readings: list[dict[str, Any]], latest: dict[str, Any], since: float | None
) -> tuple[dict[str, list[float]], float, str | None]:
    """Per series [requests, errors] over the window, its start, and a note if partial."""
    same = [
        r
        for r in readings
        if r.get("pid") == latest.get("pid") and r.get("started_at") == latest.get("started_at")
    ]
    started = float(latest.get("started_at") or 0.0)
    note = None
    if since is None or started >= since:
        base: dict[str, list[float]] = {}
        start = started
    else:
        before = [r for r in same if r["t"] <= since]
        if before:
            base, start = before[-1]["series"], since
        else:
            first = same[0] if same else latest
            base, start = first["series"], float(first["t"])
            if first is latest:
                note = "no earlier reading of the server's counters: no error rate yet"
            else:
                minutes = (latest["t"] - start) / 60
                note = f"error counts cover the last {minutes:.0f} min only (first reading)"
    out = {}
    for key, (req, err) in latest["series"].items():
        b_req, b_err = base.get(key, [0.0, 0.0])
        out[key] = [max(req - b_req, 0.0), max(err - b_err, 0.0)]
    return out, start, note


# -- the figures --------------------------------------------------------------------------


def figures(
    deployment: str,
    *,
    last: str | float | None = "1h",
    config: Config | None = None,
    drift: bool = True,
    token: str | None = None,
    predictions: pd.DataFrame | None = None,
    performance: bool = True,
    estimate: bool | None = None,
) -> Figures:
    """The monitored figures of ``deployment`` over the last ``last`` (None = all).

    Always: ``requests``, ``rps``; with requests: ``p50_ms``, ``p95_ms``, ``p99_ms``; with
    the server running: ``errors``, ``error_rate``; with a reference: ``drift_share``,
    ``n_drifted`` (``drift=False`` skips the drift computation); with outcomes, the
    performance figures (``performance=False`` skips them), and ``estimated_accuracy`` with
    its band when ``estimate`` (by default: when a stored alert rule names an ``estimated_``
    figure). Plus per-role and per-version variants. Absent figures are explained in
    ``.notes``.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.predlog import read_predictions
    from jupyter_mlops.serving import get_deployment

    config = config or load_config()
    dep = get_deployment(deployment, config=config)
    seconds = parse_window(last)
    now = time.time()
    since = now - seconds if seconds is not None else None
    window = f"last {last}" if seconds is not None else "all time"
    out = Figures(deployment=deployment, window=window)
    frame = predictions
    if frame is None:
        frame = read_predictions(deployment, since=since, config=config)
    up_since = min(_first_seen(dep, frame), now)
    span = now - max(since or up_since, up_since) if up_since < now else 0.0
    _traffic(out, frame, span)
    if dep.status == "running":
        try:
            latest = scrape(deployment, config=config, token=token)
        except MlopsError as exc:
            out.notes["error_rate"] = str(exc)
        else:
            readings = read_readings(monitoring_dir(deployment, config) / SCRAPES_FILE)
            counts, _, note = error_counts(readings, latest, since)
            _errors(out, counts, note)
    else:
        out.notes["error_rate"] = f"the deployment is {dep.status}; errors are read from /metrics"
    if drift:
        if frame.empty:
            out.notes["drift_share"] = "no predictions in the window"
        else:
            try:
                from jupyter_mlops.monitoring.deployment import drift_for_deployment

                report = drift_for_deployment(
                    deployment, last=last, current=frame, prediction=False, config=config
                )
            except MonitoringError as exc:
                out.notes["drift_share"] = str(exc)
            else:
                out.drift_report = report
                for key, value in report.figures().items():
                    out[key] = value
                if report.drift_share is None:
                    out.notes["drift_share"] = report.verdict
    if performance:
        from jupyter_mlops.monitoring.performance import add_performance

        out.performance_report = add_performance(
            out, deployment, last=last, estimate=estimate, config=config
        )
    return out


def _first_seen(dep: Any, frame: pd.DataFrame) -> float:
    started = float(dep.started_at or 0.0)
    if not frame.empty:
        first = float(frame["timestamp"].iloc[0].timestamp())
        started = min(started, first) if started else first
    return started or time.time()


def _traffic(out: Figures, frame: pd.DataFrame, span: float) -> None:
    import numpy as np

    requests = frame.drop_duplicates("request_id") if not frame.empty else frame
    groups: list[tuple[str, Any]] = [("", requests)]
    if not requests.empty:
        for role, part in requests.groupby("role", sort=True):
            groups.append((f"_{role}", part))
        for version, part in requests.groupby("model_version", sort=True):
            if version is not None and str(version) != "":
                groups.append((f"_v{version!s}", part))
    for suffix, part in groups:
        n = len(part)
        out[f"requests{suffix}"] = float(n)
        out[f"rps{suffix}"] = float(n / span) if span > 0 else 0.0
        latency = part["latency_ms"].to_numpy(dtype=float, na_value=np.nan) if n else []
        latency = latency[np.isfinite(latency)] if n else latency
        if len(latency):
            for name, q in LATENCY_FIGURES:
                out[f"{name}{suffix}"] = float(np.percentile(latency, q))
        elif suffix == "":
            for name, _ in LATENCY_FIGURES:
                out.notes[name] = "no requests in the window"


def _errors(out: Figures, counts: dict[str, list[float]], note: str | None) -> None:
    if note is not None and "no error rate" in note:
        out.notes["error_rate"] = note
        return
    totals: dict[str, list[float]] = {"": [0.0, 0.0]}
    for key, (req, err) in counts.items():
        version, _, role = key.partition("|")
        for suffix in ("", f"_{role}" if role else None, f"_v{version}" if version else None):
            if suffix is None:
                continue
            slot = totals.setdefault(suffix, [0.0, 0.0])
            slot[0] += req
            slot[1] += err
    for suffix, (req, err) in totals.items():
        out[f"errors{suffix}"] = err
        if req > 0:
            out[f"error_rate{suffix}"] = err / req
        elif suffix == "":
            out.notes["error_rate"] = "no requests reached the server in the window"
    if note:
        out.notes["errors"] = note


# -- time series for the monitor widget ---------------------------------------------------


def timeseries(
    deployment: str,
    *,
    last: str | float | None = "1h",
    step: str | float | None = None,
    config: Config | None = None,
    predictions: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Requests/s and latency percentiles per time step and model version (and role).

    Columns: ``time`` (step start, UTC), ``model_version``, ``role``, ``requests``,
    ``rps``, ``p50_ms``, ``p95_ms``, ``p99_ms``, and ``errors``/``error_rate`` where
    metric readings cover the step. ``step`` defaults to a 60th of the window.
    """
    import pandas as pd

    from jupyter_mlops.config import load_config
    from jupyter_mlops.predlog import read_predictions

    config = config or load_config()
    seconds = parse_window(last)
    since = time.time() - seconds if seconds is not None else None
    frame = predictions
    if frame is None:
        frame = read_predictions(deployment, since=since, config=config)
    columns = ["time", "model_version", "role", "requests", "rps", "p50_ms", "p95_ms", "p99_ms"]
    if frame.empty:
        return pd.DataFrame(columns=[*columns, "errors", "error_rate"])
    requests = frame.drop_duplicates("request_id")
    span = seconds or max(
        (requests["timestamp"].iloc[-1] - requests["timestamp"].iloc[0]).total_seconds(), 60.0
    )
    step_s = parse_window(step) if step is not None else max(span / 60.0, 1.0)
    assert step_s is not None
    bucket = requests["timestamp"].dt.floor(f"{max(int(step_s), 1)}s")
    grouped = requests.assign(time=bucket, model_version=requests["model_version"].astype(str))
    rows = []
    for (when, version, role), part in grouped.groupby(["time", "model_version", "role"]):
        lat = part["latency_ms"].astype(float)
        rows.append(
            {
                "time": when,
                "model_version": version,
                "role": role,
                "requests": len(part),
                "rps": len(part) / step_s,
                "p50_ms": float(lat.quantile(0.5)),
                "p95_ms": float(lat.quantile(0.95)),
                "p99_ms": float(lat.quantile(0.99)),
            }
        )
    out = pd.DataFrame(rows, columns=columns)
    errs = _error_series(monitoring_dir(deployment, config) / SCRAPES_FILE, since, step_s)
    if errs.empty:
        out["errors"] = math.nan
        out["error_rate"] = math.nan
        return out
    return out.merge(errs, on=["time", "model_version", "role"], how="outer").sort_values("time")


def _error_series(path: Path, since: float | None, step_s: float) -> pd.DataFrame:
    """Errors and error rate per step from consecutive metric readings of one server."""
    import pandas as pd

    readings = [r for r in read_readings(path) if since is None or r["t"] >= since - step_s]
    rows = []
    for prev, cur in itertools.pairwise(readings):
        if (prev.get("pid"), prev.get("started_at")) != (cur.get("pid"), cur.get("started_at")):
            continue
        for key, (req, err) in cur["series"].items():
            b_req, b_err = prev["series"].get(key, [0.0, 0.0])
            version, _, role = key.partition("|")
            rows.append((cur["t"], version, role, max(req - b_req, 0.0), max(err - b_err, 0.0)))
    if not rows:
        return pd.DataFrame(columns=["time", "model_version", "role", "errors", "error_rate"])
    frame = pd.DataFrame(rows, columns=["t", "model_version", "role", "req", "errors"])
    frame["time"] = pd.to_datetime(frame["t"], unit="s", utc=True).dt.floor(
        f"{max(int(step_s), 1)}s"
    )
    agg = frame.groupby(["time", "model_version", "role"], as_index=False)[["req", "errors"]].sum()
    agg["error_rate"] = agg["errors"] / agg["req"].where(agg["req"] > 0)
    return agg.drop(columns="req")
