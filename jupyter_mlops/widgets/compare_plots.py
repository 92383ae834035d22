"""The comparison's three live figures: parallel coordinates of params against the metric,
a param/metric scatter, and metric histories by step, with the history's metric chooser.

The traces come from ``figures`` (plain dicts); this module puts them into plotly
``FigureWidget``s, updating a trace in place where it can so the browser does not rebuild
the plot, and remembers what maps a click back to runs (the row order of the lines, the
run of each point). ``CompareWidget`` decides what to draw and wires the events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from jupyter_mlops.tracking.runs import stepped_metrics
from jupyter_mlops.widgets import figures
from jupyter_mlops.widgets.figures import short

if TYPE_CHECKING:
    import pandas as pd

PLOT_WIDTH = 960  # px; the scatter and the history take half each

PointHandler = Callable[[Any, Any, Any], None]  # plotly's (trace, points, state|selector)


class ComparePlots:
    """The figures, drawn on request; ``scatter_ids`` and ``parcoords_runs`` say which run
    each point and each line is."""

    def __init__(self, on_point_click: PointHandler, on_point_selection: PointHandler) -> None:
        import plotly.graph_objects as go

        wide, half = PLOT_WIDTH, PLOT_WIDTH // 2
        self.parcoords = go.FigureWidget(
            layout=figures.layout(width=wide, height=400, title="Params against metric")
        )
        self.parcoords.layout.margin.t = 90  # room for the title above the axis labels
        self.scatter = go.FigureWidget(
            layout=figures.layout(width=half, height=360, title="Scatter")
        )
        self.scatter.layout.showlegend = False  # one trace: its name says nothing
        self.history = go.FigureWidget(
            layout=figures.layout(width=half, height=360, title="Metric history")
        )
        self.history_box = widgets.Dropdown(
            description="history", layout=widgets.Layout(width="240px")
        )
        self.scatter_ids: list[str] = []
        self.parcoords_runs: pd.DataFrame | None = None  # run_id of each line, as drawn
        self._on_point_click = on_point_click
        self._on_point_selection = on_point_selection
        self._choosing = False

    # -- parallel coordinates ----------------------------------------------------------
    def draw_parcoords(
        self,
        frame: pd.DataFrame,
        dims: Sequence[str],
        metric: str | None,
        selected: Iterable[str],
        encoded: Mapping[str, figures.Encoded],
        note: str = "",
    ) -> None:
        """One line per row of ``frame`` across the ``dims`` axes and then ``metric``;
        ``note`` (and what the trace leaves out) goes under the title."""
        trace, notes = figures.parcoords(frame, dims, metric, selected, encoded)
        # The plot keeps this row order when the table is re-sorted: remember it.
        self.parcoords_runs = frame[["run_id"]]
        note = "; ".join(filter(None, [note, *notes]))
        title = "Params against " + short(metric) if metric else "Params"
        with self.parcoords.batch_update():
            if self.parcoords.data:
                self.parcoords.data[0].dimensions = trace["dimensions"]
                self.parcoords.data[0].line = trace["line"]
            else:
                self.parcoords.add_trace(trace)
            self.parcoords.layout.title.text = title
            if note:
                self.parcoords.layout.title.text = f"{title}<br><sup>{escape(note)}</sup>"

    def recolour_parcoords(
        self,
        drawn: pd.DataFrame,
        metric: str | None,
        selected: Iterable[str],
        encoded: Mapping[str, figures.Encoded],
    ) -> None:
        """Colour the lines again (``drawn``: the runs in the plot's row order)."""
        trace, _ = figures.parcoords(drawn, [], metric, selected, encoded)
        self.parcoords.data[0].line = trace["line"]

    def brushed_runs(self, dimensions: Any) -> list[str] | None:
        """The runs whose lines pass inside every brushed range of ``dimensions`` (the
        parallel-coordinates axes); None when no axis is brushed."""
        import numpy as np

        if self.parcoords_runs is None:
            return None
        keep = np.ones(len(self.parcoords_runs), dtype=bool)
        brushed = False
        for dim in dimensions or ():
            ranges = dim.constraintrange
            if not ranges:
                continue
            brushed = True
            values = np.asarray(dim.values, dtype=float)
            pairs = ranges if isinstance(ranges[0], list | tuple) else [ranges]
            inside = np.zeros(len(values), dtype=bool)
            for lo, hi in pairs:
                inside |= (values >= lo) & (values <= hi)
            keep &= inside
        if not brushed:
            return None
        ids = self.parcoords_runs["run_id"].to_numpy(dtype=object)  # in the order drawn
        return [str(rid) for rid in ids[keep]]

    # -- scatter -----------------------------------------------------------------------
    def draw_scatter(
        self, frame: pd.DataFrame, x: str | None, y: str | None, selected: Iterable[str]
    ) -> None:
        """Column ``y`` against ``x``, one point per run of ``frame`` that has both."""
        if x is None or y is None:
            self.scatter.layout.title.text = "Scatter: no metrics to plot"
            return
        trace, self.scatter_ids = figures.scatter(frame, x, y, selected)
        with self.scatter.batch_update():
            if not self.scatter.data:
                self.scatter.add_trace(trace)
                self.scatter.data[0].on_click(self._on_point_click)
                self.scatter.data[0].on_selection(self._on_point_selection)
            else:
                points = self.scatter.data[0]
                for key in ("x", "y", "text", "hovertemplate", "selectedpoints"):
                    setattr(points, key, trace[key])
            self.scatter.layout.xaxis.title.text = short(x) if x != "duration" else "duration (s)"
            self.scatter.layout.yaxis.title.text = short(y)
            self.scatter.layout.xaxis.type = "-"
            self.scatter.layout.title.text = f"{short(y)} against {short(x)}"
            self.scatter.layout.dragmode = "select"

    def highlight_points(self, selected: Iterable[str]) -> None:
        """Mark the ``selected`` runs' points in the scatter."""
        if self.scatter.data:
            points = figures.selected_points(self.scatter_ids, selected)
            self.scatter.data[0].selectedpoints = points

    # -- history -----------------------------------------------------------------------
    def on_history_choice(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when the user picks another history metric."""

        def chosen(change: dict[str, Any]) -> None:
            if not self._choosing:
                callback()

        self.history_box.observe(chosen, names="value")

    @contextmanager
    def _choosing_options(self) -> Iterator[None]:
        """Options set here are the plots' own: the chooser's observer ignores them."""
        self._choosing = True
        try:
            yield
        finally:
            self._choosing = False

    def draw_history(
        self, history: pd.DataFrame, names: dict[str, str], metric: str | None, which: str
    ) -> None:
        """Lines by step of the metric chosen in ``history_box`` (``history`` from
        ``metric_history``; ``names``: run id to label; ``which``: the runs, in words).
        The chooser offers the metrics logged at several steps, ``metric`` first."""
        options = [(m, f"metrics.{m}") for m in stepped_metrics(history)]
        values = [v for _, v in options]
        current = self.history_box.value
        if values != [v for _, v in self.history_box.options]:
            preferred = current if current in values else None
            if preferred is None and metric in values:
                preferred = metric
            if preferred is None and options:
                preferred = options[0][1]
            with self._choosing_options():  # the observer would redraw in the middle of this
                self.history_box.options = options
                self.history_box.value = preferred
        chosen = self.history_box.value
        traces = figures.history(history, chosen, names) if chosen else []
        with self.history.batch_update():
            self.history.data = ()
            for trace in traces:
                self.history.add_trace(trace)
            if chosen:
                self.history.layout.title.text = f"{short(chosen)} by step ({which})"
            else:
                self.history.layout.title.text = (
                    f"Metric history: no metric of the {which} was logged at several steps"
                )
            self.history.layout.xaxis.title.text = "step"
        self.history_box.layout.display = None if options else "none"
