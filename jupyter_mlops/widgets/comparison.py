"""The comparison widget: a runs table, plots and the differences between selected runs.

A face: the runs come from ``jupyter_mlops.tracking.query`` (filtering, sorting, metric
histories, diffs) and the buttons call the core API (``registry.register``); this module
only lays them out and keeps the selection in step across table and plots.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import pandas as pd

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.tracking import runs as query
from jupyter_mlops.widgets import figures
from jupyter_mlops.widgets.figures import fmt, short

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

PAGE_SIZE = 50
PLOT_WIDTH = 960  # px; the scatter and the history take half each
MAX_DIFF_RUNS = 6  # runs shown side by side
MAX_HISTORY_RUNS = 10
HISTORY_TOP = 5  # runs drawn in the history chart when none is selected
STATIC_ROWS = 50
_PLOT_MARGIN = {"l": 60, "r": 30, "t": 40, "b": 40}
_COLOURS = [  # plotly's default colour sequence
    "#636efa",
    "#EF553B",
    "#00cc96",
    "#ab63fa",
    "#FFA15A",
    "#19d3f3",
    "#FF6692",
    "#B6E880",
    "#FF97FF",
    "#FECB52",
]


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
        self.title = title or _title(frame)
        self.description = description
        self.page_size = max(1, page_size)
        self.ui_url = ui_url
        self.page = 0
        self.selected: list[str] = []
        self.notes: list[str] = []
        self._busy = False
        self._quiet = False
        # The index numbers rows in the order given: sorting keeps it, so encodings made
        # once (on ``_base``) are put in the current order with a cheap take.
        self.frame = frame.reset_index(drop=True)
        # Plain object columns: pandas' arrow-backed strings are slow to visit one by one.
        texts = [c for c in self.frame.columns if pd.api.types.is_string_dtype(self.frame[c])]
        self.frame = self.frame.astype(dict.fromkeys(texts, object))
        self.frame["models"] = query.model_names(self.frame)
        self._base = self.frame
        self._encoded: dict[str, figures.Encoded] = {}
        self._rankings: dict[str | None, list[str]] = {}
        self.metrics = query.metric_columns(self.frame)
        all_params = query.param_columns(self.frame)
        self.params = query.varying(self.frame, all_params) if len(self.frame) > 1 else all_params
        self.constant_params = [p for p in all_params if p not in self.params]
        self.metric = _pick_metric(self.frame, self.metrics, metric)
        self.ascending = ascending
        self.plot_params = [p if p.startswith("params.") else f"params.{p}" for p in params or []]
        missing = [p for p in self.plot_params if p not in self.frame.columns]
        if missing:
            self.notes.append(f"no run has {', '.join(short(p) for p in missing)}")
            self.plot_params = [p for p in self.plot_params if p in self.frame.columns]
        if self.metric is not None:
            self.frame = query.sort_runs(self.frame, self.metric, ascending=self._ascending())
        self._sort = {"column": self.metric or "start_time", "ascending": self._ascending()}
        if self.metric is None:
            self._sort["ascending"] = False

        self.header = widgets.HTML()
        self.message = widgets.HTML()
        if self.frame.empty:
            self.children = (self.header, self.message)
            self._show_header()
            return
        self._build()

    # -- building ----------------------------------------------------------------------
    def _ascending(self) -> bool:
        if self.ascending is not None:
            return self.ascending
        return query.lower_is_better(self.metric) if self.metric else False

    def _build(self) -> None:
        import plotly.graph_objects as go

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
        self.table = _run_table()
        self.table.sort = dict(self._sort)
        self.prev_button = widgets.Button(description="◀ previous", layout={"width": "110px"})
        self.next_button = widgets.Button(description="next ▶", layout={"width": "110px"})
        self.page_label = widgets.Label()
        self.prev_button.on_click(lambda _: self.show_page(self.page - 1))
        self.next_button.on_click(lambda _: self.show_page(self.page + 1))

        wide, half = PLOT_WIDTH, PLOT_WIDTH // 2
        self.parcoords = go.FigureWidget(
            layout=_layout(width=wide, height=400, title="Params against metric")
        )
        self.parcoords.layout.margin.t = 90  # room for the title above the axis labels
        self.scatter = go.FigureWidget(layout=_layout(width=half, height=360, title="Scatter"))
        self.scatter.layout.showlegend = False  # one trace: its name says nothing
        self.history = go.FigureWidget(
            layout=_layout(width=half, height=360, title="Metric history")
        )
        self.history_box = widgets.Dropdown(
            description="history", layout=widgets.Layout(width="240px")
        )
        self.selection_html = widgets.HTML()
        self.model_name = widgets.Text(
            placeholder="registered model name", layout={"width": "220px"}
        )
        self.model_choice = widgets.Dropdown(layout={"width": "160px", "display": "none"})
        self.register_button = widgets.Button(
            description="Register model",
            icon="archive",
            disabled=True,
            tooltip="Register the selected run's model (select exactly one run with a model)",
        )
        self.clear_button = widgets.Button(description="Clear selection", disabled=True)
        self.ui_link = widgets.HTML()
        self.register_button.on_click(lambda _: self.register_selected())
        self.clear_button.on_click(lambda _: self.select([]))

        self._draw_parcoords()
        self._draw_scatter(new=True)
        self._draw_history()
        self.show_page(0)
        self._show_selection()
        self._show_header()

        self.metric_box.observe(self._on_metric, names="value")
        self.x_box.observe(lambda _: self._guard(self._draw_scatter), names="value")
        self.y_box.observe(lambda _: self._guard(self._draw_scatter), names="value")
        self.history_box.observe(self._on_history_metric, names="value")
        self.table.observe(self._on_table_sort, names="sort")
        self.table.observe(self._on_table_select, names="selected")
        if self.parcoords.data:
            self.parcoords.data[0].on_change(self._on_brush, "dimensions")

        controls = widgets.HBox(
            [self.metric_box, self.x_box, self.y_box, self.history_box],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        pager = widgets.HBox([self.prev_button, self.page_label, self.next_button])
        plots = widgets.HBox(
            [
                self.scatter,
                self.history,
            ],
            layout=widgets.Layout(flex_flow="row wrap", width="100%"),
        )
        actions = widgets.HBox(
            [
                self.model_name,
                self.model_choice,
                self.register_button,
                self.clear_button,
                self.ui_link,
            ],
            layout=widgets.Layout(align_items="center", flex_flow="row wrap"),
        )
        self.children = (
            self.header,
            controls,
            self.table,
            pager,
            self.parcoords,
            plots,
            self.selection_html,
            actions,
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
            self.message.value = _note(str(exc), error=True)
        except Exception as exc:
            self.message.value = _note(f"Could not redraw: {type(exc).__name__}: {exc}", True)

    # -- drawing -----------------------------------------------------------------------
    def _show_header(self) -> None:
        count = len(self.frame)
        parts = [f"<b>{escape(self.title)}</b>", f"{count:,} run{'s' if count != 1 else ''}"]
        if self.description:
            parts.append(escape(self.description))
        if self.metric:
            better = "lower" if self._ascending() else "higher"
            parts.append(f"metric <code>{escape(short(self.metric))}</code> ({better} is better)")
        notes = list(self.notes)
        if self.constant_params and len(self.frame) > 1:
            same = ", ".join(
                f"{short(p)}={fmt(self.frame[p].iloc[0])}" for p in self.constant_params[:8]
            )
            more = len(self.constant_params) - 8
            notes.append(
                f"{len(self.constant_params)} param(s) equal in every run, not shown: {same}"
                + (f" and {more} more" if more > 0 else "")
            )
        if self.frame.empty:
            notes.append(self.description_empty())
        body = " &middot; ".join(parts)
        extra = "".join(f"<div style='color:#666'>{escape(n)}</div>" for n in notes)
        self.header.value = f"<div style='font-size:13px'>{body}{extra}</div>"

    def description_empty(self) -> str:
        return "No runs to compare" + (f" ({self.description})" if self.description else "")

    def _columns(self) -> list[dict[str, str]]:
        cols = [
            {"key": "run_name", "label": "run", "kind": "text"},
            {"key": "run_id", "label": "id", "kind": "text"},
            {"key": "status", "label": "status", "kind": "text"},
            {"key": "start_time", "label": "started (UTC)", "kind": "text"},
            {"key": "duration", "label": "duration (s)", "kind": "num"},
        ]
        metrics = sorted(self.metrics, key=lambda m: (m != self.metric, m))
        cols += [{"key": m, "label": short(m), "kind": "num"} for m in metrics]
        kinds = self._encodings(self.params)
        for p in self.params:
            numeric = kinds[p].kind == "num"
            cols.append({"key": p, "label": short(p), "kind": "num" if numeric else "text"})
        cols += [
            {"key": "data", "label": "data", "kind": "text"},
            {"key": "models", "label": "models", "kind": "text"},
        ]
        return cols

    def show_page(self, page: int) -> None:
        """Show rows ``page * page_size`` onwards in the table."""
        pages = max(1, -(-len(self.frame) // self.page_size))
        self.page = min(max(0, page), pages - 1)
        start = self.page * self.page_size
        rows = self.frame.iloc[start : start + self.page_size]
        cols = self._columns()
        texts = []
        for record in rows[[c["key"] for c in cols]].itertuples(index=False, name=None):
            texts.append([_cell(c["key"], v) for c, v in zip(cols, record, strict=True)])
        with self.table.hold_sync():
            self.table.columns = cols
            self.table.rows = texts
            self.table.row_ids = rows["run_id"].astype(str).tolist()
        end = start + len(rows)
        self.page_label.value = f"runs {start + 1:,}–{end:,} of {len(self.frame):,}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1

    def _param_dims(self) -> list[str]:
        if self.plot_params:
            return self.plot_params
        ranked = self._ranked()
        dims = ranked[: figures.MAX_DIMENSIONS]
        if len(ranked) > len(dims):
            self._plot_note = (
                f"parallel coordinates: the {len(dims)} params that go most with "
                f"{short(self.metric or '')} of {len(ranked)} (choose with params=[...])"
            )
        return dims

    def _draw_parcoords(self) -> None:
        self._plot_note = ""
        dims = self._param_dims()
        if not dims:
            self._plot_note = "params do not differ between these runs: metrics shown instead"
            dims = [m for m in query.varying(self.frame, self.metrics) if m != self.metric]
            dims = dims[: figures.MAX_DIMENSIONS]
        encoded = self._encodings([*dims, self.metric])
        trace, notes = figures.parcoords(self.frame, dims, self.metric, self.selected, encoded)
        # The plot keeps this row order when the table is re-sorted: remember it.
        self._parcoords_frame = self.frame[["run_id"]]
        if notes:
            self._plot_note = "; ".join(filter(None, [self._plot_note, *notes]))
        title = "Params against " + short(self.metric) if self.metric else "Params"
        with self.parcoords.batch_update():
            if self.parcoords.data:
                self.parcoords.data[0].dimensions = trace["dimensions"]
                self.parcoords.data[0].line = trace["line"]
            else:
                self.parcoords.add_trace(trace)
            self.parcoords.layout.title.text = title
            if self._plot_note:
                self.parcoords.layout.title.text = (
                    f"{title}<br><sup>{escape(self._plot_note)}</sup>"
                )

    def _recolour_parcoords(self) -> None:
        if not self.parcoords.data:
            return
        drawn = self._base.loc[self._parcoords_frame.index]  # in the plot's row order
        encoded = self._encodings([self.metric], drawn)
        trace, _ = figures.parcoords(drawn, [], self.metric, self.selected, encoded)
        self._busy = True
        try:
            self.parcoords.data[0].line = trace["line"]
        finally:
            self._busy = False

    def _draw_scatter(self, new: bool = False) -> None:
        x, y = self.x_box.value, self.y_box.value
        if x is None or y is None:
            self.scatter.layout.title.text = "Scatter: no metrics to plot"
            return
        trace, self._scatter_ids = figures.scatter(self.frame, x, y, self.selected)
        with self.scatter.batch_update():
            if new or not self.scatter.data:
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

    def _history_runs(self) -> list[str]:
        if self.selected:
            return self.selected[:MAX_HISTORY_RUNS]
        if self.metric:
            best = query.sort_runs(self.frame, self.metric, ascending=self._ascending())
            return best["run_id"].head(HISTORY_TOP).astype(str).tolist()
        return self.frame["run_id"].head(HISTORY_TOP).astype(str).tolist()

    def _draw_history(self) -> None:
        run_ids = self._history_runs()
        hist = query.metric_history(run_ids, config=self.config)
        stepped = query.stepped_metrics(hist)
        options = [(m, f"metrics.{m}") for m in stepped]
        current = self.history_box.value
        if [v for _, v in options] != [v for _, v in self.history_box.options]:
            preferred = current if current in [v for _, v in options] else None
            if preferred is None and self.metric in [v for _, v in options]:
                preferred = self.metric
            if preferred is None and options:
                preferred = options[0][1]
            self._quiet = True  # the observer would redraw in the middle of this
            try:
                self.history_box.options = options
                self.history_box.value = preferred
            finally:
                self._quiet = False
        shown = self.frame[self.frame["run_id"].isin(run_ids)]
        names = {
            str(rid): _text(name) or str(rid)[:8]
            for rid, name in zip(shown["run_id"], shown["run_name"], strict=True)
        }
        chosen = self.history_box.value
        traces = figures.history(hist, chosen, names) if chosen else []
        which = "selected runs" if self.selected else f"best {len(run_ids)} runs"
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

    def _on_history_metric(self, change: dict[str, Any]) -> None:
        if not self._quiet:
            self._guard(self._draw_history)

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
        self._busy = True
        try:
            if list(self.table.selected) != chosen:
                self.table.selected = chosen
            if self.scatter.data:
                points = figures.selected_points(self._scatter_ids, chosen)
                self.scatter.data[0].selectedpoints = points
        finally:
            self._busy = False
        self._recolour_parcoords()
        self._guard(self._draw_history)
        self._show_selection()

    def _on_table_select(self, change: dict[str, Any]) -> None:
        if not self._busy:
            self.select(change["new"])

    def _on_point_click(self, trace: Any, points: Any, state: Any) -> None:
        ids = [self._scatter_ids[i] for i in points.point_inds]
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
        self.select([self._scatter_ids[i] for i in points.point_inds])

    def _on_brush(self, trace: Any, dimensions: Any) -> None:
        """Brushing axes of the parallel-coordinates plot selects the runs inside."""
        if self._busy:
            return
        import numpy as np

        keep = np.ones(len(self.frame), dtype=bool)
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
        if brushed:  # the plot's rows are in the order it was drawn in
            ids = self._parcoords_frame["run_id"].to_numpy(dtype=object)
            self.select(ids[keep].tolist())

    def _on_table_sort(self, change: dict[str, Any]) -> None:
        sort = change["new"] or {}
        column = sort.get("column")
        if column not in self.frame.columns:
            return
        self._guard(self.sort_by, column, bool(sort.get("ascending", True)))

    def sort_by(self, column: str, ascending: bool = True) -> None:
        """Order the table by ``column`` (numbers as numbers) and go to its first page."""
        self.frame = query.sort_runs(self.frame, column, ascending=ascending)
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
            raise query.QueryError(f"No metric {metric!r} in these runs")
        self.metric = column
        self.ascending = None
        if self.metric_box.value != column:
            self.metric_box.value = column
            return  # the observer comes back here
        self.y_box.value = column
        self.sort_by(column, self._ascending())
        self._busy = True
        try:
            self._draw_parcoords()
        finally:
            self._busy = False
        self._draw_history()
        self._show_header()

    def _show_selection(self) -> None:
        count = len(self.selected)
        self.clear_button.disabled = count == 0
        models = []
        if count == 1:
            row = self.frame[self.frame["run_id"] == self.selected[0]]
            models = [m.strip() for m in _text(row["models"].iloc[0]).split(",") if m.strip()]
        self.register_button.disabled = not models
        self.model_choice.options = models
        self.model_choice.layout.display = None if len(models) > 1 else "none"
        self.ui_link.value = self._ui_html()
        if count == 0:
            self.selection_html.value = (
                "<div style='color:#666;font-size:12px'>Click rows in the table or points in "
                "the scatter (or drag a box) to select runs and see what differs between "
                "them.</div>"
            )
            return
        shown = self.selected[:MAX_DIFF_RUNS]
        diff = query.diff_runs(self.frame, shown, config=self.config)
        self.selection_html.value = diff_html(diff, self.metric, more=count - len(shown))

    def _ui_html(self) -> str:
        if not self.ui_url:
            return (
                "<span style='color:#888;font-size:12px;margin-left:8px'>MLflow UI: not running "
                "(<code>mlflow ui --backend-store-uri &lt;store&gt;</code>, then rerun)</span>"
            )
        if len(self.selected) == 1:
            row = self.frame[self.frame["run_id"] == self.selected[0]].iloc[0]
            url = query.run_url(self.ui_url, str(row["experiment_id"]), str(row["run_id"]))
            label = f"Open {escape(_text(row['run_name']) or row['run_id'][:8])} in MLflow ↗"
        else:
            exp = str(self.frame["experiment_id"].iloc[0])
            url, label = f"{self.ui_url}/#/experiments/{exp}", "Open experiment in MLflow ↗"
        return (
            f"<a href='{escape(url, quote=True)}' target='_blank' rel='noopener' "
            f"style='margin-left:8px'>{label}</a>"
        )

    # -- actions -----------------------------------------------------------------------
    def register_selected(self) -> Any:
        """Register the selected run's model under the name typed in (core registry API)."""
        import jupyter_mlops.registry as registry

        if len(self.selected) != 1:
            self.message.value = _note("Select exactly one run to register its model.", True)
            return None
        name = self.model_name.value.strip()
        if not name:
            self.message.value = _note("Type the registered model's name first.", True)
            return None
        model = self.model_choice.value if len(self.model_choice.options) > 1 else None
        try:
            result = registry.register(self.selected[0], name=name, model=model, config=self.config)
        except MlopsError as exc:
            self.message.value = _note(str(exc), error=True)
            return None
        self.message.value = f"<pre style='font-size:12px'>{escape(str(result))}</pre>"
        return result

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
        head = (
            f"<div class='mlops-compare-static' style='font-size:12px'>"
            f"<div>{self.header.value}</div>"
        )
        if self.frame.empty:
            return head + "</div>"
        cols = self._columns()
        rows = self.frame.head(STATIC_ROWS)
        th = "".join(f"<th style='text-align:left'>{escape(c['label'])}</th>" for c in cols)
        body = []
        for record in rows[[c["key"] for c in cols]].itertuples(index=False, name=None):
            cells = "".join(
                f"<td style='text-align:{'right' if c['kind'] == 'num' else 'left'}'>"
                f"{escape(_cell(c['key'], v))}</td>"
                for c, v in zip(cols, record, strict=True)
            )
            body.append(f"<tr>{cells}</tr>")
        more = len(self.frame) - len(rows)
        tail = f"<div style='color:#666'>… {more:,} more runs</div>" if more > 0 else ""
        note = (
            "<div style='color:#666'>Static copy: run the cell in a live kernel for the "
            "interactive comparison.</div>"
        )
        return (
            f"{head}{_bars_svg(self.frame, self.metric, self._ascending())}"
            f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"
            f"{tail}{note}</div>"
        )


