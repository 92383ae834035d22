"""The monitor widget: a deployment's traffic, latency, errors, predictions and drift, live.

A face over ``jupyter_mlops.monitoring`` (``timeseries``, ``figures``, ``check``,
``drift_for_deployment``): it draws what those compute. Per model version, primary and
canary side by side: requests/s, p50/p95/p99 latency and error rate over time; the
distribution of predictions; the drift status of each feature; the alert rules' state and
recent firings. While shown it refreshes every ``interval`` seconds from a background
thread (the kernel stays free; plotly's ``batch_update`` sends each change in one
message); ``close()`` or ``stop()`` ends the thread. Displayed, it also leaves a static
HTML summary in the output for nbconvert/GitHub.
"""

from __future__ import annotations

import threading
import time
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from jupyter_mlops import values
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.monitoring.alerts import alert_history
from jupyter_mlops.monitoring.live import LiveMonitor
from jupyter_mlops.monitoring.report import STATUS_COLOURS
from jupyter_mlops.monitoring.vitals import timeseries
from jupyter_mlops.monitoring.window import predictions_window
from jupyter_mlops.widgets.figures import panel_layout

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

ROLE_DASH = {"primary": "solid", "canary": "dash"}
PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
LATENCY = (("p50_ms", "dot"), ("p95_ms", "dash"), ("p99_ms", "solid"))
PERFORMANCE_EVERY_S = 30.0  # seconds between two performance reports of a live monitor


