"""The runs table: one page of rows in the browser, sorting and row selection sent back.

An anywidget (plotly's ``FigureWidget`` already needs anywidget): the front end is a
small ES module that draws the page it is given and reports header clicks (``sort``) and
row clicks (``selected``); the kernel does the sorting and paging, so only one page of
rows ever travels to the browser, however many runs there are. ``RunPager`` fills it a
page at a time, with previous/next buttons.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING

import anywidget
import ipywidgets as widgets
import traitlets

from jupyter_mlops.widgets.compare_html import cell_text
from jupyter_mlops.widgets.figures import short

if TYPE_CHECKING:
    import pandas as pd

#: The verdict ``%reproduce`` records on a run (``reproduce.result.TAG_VERDICT``; widgets
#: sit beside ``reproduce`` in the layers, so the name is spelt here).
REPRODUCED_COLUMN = "tags.mlops.reproduced"

_ESM = r"""
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "mlops-runs-table";
  el.appendChild(root);
  const toggle = (id) => {
    const next = new Set(model.get("selected"));
    if (next.has(id)) next.delete(id); else next.add(id);
    model.set("selected", [...next]);
    model.save_changes();
  };
  const draw = () => {
    const cols = model.get("columns");
    const rows = model.get("rows");
    const ids = model.get("row_ids");
    const sort = model.get("sort") || {};
    const selected = new Set(model.get("selected"));
    const table = document.createElement("table");
    const head = table.createTHead().insertRow();
    head.appendChild(document.createElement("th"));
    cols.forEach((c) => {
      const th = document.createElement("th");
      const arrow = sort.column === c.key ? (sort.ascending ? " \u25B2" : " \u25BC") : "";
      th.textContent = c.label + arrow;
      th.title = "Sort by " + c.label;
      th.dataset.column = c.key;
      if (c.kind === "num") th.classList.add("num");
      th.addEventListener("click", () => {
        const ascending = sort.column === c.key ? !sort.ascending : c.kind !== "num";
        model.set("sort", { column: c.key, ascending });
        model.save_changes();
      });
      head.appendChild(th);
    });
    const body = table.createTBody();
    rows.forEach((row, i) => {
      const id = ids[i];
      const tr = body.insertRow();
      tr.dataset.runId = id;
      const box = document.createElement("input");
      box.type = "checkbox";
      box.checked = selected.has(id);
      box.title = "Select this run";
      tr.insertCell().appendChild(box);
      if (selected.has(id)) tr.classList.add("selected");
      row.forEach((value, j) => {
        const td = tr.insertCell();
        td.textContent = value == null ? "" : String(value);
        if (cols[j] && cols[j].kind === "num") td.classList.add("num");
      });
      tr.addEventListener("click", () => toggle(id));
    });
    if (!rows.length) {
      const td = body.insertRow().insertCell();
      td.colSpan = cols.length + 1;
      td.textContent = "No runs";
    }
    root.replaceChildren(table);
  };
  const names = ["columns", "rows", "row_ids", "selected", "sort"];
  names.forEach((n) => model.on("change:" + n, draw));
  draw();
  return () => names.forEach((n) => model.off("change:" + n, draw));
}
export default { render };
"""

_CSS = """
.mlops-runs-table { max-height: 420px; overflow: auto; border: 1px solid var(--jp-border-color2, #ddd); }
.mlops-runs-table table { border-collapse: collapse; font-size: 12px; width: max-content; min-width: 100%; }
.mlops-runs-table th { position: sticky; top: 0; cursor: pointer; user-select: none; text-align: left;
  background: var(--jp-layout-color2, #f2f2f2); padding: 3px 8px; white-space: nowrap; }
.mlops-runs-table td { padding: 2px 8px; white-space: nowrap; border-top: 1px solid var(--jp-border-color3, #eee); }
.mlops-runs-table .num { text-align: right; font-variant-numeric: tabular-nums; }
.mlops-runs-table tbody tr { cursor: pointer; }
.mlops-runs-table tbody tr:hover { background: var(--jp-layout-color3, #f5f5f5); }
.mlops-runs-table tr.selected { background: rgba(214, 39, 40, 0.15); }
"""  # noqa: E501


class RunTable(anywidget.AnyWidget):
    """One page of the runs table; ``sort`` and ``selected`` come back from clicks."""

    _esm = _ESM
    _css = _CSS
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)  # {key, label, kind}
    rows = traitlets.List(traitlets.List()).tag(sync=True)  # display texts, one page
    row_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.Dict().tag(sync=True)  # {column, ascending}
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)


def run_columns(
    metrics: Sequence[str],
    metric: str | None,
    params: Sequence[str],
    numeric: Collection[str],
    present: Collection[str] = (),
) -> list[dict[str, str]]:
    """The table's columns ({key, label, kind}): the run, ``metrics`` (``metric`` first),
    ``params`` (right-aligned if in ``numeric``), data and models; and the verdict of
    ``%reproduce`` when the frame's columns (``present``) say some run was reproduced."""
    columns = [
        {"key": "run_name", "label": "run", "kind": "text"},
        {"key": "run_id", "label": "id", "kind": "text"},
        {"key": "status", "label": "status", "kind": "text"},
        {"key": "start_time", "label": "started (UTC)", "kind": "text"},
        {"key": "duration", "label": "duration (s)", "kind": "num"},
    ]
    ordered = sorted(metrics, key=lambda m: (m != metric, m))
    columns += [{"key": m, "label": short(m), "kind": "num"} for m in ordered]
    for p in params:
        columns.append({"key": p, "label": short(p), "kind": "num" if p in numeric else "text"})
    columns += [
        {"key": "data", "label": "data", "kind": "text"},
        {"key": "models", "label": "models", "kind": "text"},
    ]
    if REPRODUCED_COLUMN in present:
        columns.append({"key": REPRODUCED_COLUMN, "label": "reproduced", "kind": "text"})
    return columns


class RunPager:
    """Shows one page of runs in ``table``, with previous/next buttons and "runs a–b of n"
    (``box``); the buttons ask ``show`` for the page before or after."""

    def __init__(self, table: RunTable, show: Callable[[int], None]) -> None:
        self.table = table
        self.page = 0
        self.prev_button = widgets.Button(description="◀ previous", layout={"width": "110px"})
        self.next_button = widgets.Button(description="next ▶", layout={"width": "110px"})
        self.label = widgets.Label()
        self.prev_button.on_click(lambda _: show(self.page - 1))
        self.next_button.on_click(lambda _: show(self.page + 1))
        self.box = widgets.HBox([self.prev_button, self.label, self.next_button])

    def show(
        self,
        frame: pd.DataFrame,
        columns: Sequence[Mapping[str, str]],
        page: int,
        page_size: int,
    ) -> int:
        """Show rows ``page * page_size`` onwards of ``frame`` in ``columns`` ({key, label,
        kind}); the page shown (``page`` kept within the pages there are)."""
        pages = max(1, -(-len(frame) // page_size))
        self.page = min(max(0, page), pages - 1)
        start = self.page * page_size
        rows = frame.iloc[start : start + page_size]
        texts = []
        for record in rows[[c["key"] for c in columns]].itertuples(index=False, name=None):
            texts.append([cell_text(c["key"], v) for c, v in zip(columns, record, strict=True)])
        with self.table.hold_sync():
            self.table.columns = [dict(c) for c in columns]
            self.table.rows = texts
            self.table.row_ids = rows["run_id"].astype(str).tolist()
        end = start + len(rows)
        self.label.value = f"runs {start + 1:,}–{end:,} of {len(frame):,}"
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= pages - 1
        return self.page