def _run_table() -> Any:
    from jupyter_mlops.widgets.table import RunTable

    return RunTable()


def _layout(*, width: int, height: int, title: str) -> dict[str, Any]:
    return {
        # A fixed size: the figure is drawn before the notebook has laid out its box, and
        # plotly's widget only resizes on window events.
        "width": width,
        "height": height,
        "margin": _PLOT_MARGIN,
        "title": {"text": title, "font": {"size": 13}},
        # Plotly's named templates are deep-copied into every figure (~0.1 s each).
        "template": "none",
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"size": 11},
        "colorway": _COLOURS,
        "xaxis": {"gridcolor": "#eee", "zeroline": False},
        "yaxis": {"gridcolor": "#eee", "zeroline": False},
        "showlegend": True,
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.25},
    }


def _title(frame: pd.DataFrame) -> str:
    if frame.empty or "experiment" not in frame.columns:
        return "Runs"
    names = sorted({str(e) for e in frame["experiment"].dropna()})
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def _pick_metric(frame: pd.DataFrame, metrics: Sequence[str], wanted: str | None) -> str | None:
    if wanted:
        column = wanted if wanted.startswith("metrics.") else f"metrics.{wanted}"
        if column not in metrics:
            have = ", ".join(short(m) for m in metrics) or "none"
            raise query.QueryError(f"No run has metric {wanted!r} (metrics: {have})")
        return column
    if not metrics:
        return None
    # The metric most runs have; ties alphabetically.
    return max(metrics, key=lambda m: (int(frame[m].notna().sum()), [-ord(c) for c in m]))


