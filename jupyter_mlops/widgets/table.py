"""The runs table: one page of rows in the browser, sorting and row selection sent back.

An anywidget (plotly's ``FigureWidget`` already needs anywidget): the front end is a
small ES module that draws the page it is given and reports header clicks (``sort``) and
row clicks (``selected``); the kernel does the sorting and paging, so only one page of
rows ever travels to the browser, however many runs there are.
"""

from __future__ import annotations

import anywidget
import traitlets

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


class RunTable(anywidget.AnyWidget):  # type: ignore[misc]
    """One page of the runs table; ``sort`` and ``selected`` come back from clicks."""

    _esm = _ESM
    _css = _CSS
    columns = traitlets.List(traitlets.Dict()).tag(sync=True)  # {key, label, kind}
    rows = traitlets.List(traitlets.List()).tag(sync=True)  # display texts, one page
    row_ids = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.Dict().tag(sync=True)  # {column, ascending}
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
