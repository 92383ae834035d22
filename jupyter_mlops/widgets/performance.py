"""The performance view: is each served model version still right, and still earning its keep?

A face over ``jupyter_mlops.monitoring.performance`` (its ``PerformanceReport``): it draws
what the report computed, per model version and role, primary and canary side by side:

- quality over time: accuracy (classifiers) or RMSE (regressors) realised on the labelled
  rows, and, when the report holds an estimate, the estimated accuracy dotted beside it with
  its uncertainty band shaded, so the estimate made before labels arrive can be read against
  the value realised once they come in;
- label coverage over time (labelled rows / predicted rows, 0-100%);
- business metrics over time (each ``name = expression`` the report was given);
- a table of the whole window per version.

The figures are plain plotly trace dicts built by :func:`quality_traces` and friends, so they
can be checked on their own; :class:`PerformanceView` puts them in ``FigureWidget`` s and
:meth:`PerformanceView.update` redraws them from a newer report (the monitor widget calls it
on each refresh). Displayed, it leaves a static HTML copy for nbconvert/GitHub.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from jupyter_mlops.widgets.figures import panel_layout

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PerformanceView",
    "business_columns",
    "business_names",
    "business_traces",
    "coverage_traces",
    "has_outcomes",
    "performance_view",
    "primary_metric",
    "quality_traces",
    "totals_html",
]

PALETTE = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2")
ROLE_DASH = {"primary": "solid", "canary": "dash"}
#: Columns of a report's rows that are not business metrics.
KNOWN_COLUMNS = frozenset(
    {
        "model_name", "model_version", "role", "window_start", "window_end", "n_predictions",
        "n_labelled", "coverage", "delay_s_median", "accuracy", "f1", "precision", "recall",
        "roc_auc", "log_loss", "rmse", "mae", "r2", "tp", "fp", "tn", "fn", "n", "correct",
    }
)  # fmt: skip
#: What the totals table shows per task, besides counts, coverage and business metrics.
TABLE_SCORES = {
    "classification": ("accuracy", "f1", "roc_auc", "log_loss"),
    "regression": ("rmse", "mae", "r2"),
}


def has_outcomes(report: Any) -> bool:
    """Whether ``report`` holds any labelled row (the monitor shows the view only then)."""
    totals = getattr(report, "totals", None)
    if totals is None or totals.empty or "n_labelled" not in totals:
        return False
    return bool(totals["n_labelled"].fillna(0).sum() > 0)


def primary_metric(task: str) -> str:
    """The score a view plots over time: accuracy for classifiers, RMSE for regressors."""
    return "rmse" if task == "regression" else "accuracy"


def _numbers(values: Iterable[Any]) -> list[float | None]:
    """Values plotly can take: finite floats, None for anything missing or not a number."""
    import math

    out: list[float | None] = []
    for value in values:
        try:
            number = float(value)
        except (TypeError, ValueError):
            out.append(None)
            continue
        out.append(number if math.isfinite(number) else None)
    return out


def _groups(rows: pd.DataFrame | None) -> list[tuple[str, str, pd.DataFrame]]:
    """(label, role, rows by time) per model version and role, primary first."""
    if rows is None or rows.empty or "model_version" not in rows:
        return []
    frame = rows.copy()
    if "role" not in frame:
        frame["role"] = "primary"
    out = []
    for (version, role), part in frame.groupby(["model_version", "role"], sort=True):
        if "window_start" in part:
            part = part.sort_values("window_start")
        out.append((f"v{version} ({role})", str(role), part))
    out.sort(key=lambda g: (g[1] != "primary", g[0]))
    return out


def _dash(role: str) -> str:
    return ROLE_DASH.get(role, "solid")


def _x(part: pd.DataFrame) -> list[Any]:
    if "window_start" not in part:
        return list(range(len(part)))
    return [getattr(t, "isoformat", lambda t=t: str(t))() for t in part["window_start"]]


def quality_traces(rows: pd.DataFrame | None, task: str) -> list[dict[str, Any]]:
    """The realised score per version over time, and for classifiers with an estimate, the
    estimated accuracy (dotted) with its band (shaded between ``_low`` and ``_high``)."""
    metric = primary_metric(task)
    traces: list[dict[str, Any]] = []
    for i, (label, role, part) in enumerate(_groups(rows)):
        colour, x = PALETTE[i % len(PALETTE)], _x(part)
        if metric in part:
            traces.append(
                {
                    "type": "scatter", "x": x, "y": _numbers(part[metric]), "name": label,
                    "mode": "lines+markers", "line": {"color": colour, "dash": _dash(role)},
                    "legendgroup": label,
                    "meta": {"version": label, "kind": "realised", "metric": metric},
                }
            )  # fmt: skip
        estimate = f"estimated_{metric}"
        if task == "regression" or estimate not in part:
            continue
        low, high = part.get(f"{estimate}_low"), part.get(f"{estimate}_high")
        if low is not None and high is not None:
            # the band: the upper edge, then the lower edge filled up to it
            traces.append(
                {
                    "type": "scatter", "x": x, "y": _numbers(high), "mode": "lines",
                    "line": {"width": 0, "color": colour}, "showlegend": False,
                    "hoverinfo": "skip", "legendgroup": label,
                    "meta": {"version": label, "kind": "band_high", "metric": metric},
                }
            )  # fmt: skip
            traces.append(
                {
                    "type": "scatter", "x": x, "y": _numbers(low), "mode": "lines",
                    "line": {"width": 0, "color": colour}, "fill": "tonexty",
                    "fillcolor": _transparent(colour), "name": f"{label} estimate band",
                    "showlegend": False, "legendgroup": label,
                    "meta": {"version": label, "kind": "band_low", "metric": metric},
                }
            )  # fmt: skip
        traces.append(
            {
                "type": "scatter", "x": x, "y": _numbers(part[estimate]),
                "name": f"{label} estimated", "mode": "lines+markers",
                "line": {"color": colour, "dash": "dot"},
                "marker": {"symbol": "circle-open"}, "legendgroup": label,
                "meta": {"version": label, "kind": "estimated", "metric": metric},
            }
        )  # fmt: skip
    return traces


def _transparent(colour: str, alpha: float = 0.18) -> str:
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def coverage_traces(rows: pd.DataFrame | None) -> list[dict[str, Any]]:
    """Label coverage (0-1) per version over time."""
    traces = []
    for i, (label, role, part) in enumerate(_groups(rows)):
        if "coverage" not in part:
            continue
        traces.append(
            {
                "type": "scatter", "x": _x(part), "y": _numbers(part["coverage"]), "name": label,
                "mode": "lines+markers",
                "line": {"color": PALETTE[i % len(PALETTE)], "dash": ROLE_DASH.get(role, "solid")},
                "meta": {"version": label, "kind": "coverage"},
            }
        )  # fmt: skip
    return traces


def business_columns(rows: pd.DataFrame | None, names: Iterable[str] | None = None) -> list[str]:
    """The business metrics of a report's rows: ``names`` (the report's own list) when
    given, else the numeric columns that are no score, count or estimate (``<name>_per_1k``
    is drawn with ``<name>``'s table row, not as a series of its own)."""
    if rows is None or rows.empty:
        return []
    if names is not None:
        return [n for n in names if n in rows.columns]
    import pandas as pd

    out = []
    for column in rows.columns:
        if column in KNOWN_COLUMNS or str(column).startswith("estimated_"):
            continue
        if str(column).endswith("_per_1k") or not pd.api.types.is_numeric_dtype(rows[column]):
            continue
        out.append(str(column))
    return out


def business_names(report: Any) -> list[str] | None:
    """The names of the report's business metrics (``report.business``: its
    ``BusinessMetric`` list), or None when the report does not say."""
    metrics = getattr(report, "business", None)
    if metrics is None:
        return None
    return [str(getattr(m, "name", m)) for m in metrics]


def business_traces(
    rows: pd.DataFrame | None, names: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Each business metric per version over time (solid primary, dashed canary; one colour
    per metric, one line style per role)."""
    columns = business_columns(rows, names)
    traces = []
    for label, role, part in _groups(rows):
        for j, name in enumerate(columns):
            traces.append(
                {
                    "type": "scatter", "x": _x(part), "y": _numbers(part[name]),
                    "name": f"{name} {label}", "mode": "lines+markers",
                    "line": {"color": PALETTE[j % len(PALETTE)], "dash": _dash(role)},
                    "meta": {"version": label, "kind": "business", "metric": name},
                }
            )  # fmt: skip
    return traces


def _cell(value: Any, spec: str = ".4g") -> str:
    number = _numbers([value])[0]
    return "–" if number is None else format(number, spec)


def totals_html(report: Any) -> str:
    """The whole window per version as an HTML table (also the static copy's core)."""
    totals = getattr(report, "totals", None)
    task = str(getattr(report, "task", "classification"))
    if totals is None or totals.empty:
        return "<div class='mlops-performance-empty'>No labelled predictions in this window.</div>"
    scores = [s for s in TABLE_SCORES.get(task, ()) if s in totals.columns]
    business = business_columns(totals, business_names(report))
    metric = primary_metric(task)
    estimate = f"estimated_{metric}" if f"estimated_{metric}" in totals.columns else None
    head = ["version", "role", "predicted", "labelled", "coverage", *scores]
    head += ["estimated"] if estimate else []
    head += business
    lines = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for _, row in totals.iterrows():
        cells = [
            f"v{escape(str(row.get('model_version', '')))}",
            escape(str(row.get("role", ""))),
            _cell(row.get("n_predictions"), ",.0f"),
            _cell(row.get("n_labelled"), ",.0f"),
            _cell(row.get("coverage"), ".1%"),
            *(_cell(row.get(s)) for s in scores),
        ]
        if estimate:
            band = ""
            if f"{estimate}_low" in totals.columns:
                low, high = _cell(row.get(f"{estimate}_low")), _cell(row.get(f"{estimate}_high"))
                band = f" [{low}, {high}]"
            cells.append(_cell(row.get(estimate)) + band)
        for name in business:
            per_1k = row.get(f"{name}_per_1k")
            extra = f" ({_cell(per_1k)}/1k)" if per_1k is not None else ""
            cells.append(_cell(row.get(name)) + extra)
        lines.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        "<table class='mlops-performance-table' style='font-size:12px'>"
        + "".join(lines)
        + "</table>"
    )


class PerformanceView(widgets.VBox):  # type: ignore[misc]
    """Performance per model version over time (see the module docstring)."""

    def __init__(self, report: Any = None, *, title: str | None = None) -> None:
        import plotly.graph_objects as go

        super().__init__()
        self.report: Any = None
        self.title = title
        self.header = widgets.HTML()
        self.quality = go.FigureWidget(layout=panel_layout("Accuracy"))
        self.coverage = go.FigureWidget(
            layout=panel_layout(
                "Label coverage", yaxis={"tickformat": ".0%", "rangemode": "tozero"}
            )
        )
        self.business = go.FigureWidget(layout=panel_layout("Business metrics"))
        self.business_box = widgets.VBox([self.business])  # hidden without business metrics
        self.table = widgets.HTML()
        half = widgets.Layout(width="50%", min_width="320px")
        self.children = (
            self.header,
            widgets.HBox(
                [
                    widgets.VBox([self.quality], layout=half),
                    widgets.VBox([self.coverage], layout=half),
                ],
                layout=widgets.Layout(flex_flow="row wrap", width="100%"),
            ),
            self.business_box,
            self.table,
        )
        self.add_class("mlops-performance")
        if report is not None:
            self.update(report)

    def update(self, report: Any) -> None:
        """Redraw every figure from ``report`` (a ``PerformanceReport``)."""
        self.report = report
        task = str(getattr(report, "task", "classification"))
        rows = getattr(report, "rows", None)
        names = business_names(report)
        metric = primary_metric(task)
        quality_title = "RMSE (lower is better)" if metric == "rmse" else "Accuracy"
        if any(t["meta"]["kind"] == "estimated" for t in quality_traces(rows, task)):
            quality_title += ": realised (solid/dashed) and estimated (dotted, with band)"
        with self.quality.batch_update():
            self.quality.data = ()
            for trace in quality_traces(rows, task):
                self.quality.add_trace(trace)
            self.quality.layout.title.text = quality_title
        with self.coverage.batch_update():
            self.coverage.data = ()
            for trace in coverage_traces(rows):
                self.coverage.add_trace(trace)
        traces = business_traces(rows, names)
        with self.business.batch_update():
            self.business.data = ()
            for trace in traces:
                self.business.add_trace(trace)
        self.business_box.layout.display = None if traces else "none"
        self.table.value = totals_html(report)
        self._header()

    def _header(self) -> None:
        report = self.report
        totals = getattr(report, "totals", None)
        labelled = (
            int(totals["n_labelled"].sum()) if totals is not None and "n_labelled" in totals else 0
        )
        predicted = (
            int(totals["n_predictions"].sum())
            if totals is not None and "n_predictions" in totals
            else 0
        )
        parts = [f"<b>{escape(self.title)}</b>"] if self.title else []
        parts.append(f"{labelled:,} labelled of {predicted:,} predicted rows")
        notes = getattr(report, "notes", None) or {}
        text = " · ".join(parts)
        if notes:
            text += "<div style='color:#666'>" + "; ".join(
                f"{escape(str(k))}: {escape(str(v))}" for k, v in notes.items()
            ) + "</div>"  # fmt: skip
        self.header.value = f"<div style='font-size:13px'>Performance: {text}</div>"

    # -- display ------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<PerformanceView {self.title or ''}>".replace(" >", ">")

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = str(self.report) if self.report is not None else repr(self)
        bundle["text/html"] = self.static_html()
        return bundle

    def static_html(self) -> str:
        """A snapshot for nbconvert/GitHub: the header and the table of the whole window."""
        header, table = str(self.header.value), str(self.table.value)
        return f"<div class='mlops-performance-static'>{header}{table}</div>"


def performance_view(report: Any, *, title: str | None = None) -> PerformanceView:
    """The view of a ``PerformanceReport`` (what ``%monitor DEP --performance`` shows)."""
    return PerformanceView(report, title=title)
