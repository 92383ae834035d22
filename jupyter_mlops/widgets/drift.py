"""The drift widget: reference vs current distributions per feature, most drifted first.

A face over :class:`jupyter_mlops.monitoring.DriftReport`: the numbers come from
``jupyter_mlops.monitoring``; this module lays them out. One plotly ``FigureWidget`` holds
a small panel per feature (two overlaid bar traces, reference and current, titled in the
colour of the feature's status), above a summary table. Displayed, it also leaves the
report's static HTML (table and SVG histograms) in the output, so nbconvert and GitHub
show the result without a kernel.
"""

from __future__ import annotations

import itertools
import math
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from jupyter_mlops.monitoring.feature import FeatureDrift
from jupyter_mlops.monitoring.report import (
    CUR_COLOUR,
    REF_COLOUR,
    STATUS_COLOURS,
    DriftReport,
    verdict_colour,
)

if TYPE_CHECKING:
    import plotly.graph_objects as go

MAX_PANELS = 24  # features drawn; the table lists all
COLUMNS = 3
PANEL_HEIGHT = 190


def drift_figure(report: DriftReport, *, max_panels: int = MAX_PANELS) -> go.FigureWidget:
    """Overlaid reference/current distributions, one panel per feature, ordered as the
    report (status, then drift score); the prediction comes last when there is one."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    items = [f for f in report.features if f.plot][:max_panels]
    if report.prediction is not None and report.prediction.plot:
        items.append(report.prediction)
    if not items:
        return go.FigureWidget(layout={"height": 60, "title": {"text": "Nothing to plot"}})
    rows = math.ceil(len(items) / COLUMNS)
    titles = [_title(f, f is report.prediction) for f in items]
    fig = make_subplots(
        rows=rows,
        cols=COLUMNS,
        subplot_titles=titles,
        vertical_spacing=min(0.12, 0.5 / max(rows, 1)),
        horizontal_spacing=0.06,
    )
    for i, item in enumerate(items):
        row, col = divmod(i, COLUMNS)
        x = _x(item)
        for side, colour, values in (
            ("reference", REF_COLOUR, item.plot["ref"]),
            ("current", CUR_COLOUR, item.plot["cur"]),
        ):
            fig.add_trace(
                go.Bar(
                    x=x,
                    y=[_finite(v) for v in values],
                    name=side,
                    legendgroup=side,
                    showlegend=i == 0,
                    marker_color=colour,
                    opacity=0.55,
                    hovertemplate=(
                        f"{escape(item.name)} {side}<br>%{{x}}: %{{y:.1%}}<extra></extra>"
                    ),
                    meta={"feature": item.name, "side": side, "status": item.status},
                ),
                row=row + 1,
                col=col + 1,
            )
    for annotation, item in zip(fig.layout.annotations, items, strict=False):
        annotation.font = {"size": 11, "color": STATUS_COLOURS.get(item.status, "#444")}
    fig.update_layout(
        barmode="overlay",
        bargap=0.02,
        height=PANEL_HEIGHT * rows + 60,
        margin={"l": 40, "r": 20, "t": 70, "b": 30},
        template="plotly_white",
        legend={"orientation": "h", "y": 0.995, "yanchor": "top", "x": 0, "yref": "container"},
    )
    fig.update_yaxes(tickformat=".0%", showgrid=False)
    return go.FigureWidget(fig)


def _title(item: FeatureDrift, is_prediction: bool) -> str:
    label = f"{item.name} (prediction)" if is_prediction else item.name
    psi = f" · PSI {item.psi:.2g}" if item.psi is not None and math.isfinite(item.psi) else ""
    return f"{escape(label)}: {item.status}{psi}"


def _x(item: FeatureDrift) -> list[Any]:
    plot = item.plot
    if plot.get("type") == "bar":
        return list(plot["categories"])
    edges = plot["edges"]
    return [(a + b) / 2 for a, b in itertools.pairwise(edges)]


def _finite(value: float) -> float | None:
    return value if value is not None and math.isfinite(value) else None


class DriftWidget(widgets.VBox):  # type: ignore[misc]
    """A drift report shown live: verdict, per-feature distributions, summary table."""

    def __init__(self, report: DriftReport, *, max_panels: int = MAX_PANELS) -> None:
        super().__init__()
        self.report = report
        colour = verdict_colour(report.dataset_drift)
        sources = "".join(
            f"<div style='font-size:12px'><b>{label}</b>: {escape(str(info['description']))}</div>"
            for label, info in (("reference", report.reference), ("current", report.current))
            if info.get("description")
        )
        self.header = widgets.HTML(
            f"<div style='font-size:14px;font-weight:600;color:{colour}'>"
            f"{escape(report.verdict)}</div>{sources}"
        )
        self.figure = drift_figure(report, max_panels=max_panels)
        self.table = widgets.HTML(report.to_html(histograms=False, header=False))
        hidden = len([f for f in report.features if f.plot]) - max_panels
        more = f"<div style='color:#666'>{hidden} more features in the table</div>"
        self.children = (self.header, self.figure, *([widgets.HTML(more)] if hidden > 0 else []),
                         self.table)  # fmt: skip
        self.add_class("mlops-drift")

    def __repr__(self) -> str:
        return repr(self.report)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = str(self.report)
        # What a saved notebook shows where no kernel renders the widget.
        bundle["text/html"] = self.report.to_html()
        return bundle