def _cell(key: str, value: Any) -> str:
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if key == "run_id":
        return str(value)[:8]
    if key in ("start_time", "end_time"):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return fmt(value)


def _text(value: Any) -> str:
    """A cell value as text; missing (None, NaN: pandas' str columns use NaN) as ""."""
    return (
        value if isinstance(value, str) else "" if value is None or value != value else str(value)
    )


def _note(text: str, error: bool = False) -> str:
    colour = "#c62828" if error else "#555"
    return f"<div style='color:{colour};font-size:12px'>{escape(text)}</div>"


def diff_html(diff: query.RunDiff, metric: str | None, *, more: int = 0) -> str:
    """Selected runs side by side: differing params and data, metrics, cell-source diff."""
    head = "".join(
        f"<th style='text-align:left'>{escape(n)}<br><code style='font-weight:normal'>"
        f"{escape(r[:8])}</code></th>"
        for n, r in zip(diff.names, diff.run_ids, strict=True)
    )

    def rows(title: str, items: dict[str, list[Any]], highlight: bool) -> str:
        if not items:
            return ""
        style = "background:rgba(214,39,40,0.10)" if highlight else ""
        out = [
            f"<tr><th colspan='{len(diff.run_ids) + 1}' style='text-align:left'>{title}</th></tr>"
        ]
        for key, values in items.items():
            cells = "".join(f"<td style='{style}'>{escape(fmt(v))}</td>" for v in values)
            out.append(f"<tr><td><code>{escape(key)}</code></td>{cells}</tr>")
        return "".join(out)

    metrics = dict(
        sorted(diff.metrics.items(), key=lambda kv: (f"metrics.{kv[0]}" != metric, kv[0]))
    )
    single = len(diff.run_ids) == 1
    params = diff.params if not single else {k: [v] for k, v in diff.same_params.items()}
    body = rows("metrics", metrics, False)
    body += rows("params" if single else "params that differ", params, not single)
    body += rows("data that differs", diff.data, True)
    same = ""
    if not single:
        same = (
            f"<div style='color:#666'>{len(diff.same_params)} param(s) equal in all selected runs"
            + ("" if diff.params else "; no param differs")
            + ("" if diff.data else "; same data")
            + "</div>"
        )
    sources = ""
    if len(diff.run_ids) > 1:
        parts = []
        for j in range(1, len(diff.run_ids)):
            a, b = diff.sources[0], diff.sources[j]
            if a is None or b is None:
                continue
            if a == b:
                parts.append(
                    f"<div>cell source of {escape(diff.names[j])}: same as {escape(diff.names[0])}"
                    "</div>"
                )
                continue
            table = difflib.HtmlDiff(wrapcolumn=70).make_table(
                a.splitlines(),
                b.splitlines(),
                diff.names[0],
                diff.names[j],
                context=True,
                numlines=2,
            )
            parts.append(f"<div class='mlops-source-diff'>{table}</div>")
        if parts:
            sources = "<div><b>cell source</b></div>" + "".join(parts)
    extra = f"<div style='color:#666'>and {more} more selected</div>" if more > 0 else ""
    return (
        "<div class='mlops-selection' style='font-size:12px'>"
        f"<b>Selected runs</b>{extra}<table><thead><tr><th></th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{same}{sources}"
        "<style>.mlops-source-diff table.diff{font-family:monospace;font-size:11px}"
        ".mlops-source-diff .diff_add{background:#e6ffec}.mlops-source-diff .diff_chg"
        "{background:#fff5b1}.mlops-source-diff .diff_sub{background:#ffebe9}</style></div>"
    )