class MonitorWidget(widgets.VBox):  # type: ignore[misc]
    """Live monitoring of one deployment (see the module docstring)."""

    def __init__(
        self,
        deployment: str,
        *,
        last: str = "1h",
        interval: float = 5.0,
        drift_every: float = 60.0,
        performance: bool | None = None,
        autostart: bool = True,
        config: Config | None = None,
        **performance_options: Any,
    ) -> None:
        import plotly.graph_objects as go

        from jupyter_mlops.config import load_config

        super().__init__()
        self.deployment = deployment
        self.last = last
        self.interval = values.positive(interval, "interval")  # 0 would be a busy loop
        self.drift_every = float(drift_every)
        self.config = config or load_config()
        self.live = LiveMonitor(deployment, last=last, drift_every=drift_every, config=self.config)
        self.refreshes = 0
        self.error: str | None = None
        self.figures: Any = None
        self.checks: Any = None
        self.drift_report: Any = None
        # Performance: shown when asked, or (None) as soon as the deployment has outcomes;
        # ``performance_options`` (every, business, estimate) go to monitoring.performance.
        self.show_performance = performance
        self.performance_options = performance_options
        self.performance_report: Any = None
        self.performance_view: Any = None
        self.performance_every = PERFORMANCE_EVERY_S
        self._performance_at = -float("inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

        self.header = widgets.HTML()
        self.alerts = widgets.HTML()
        self.rps = go.FigureWidget(layout=panel_layout("Requests per second"))
        self.latency = go.FigureWidget(
            layout=panel_layout("Latency (ms): p50 dotted, p95 dashed, p99")
        )
        self.errors = go.FigureWidget(
            layout=panel_layout("Error rate", yaxis={"tickformat": ".1%"})
        )
        self.predictions = go.FigureWidget(
            layout=panel_layout("Predictions", barmode="group", yaxis={"tickformat": ".0%"})
        )
        self.drift = go.FigureWidget(layout=panel_layout("Drift per feature (PSI)", height=240))
        self.drift_note = widgets.HTML()
        half = widgets.Layout(width="50%", min_width="320px")
        row = widgets.Layout(flex_flow="row wrap", width="100%")
        self.children: tuple[Any, ...] = (
            self.header,
            self.alerts,
            widgets.HBox(
                [widgets.VBox([self.rps], layout=half), widgets.VBox([self.latency], layout=half)],
                layout=row,
            ),
            widgets.HBox(
                [
                    widgets.VBox([self.errors], layout=half),
                    widgets.VBox([self.predictions], layout=half),
                ],
                layout=row,
            ),
            self.drift,
            self.drift_note,
        )
        self.add_class("mlops-monitor")
        self.refresh()
        if autostart:
            self.start()

    # -- refreshing -------------------------------------------------------------------
    def refresh(self) -> None:
        """Recompute everything and redraw (called by the background thread)."""
        with self._lock:
            try:
                frame = predictions_window(self.deployment, self.last, self.config)
            except MlopsError as exc:
                frame = None
                self.error = str(exc)
            else:
                self.error = None
            try:
                self._refresh(frame)
            except Exception as exc:  # a failed refresh shows, it never kills the thread
                self.error = f"{type(exc).__name__}: {exc}"
            self.refreshes += 1
            self._show_header()

    def _refresh(self, frame: pd.DataFrame | None) -> None:
        import pandas as pd

        empty = pd.DataFrame(columns=["request_id", "timestamp", "latency_ms"])
        window = frame if frame is not None else empty
        snap = self.live.snapshot(window, drift=frame is not None)
        self.figures, self.checks = snap.figures, snap.checks
        if snap.drift_fresh:
            self.drift_report = snap.drift_report
            self._draw_drift()
        series = timeseries(self.deployment, last=self.last, config=self.config, predictions=window)
        self._draw_series(series)
        self._draw_predictions(frame)
        self._show_alerts()
        if self.show_performance is not False:
            self._refresh_performance()

    def _refresh_performance(self) -> None:
        """Compute the performance report and show (or update) its view below the vitals."""
        from jupyter_mlops.monitoring.performance import performance
        from jupyter_mlops.widgets.performance import PerformanceView, has_outcomes

        now = time.monotonic()
        if now - self._performance_at < self.performance_every:
            return  # the report is costlier than the vitals: recomputed less often
        self._performance_at = now
        options = dict(self.performance_options)
        options.setdefault("every", auto_every(self.last))
        try:
            report = performance(self.deployment, last=self.last, config=self.config, **options)
        except MlopsError:
            if self.show_performance:  # asked for: the header says why it is missing
                raise
            return  # shown only once there are outcomes to show
        self.performance_report = report
        if self.performance_view is None:
            if not (self.show_performance or has_outcomes(report)):
                return
            self.performance_view = PerformanceView(report)
            self.children = (*self.children, self.performance_view)
        else:
            self.performance_view.update(report)

    def _draw_series(self, series: pd.DataFrame) -> None:
        groups = _groups(series)
        with self.rps.batch_update(), self.latency.batch_update(), self.errors.batch_update():
            self.rps.data, self.latency.data, self.errors.data = (), (), ()
            for i, (label, role, part) in enumerate(groups):
                colour, dash = PALETTE[i % len(PALETTE)], ROLE_DASH.get(role, "solid")
                x = list(part["time"])
                self.rps.add_scatter(
                    x=x, y=list(part["rps"]), name=label, mode="lines+markers",
                    line={"color": colour, "dash": dash},
                )  # fmt: skip
                for figure, dash_style in LATENCY:
                    self.latency.add_scatter(
                        x=x, y=list(part[figure]), name=f"{label} {figure[:3]}",
                        mode="lines", line={"color": colour, "dash": dash_style},
                        legendgroup=label,
                    )  # fmt: skip
                rates = part.dropna(subset=["error_rate"]) if "error_rate" in part else part[:0]
                self.errors.add_scatter(
                    x=list(rates["time"]), y=list(rates["error_rate"]), name=label,
                    mode="lines+markers", line={"color": colour, "dash": dash},
                )  # fmt: skip

    def _draw_predictions(self, frame: pd.DataFrame | None) -> None:
        with self.predictions.batch_update():
            self.predictions.data = ()
            if frame is None or "prediction" not in frame.columns:
                return
            for i, (version, part) in enumerate(frame.groupby("model_version", sort=True)):
                values = part["prediction"].dropna()
                if values.empty:
                    continue
                role = str(part["role"].iloc[-1])
                shares = values.astype(str).value_counts(normalize=True).sort_index()
                numeric = _numeric(values)
                if numeric is not None and values.nunique() > 20:
                    self.predictions.add_histogram(
                        x=list(numeric), name=f"v{version} ({role})", histnorm="probability",
                        opacity=0.6, marker_color=PALETTE[i % len(PALETTE)],
                    )  # fmt: skip
                else:
                    self.predictions.add_bar(
                        x=list(shares.index), y=list(shares.values), name=f"v{version} ({role})",
                        marker_color=PALETTE[i % len(PALETTE)],
                    )  # fmt: skip
            self.predictions.layout.barmode = "group"

    def _draw_drift(self) -> None:
        report = self.drift_report
        with self.drift.batch_update():
            self.drift.data = ()
            if report is None:
                why = getattr(self.figures, "notes", {}).get("drift_share", "not computed")
                self.drift_note.value = f"<div style='color:#666'>Drift: {escape(why)}</div>"
                return
            items = [f for f in report.features]
            self.drift.add_bar(
                x=[f.name for f in items],
                y=[f.score for f in items],
                marker_color=[STATUS_COLOURS.get(f.status, "#888") for f in items],
                text=[f.status for f in items],
                hovertext=[f.reason or f.status for f in items],
                name="PSI",
            )
            self.drift.layout.shapes = [
                {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "y0": y, "y1": y,
                 "line": {"color": c, "dash": "dot", "width": 1}}
                for y, c in ((report.thresholds.psi_warning, STATUS_COLOURS["warning"]),
                             (report.thresholds.psi_drift, STATUS_COLOURS["drift"]))
            ]  # fmt: skip
        self.drift_note.value = f"<div style='font-size:12px'>{escape(report.verdict)}</div>"

    def _show_header(self) -> None:
        figs = self.figures or {}

        def show(key: str, spec: str = ".3g") -> str:
            return format(figs[key], spec) if key in figs else "-"

        state = "live" if self.running else "paused"
        text = (
            f"<b>{escape(self.deployment)}</b> · {escape(self.last)} · {state} · "
            f"{show('requests', ',.0f')} requests · {show('rps')} req/s · "
            f"p50 {show('p50_ms')} / p95 {show('p95_ms')} / p99 {show('p99_ms')} ms · "
            f"errors {show('error_rate', '.2%')} · drift share {show('drift_share', '.0%')}"
        )
        if self.error:
            text += f"<div style='color:{STATUS_COLOURS['drift']}'>{escape(self.error)}</div>"
        self.header.value = f"<div style='font-size:13px'>{text}</div>"

    def _show_alerts(self) -> None:
        parts = []
        if self.checks:
            for r in self.checks:
                colour = {"firing": "drift", "quiet": "ok"}.get(r.status, "not computed")
                parts.append(
                    f"<span style='color:{STATUS_COLOURS[colour]}'>[{r.status}] "
                    f"{escape(r.rule.expression)}</span>"
                )
        recent = alert_history(self.deployment, limit=3, config=self.config)
        if recent:
            parts.append(
                "last firings: "
                + "; ".join(f"{escape(a['time'])} {escape(a['rule'])} = {a['value']:.3g}"
                            if isinstance(a.get("value"), int | float)
                            else f"{escape(a['time'])} {escape(a['rule'])}" for a in recent)
            )  # fmt: skip
        self.alerts.value = "<div style='font-size:12px'>" + " · ".join(parts) + "</div>"

    # -- the background thread ----------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def start(self) -> None:
        """Refresh every ``interval`` seconds in a background thread until stopped."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._loop, name=f"mlops-monitor-{self.deployment}", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if self.comm is None:  # the widget was closed from the front end
                break
            self.refresh()
        self._stop.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop refreshing (waits for a refresh in progress)."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._show_header()

    def close(self) -> None:
        self.stop()
        super().close()

    # -- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<MonitorWidget {self.deployment} ({self.last})>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = str(self.figures) if self.figures is not None else repr(self)
        bundle["text/html"] = self.static_html()
        return bundle

    def static_html(self) -> str:
        """A snapshot for nbconvert/GitHub: header, figures, alerts, drift report."""
        parts = [self.header.value, self.alerts.value]
        if self.figures is not None and hasattr(self.figures, "_repr_html_"):
            parts.append(self.figures._repr_html_())
        if self.drift_report is not None:
            parts.append(self.drift_report.to_html())
        if self.performance_view is not None:
            parts.append(self.performance_view.static_html())
        parts.append(
            "<div style='color:#666'>Static copy: run the cell in a live kernel for the "
            "refreshing monitor.</div>"
        )
        return "<div class='mlops-monitor-static'>" + "".join(parts) + "</div>"


def _groups(series: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(label, role, rows) per model version and role, primary first."""
    if series.empty:
        return []
    out = []
    for (version, role), part in series.groupby(["model_version", "role"], sort=True):
        out.append((f"v{version} ({role})", str(role), part.sort_values("time")))
    out.sort(key=lambda g: (g[1] != "primary", g[0]))
    return out


def _numeric(values: pd.Series) -> pd.Series | None:
    import pandas as pd

    converted = pd.to_numeric(values, errors="coerce")
    return converted.dropna() if converted.notna().all() else None


def auto_every(last: str | float | None, points: int = 12) -> float | None:
    """Windows of the performance time series: about ``points`` over ``last``."""
    from jupyter_mlops.monitoring.window import parse_window

    seconds = parse_window(last)
    return max(60.0, seconds / points) if seconds else None


def monitor(deployment: str, **kwargs: Any) -> MonitorWidget:
    """The live monitor of ``deployment`` (for ``%monitor``)."""
    return MonitorWidget(deployment, **kwargs)
