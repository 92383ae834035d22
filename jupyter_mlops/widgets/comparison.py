"""The comparison widget: a runs table, plots and the differences between selected runs.

A face: the runs come from ``jupyter_mlops.tracking.runs`` (filtering, sorting, metric
histories, diffs) and the buttons call the core API (``registry.register``). This module
keeps the widget's state (page, sort, metric, selection) and the selection in step across
table and plots; ``table`` pages the runs table, ``compare_plots`` draws the figures,
``compare_selection`` acts on the selected runs and ``compare_html`` writes the HTML.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from jupyter_mlops.errors import MlopsError, QueryError
from jupyter_mlops.tracking.runs import (
    lower_is_better,
    metric_columns,
    metric_history,
    model_names,
    param_columns,
    sort_runs,
    varying,
)
from jupyter_mlops.widgets import compare_html, figures
from jupyter_mlops.widgets.compare_html import as_text, note_html
from jupyter_mlops.widgets.compare_plots import ComparePlots
from jupyter_mlops.widgets.compare_selection import SelectionPanel
from jupyter_mlops.widgets.figures import short
from jupyter_mlops.widgets.table import RunPager, RunTable, run_columns

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

PAGE_SIZE = 50
MAX_HISTORY_RUNS = 10
HISTORY_TOP = 5  # runs drawn in the history chart when none is selected


class CompareWidget(widgets.VBox):  # type: ignore[misc]
    """Runs side by side: a sortable, paged table, a parallel-coordinates plot of params
    against a metric, a param/metric scatter, metric histories, and what differs between
    the selected runs. Selecting runs in the table or the scatter highlights them
    everywhere. Displayed, it also leaves a static HTML copy in the notebook.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        *,
        metric: str | None = None,
        params: Sequence[str] | None = None,
        ascending: bool | None = None,
        title: str | None = None,
        description: str = "",
        page_size: int = PAGE_SIZE,
        ui_url: str | None = None,
        config: Config | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.title = title or compare_html.title_of(frame)
        self.description = description
        self.page_size = max(1, page_size)
        self.ui_url = ui_url
        self.page = 0
        self.selected: list[str] = []
        self.notes: list[str] = []
        self._busy = False
        # The index numbers rows in the order given: sorting keeps it, so encodings made
        # once (on ``_base``) are put in the current order with a cheap take.
        self.frame = frame.reset_index(drop=True)
        # Plain object columns: pandas' arrow-backed strings are slow to visit one by one.
        texts = [c for c in self.frame.columns if pd.api.types.is_string_dtype(self.frame[c])]
        self.frame = self.frame.astype(dict.fromkeys(texts, object))
        self.frame["models"] = model_names(self.frame)
        self._base = self.frame
        self._encoded: dict[str, figures.Encoded] = {}
        self._rankings: dict[str | None, list[str]] = {}
        self.metrics = metric_columns(self.frame)
        all_params = param_columns(self.frame)
        self.params = varying(self.frame, all_params) if len(self.frame) > 1 else all_params
        self.constant_params = [p for p in all_params if p not in self.params]
        self.metric = _pick_metric(self.frame, self.metrics, metric)
        self.ascending = ascending
        self.plot_params = [p if p.startswith("params.") else f"params.{p}" for p in params or []]
        missing = [p for p in self.plot_params if p not in self.frame.columns]
        if missing:
            self.notes.append(f"no run has {', '.join(short(p) for p in missing)}")
            self.plot_params = [p for p in self.plot_params if p in self.frame.columns]
        if self.metric is not None:
            self.frame = sort_runs(self.frame, self.metric, ascending=self._ascending())
        self._sort = {"column": self.metric or "start_time", "ascending": self._ascending()}
        if self.metric is None:
            self._sort["ascending"] = False

        self.header = widgets.HTML()
        self.message = widgets.HTML()
        if self.frame.empty:
            self.children: tuple[Any, ...] = (self.header, self.message)
            self._show_header()
            return
        self._build()

    # -- building ----------------------------------------------------------------------
    def _ascending(self) -> bool:
        if self.ascending is not None:
            return self.ascending
        return lower_is_better(self.metric) if self.metric else False

    def _build(self) -> None:
        self.metric_box = widgets.Dropdown(
            description="metric",
            options=[(short(m), m) for m in self.metrics],
            value=self.metric,
            layout=widgets.Layout(width="240px"),
        )
        x_options = [(short(p), p) for p in self.params or self.constant_params]
        x_options += [("duration (s)", "duration")]
        ranked = self._ranked()
        self.x_box = widgets.Dropdown(
            description="x",
            options=x_options,
            value=ranked[0] if ranked else x_options[0][1],  # the param that tells most
            layout=widgets.Layout(width="240px"),
        )
        self.y_box = widgets.Dropdown(
            description="y",
            options=[(short(m), m) for m in self.metrics],
            value=self.metric,
            layout=widgets.Layout(width="240px"),
        )
        self.table = RunTable()
        self.table.sort = dict(self._sort)
        self.pager = RunPager(self.table, self.show_page)
        self.prev_button, self.next_button = self.pager.prev_button, self.pager.next_button
        self.page_label = self.pager.label

        self.plots = ComparePlots(self._on_point_click, self._on_point_selection)
        self.parcoords = self.plots.parcoords
        self.scatter = self.plots.scatter
        self.history = self.plots.history
        self.history_box = self.plots.history_box
        self.selection = SelectionPanel(self.message, ui_url=self.ui_url, config=self.config)
        self.selection_html = self.selection.html
        self.model_name = self.selection.model_name
        self.model_choice = self.selection.model_choice
        self.register_button = self.selection.register_button
        self.clear_button = self.selection.clear_button
        self.ui_link = self.selection.ui_link
        self.register_button.on_click(lambda _: self.register_selected())
        self.clear_button.on_click(lambda _: self.select([]))

        self._draw_parcoords()
        self._draw_scatter()
        self._draw_history()
        self.show_page(0)
        self._show_selection()
        self._show_header()

        self.metric_box.observe(self._on_metric, names="value")
        self.x_box.observe(lambda _: self._guard(self._draw_scatter), names="value")
        self.y_box.observe(lambda _: self._guard(self._draw_scatter), names="value")
        self.plots.on_history_choice(lambda: self._guard(self._draw_history))
        self.table.observe(self._on_table_sort, names="sort")
        self.table.observe(self._on_table_select, names="selected")
        if self.parcoords.data:
            self.parcoords.data[0].on_change(self._on_brush, "dimensions")

        controls = widgets.HBox(
            [self.metric_box, self.x_box, self.y_box, self.history_box],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        plots = widgets.HBox(
            [self.scatter, self.history],
            layout=widgets.Layout(flex_flow="row wrap", width="100%"),
        )
        self.children = (
            self.header,
            controls,
            self.table,
            self.pager.box,
            self.parcoords,
            plots,
            self.selection_html,
            self.selection.actions,
            self.message,
        )
        self.add_class("mlops-compare")

    def _encodings(
        self, columns: Iterable[str | None], frame: pd.DataFrame | None = None
    ) -> dict[str, figures.Encoded]:
        """Plot encodings of ``columns``, in the row order of ``frame`` (default: the
        table's current order)."""
        order = (self.frame if frame is None else frame).index.to_numpy()
        out = {}
        for column in columns:
            if column is None or column not in self._base.columns:
                continue
            base = self._encoded.get(column)
            if base is None:
                base = self._encoded[column] = figures.encode(self._base[column])
            out[column] = dataclasses.replace(base, values=base.values[order])
        return out

    def _ranked(self) -> list[str]:
        """Varying params, those that go most with the metric first (once per metric)."""
        if self.metric not in self._rankings:
            encoded = self._encodings(self.params)
            ranked = figures.rank_params(self.frame, self.params, self.metric, encoded)
            self._rankings[self.metric] = ranked
        return self._rankings[self.metric]

    def _guard(self, fn: Any, *args: Any) -> None:
        """Run a redraw; a failure becomes a message, never a traceback in the log."""
        try:
            fn(*args)
        except MlopsError as exc:
            self.message.value = note_html(str(exc), error=True)
        except Exception as exc:
            self.message.value = note_html(f"Could not redraw: {type(exc).__name__}: {exc}", True)

    @contextmanager
    def _muted(self) -> Iterator[None]:
        """Changes made here are the widget's own: the table's selection and the brush
        observers ignore them."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False

    # -- drawing -----------------------------------------------------------------------
    def _show_header(self) -> None:
        notes = list(self.notes)
        if self.frame.empty:
            notes.append(
                "No runs to compare" + (f" ({self.description})" if self.description else "")
            )
        constants = {}
        if len(self.frame) > 1:
            constants = {p: self.frame[p].iloc[0] for p in self.constant_params}
        self.header.value = compare_html.header_html(
            self.title,
            len(self.frame),
            self.description,
            self.metric,
            self._ascending(),
            notes,
            constants,
        )

    def _columns(self) -> list[dict[str, str]]:
        kinds = self._encodings(self.params)
        numeric = {p for p in self.params if kinds[p].kind == "num"}
        return run_columns(self.metrics, self.metric, self.params, numeric, self.frame.columns)

    def show_page(self, page: int) -> None:
        """Show rows ``page * page_size`` onwards in the table."""
        self.page = self.pager.show(self.frame, self._columns(), page, self.page_size)

    def _param_dims(self) -> tuple[list[str], str]:
        """The parallel-coordinates axes besides the metric, and a note on the choice."""
        if self.plot_params:
            return self.plot_params, ""
        ranked = self._ranked()
        dims = ranked[: figures.MAX_DIMENSIONS]
        if len(ranked) > len(dims):
            return dims, (
                f"parallel coordinates: the {len(dims)} params that go most with "
                f"{short(self.metric or '')} of {len(ranked)} (choose with params=[...])"
            )
        if not dims:
            dims = [m for m in varying(self.frame, self.metrics) if m != self.metric]
            note = "params do not differ between these runs: metrics shown instead"
            return dims[: figures.MAX_DIMENSIONS], note
        return dims, ""

    def _draw_parcoords(self) -> None:
        dims, note = self._param_dims()
        encoded = self._encodings([*dims, self.metric])
        self.plots.draw_parcoords(self.frame, dims, self.metric, self.selected, encoded, note)

    def _recolour_parcoords(self) -> None:
        if not self.parcoords.data or self.plots.parcoords_runs is None:
            return
        drawn = self._base.loc[self.plots.parcoords_runs.index]  # in the plot's row order
        encoded = self._encodings([self.metric], drawn)
        with self._muted():
            self.plots.recolour_parcoords(drawn, self.metric, self.selected, encoded)

    def _draw_scatter(self) -> None:
        self.plots.draw_scatter(self.frame, self.x_box.value, self.y_box.value, self.selected)

    def _history_runs(self) -> list[str]:
        if self.selected:
            return self.selected[:MAX_HISTORY_RUNS]
        if self.metric:
            best = sort_runs(self.frame, self.metric, ascending=self._ascending())
            return best["run_id"].head(HISTORY_TOP).astype(str).tolist()
        return self.frame["run_id"].head(HISTORY_TOP).astype(str).tolist()

    def _draw_history(self) -> None:
        run_ids = self._history_runs()
        shown = self.frame[self.frame["run_id"].isin(run_ids)]
        names = {
            str(rid): as_text(name) or str(rid)[:8]
            for rid, name in zip(shown["run_id"], shown["run_name"], strict=True)
        }
        which = "selected runs" if self.selected else f"best {len(run_ids)} runs"
        history = metric_history(run_ids, config=self.config)
        self.plots.draw_history(history, names, self.metric, which)

    # -- selection ---------------------------------------------------------------------
    def select(self, run_ids: Iterable[str]) -> None:
        """Select runs (ids or id prefixes); every view highlights them."""
        known = self.frame["run_id"].astype(str).tolist()
        exact = set(known)  # a brush may select thousands of runs: no list scans per run
        chosen: list[str] = []
        taken: set[str] = set()
        for ref in run_ids:
            ref = str(ref)
            match = ref if ref in exact else next((k for k in known if k.startswith(ref)), None)
            if match is not None and match not in taken:
                chosen.append(match)
                taken.add(match)
        if chosen == self.selected:
            return
        self.selected = chosen
        if self.frame.empty:
            return
        with self._muted():
            if list(self.table.selected) != chosen:
                self.table.selected = chosen
            self.plots.highlight_points(chosen)
        self._recolour_parcoords()
        self._guard(self._draw_history)
        self._show_selection()

    def _on_table_select(self, change: dict[str, Any]) -> None:
        if not self._busy:
            self.select(change["new"])

    def _on_point_click(self, trace: Any, points: Any, state: Any) -> None:
        ids = [self.plots.scatter_ids[i] for i in points.point_inds]
        if not ids:
            return
        current = list(self.selected)
        for rid in ids:
            if rid in current:
                current.remove(rid)
            else:
                current.append(rid)
        self.select(current)

    def _on_point_selection(self, trace: Any, points: Any, selector: Any) -> None:
        self.select([self.plots.scatter_ids[i] for i in points.point_inds])

    def _on_brush(self, trace: Any, dimensions: Any) -> None:
        """Brushing axes of the parallel-coordinates plot selects the runs inside."""
        if self._busy:
            return
        brushed = self.plots.brushed_runs(dimensions)
        if brushed is not None:
            self.select(brushed)

    def _on_table_sort(self, change: dict[str, Any]) -> None:
        sort = change["new"] or {}
        column = sort.get("column")
        if column not in self.frame.columns:
            return
        self._guard(self.sort_by, column, bool(sort.get("ascending", True)))

    def sort_by(self, column: str, ascending: bool = True) -> None:
        """Order the table by ``column`` (numbers as numbers) and go to its first page."""
        self.frame = sort_runs(self.frame, column, ascending=ascending)
        self._sort = {"column": column, "ascending": ascending}
        if dict(self.table.sort) != self._sort:
            self.table.sort = dict(self._sort)
        self.show_page(0)

    def _on_metric(self, change: dict[str, Any]) -> None:
        self._guard(self.set_metric, change["new"])

    def set_metric(self, metric: str) -> None:
        """Rank, colour and plot by another metric."""
        column = metric if metric.startswith("metrics.") else f"metrics.{metric}"
        if column not in self.metrics:
            raise QueryError(f"No metric {metric!r} in these runs")
        self.metric = column
        self.ascending = None
        if self.metric_box.value != column:
            self.metric_box.value = column
            return  # the observer comes back here
        self.y_box.value = column
        self.sort_by(column, self._ascending())
        with self._muted():
            self._draw_parcoords()
        self._draw_history()
        self._show_header()

    def _show_selection(self) -> None:
        self.selection.show(self.frame, self.selected, self.metric)

    # -- actions -----------------------------------------------------------------------
    def register_selected(self) -> Any:
        """Register the selected run's model under the name typed in (core registry API)."""
        return self.selection.register(self.selected)

    # -- display -----------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"<CompareWidget {self.title!r}: {len(self.frame)} runs>"

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle = super()._repr_mimebundle_(**kwargs) or {}
        bundle["text/plain"] = repr(self)
        # What a saved notebook shows where no kernel renders the widget.
        bundle["text/html"] = self.static_html()
        return bundle

    def static_html(self) -> str:
        """The comparison as plain HTML: the first rows of the table and a bar chart."""
        columns = [] if self.frame.empty else self._columns()
        return compare_html.static_html(
            self.header.value, self.frame, columns, self.metric, self._ascending()
        )


def _pick_metric(frame: pd.DataFrame, metrics: Sequence[str], wanted: str | None) -> str | None:
    if wanted:
        column = wanted if wanted.startswith("metrics.") else f"metrics.{wanted}"
        if column not in metrics:
            have = ", ".join(short(m) for m in metrics) or "none"
            raise QueryError(f"No run has metric {wanted!r} (metrics: {have})")
        return column
    if not metrics:
        return None
    # The metric most runs have; ties alphabetically.
    counts = frame[list(metrics)].count()
    return max(metrics, key=lambda m: (int(counts[m]), [-ord(c) for c in m]))