def _bars_svg(frame: pd.DataFrame, metric: str | None, ascending: bool, top: int = 20) -> str:
    """A small inline SVG bar chart of the best runs by ``metric`` (no JavaScript needed)."""
    import numpy as np

    if metric is None:
        return ""
    best = query.sort_runs(frame, metric, ascending=ascending).head(top)
    values = best[metric].to_numpy(float)
    finite = np.isfinite(values)
    if not finite.any():
        return ""
    lo, hi = min(0.0, float(values[finite].min())), float(values[finite].max())
    span = (hi - lo) or 1.0
    width, bar, label_w = 520, 14, 160
    lines = []
    for i, (name, rid, value) in enumerate(
        zip(best["run_name"], best["run_id"], values, strict=True)
    ):
        y = i * (bar + 4)
        label = escape(_text(name) or str(rid)[:8])[:28]
        length = 0 if not np.isfinite(value) else (value - lo) / span * (width - label_w - 60)
        lines.append(
            f"<text x='0' y='{y + bar - 3}' font-size='11'>{label}</text>"
            f"<rect x='{label_w}' y='{y}' width='{length:.1f}' height='{bar}' fill='#1f77b4'/>"
            f"<text x='{label_w + length + 4:.1f}' y='{y + bar - 3}' font-size='11'>"
            f"{escape(fmt(value))}</text>"
        )
    height = len(lines) * (bar + 4)
    return (
        f"<div><b>{escape(short(metric))}</b>, best {len(lines)} runs</div>"
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
        f"role='img' aria-label='{escape(short(metric))} by run'>{''.join(lines)}</svg>"
    )
