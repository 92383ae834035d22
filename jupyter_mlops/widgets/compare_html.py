"""The comparison's HTML: header, notes, MLflow links, the selected runs' differences, and
the static copy (table rows and an SVG bar chart) that a saved notebook shows.

Plain strings from plain values, no widgets: the same text is shown live and kept in the
notebook, where no kernel renders the widget and no JavaScript runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from html import escape
from typing import TYPE_CHECKING, Any

from jupyter_mlops.tracking.runs import run_url, sort_runs
from jupyter_mlops.widgets.figures import fmt, short

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.tracking.runs import RunDiff

STATIC_ROWS = 50  # table rows kept in the static copy
MAX_CONSTANT_PARAMS = 8  # params equal in every run, named in the header
SELECTION_HINT = (
    "<div style='color:#666;font-size:12px'>Click rows in the table or points in "
    "the scatter (or drag a box) to select runs and see what differs between "
    "them.</div>"
)
_SOURCE_DIFF_CSS = (
    "<style>.mlops-source-diff table.diff{font-family:monospace;font-size:11px}"
    ".mlops-source-diff .diff_add{background:#e6ffec}.mlops-source-diff .diff_chg"
    "{background:#fff5b1}.mlops-source-diff .diff_sub{background:#ffebe9}</style>"
)


def as_text(value: Any) -> str:
    """A cell value as text; missing (None, NaN: pandas' str columns use NaN) as ""."""
    return (
        value if isinstance(value, str) else "" if value is None or value != value else str(value)
    )


def cell_text(key: str, value: Any) -> str:
    """What the table shows for ``value`` in column ``key``."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    if key == "run_id":
        return str(value)[:8]
    if key in ("start_time", "end_time"):
        return str(value.strftime("%Y-%m-%d %H:%M:%S"))
    return fmt(value)


def note_html(text: str, error: bool = False) -> str:
    """A one-line message under the widget; errors in red."""
    colour = "#c62828" if error else "#555"
    return f"<div style='color:{colour};font-size:12px'>{escape(text)}</div>"


def title_of(frame: pd.DataFrame) -> str:
    """The runs' experiments, for a title: the first three by name and how many more."""
    if frame.empty or "experiment" not in frame.columns:
        return "Runs"
    names = sorted({str(e) for e in frame["experiment"].dropna()})
    return ", ".join(names[:3]) + (f" (+{len(names) - 3})" if len(names) > 3 else "")


def header_html(
    title: str,
    count: int,
    description: str,
    metric: str | None,
    lower_is_better: bool,
    notes: Sequence[str],
    constants: Mapping[str, Any],
) -> str:
    """The title line: experiment, how many runs, how they were chosen, the metric; then
    ``notes`` and the params equal in every run (``constants``, with their value)."""
    parts = [f"<b>{escape(title)}</b>", f"{count:,} run{'s' if count != 1 else ''}"]
    if description:
        parts.append(escape(description))
    if metric:
        better = "lower" if lower_is_better else "higher"
        parts.append(f"metric <code>{escape(short(metric))}</code> ({better} is better)")
    notes = list(notes)
    if constants:
        shown = list(constants.items())[:MAX_CONSTANT_PARAMS]
        same = ", ".join(f"{short(p)}={fmt(value)}" for p, value in shown)
        more = len(constants) - len(shown)
        notes.append(
            f"{len(constants)} param(s) equal in every run, not shown: {same}"
            + (f" and {more} more" if more > 0 else "")
        )
    body = " &middot; ".join(parts)
    extra = "".join(f"<div style='color:#666'>{escape(n)}</div>" for n in notes)
    return f"<div style='font-size:13px'>{body}{extra}</div>"


def mlflow_link_html(ui_url: str | None, experiment_id: str, run: pd.Series | None) -> str:
    """A link to ``run`` (or, without one, to the experiment) in the MLflow UI, or how to
    start the UI when none is running."""
    if not ui_url:
        return (
            "<span style='color:#888;font-size:12px;margin-left:8px'>MLflow UI: not running "
            "(<code>mlflow ui --backend-store-uri &lt;store&gt;</code>, then rerun)</span>"
        )
    if run is not None:
        url = run_url(ui_url, experiment_id, str(run["run_id"]))
        label = f"Open {escape(as_text(run['run_name']) or run['run_id'][:8])} in MLflow ↗"
    else:
        url, label = f"{ui_url}/#/experiments/{experiment_id}", "Open experiment in MLflow ↗"
    return (
        f"<a href='{escape(url, quote=True)}' target='_blank' rel='noopener' "
        f"style='margin-left:8px'>{label}</a>"
    )


def diff_html(diff: RunDiff, metric: str | None, *, more: int = 0) -> str:
    """Selected runs side by side: differing params and data, metrics, cell-source diff."""
    head = "".join(
        f"<th style='text-align:left'>{escape(n)}<br><code style='font-weight:normal'>"
        f"{escape(r[:8])}</code></th>"
        for n, r in zip(diff.names, diff.run_ids, strict=True)
    )
    width = len(diff.run_ids) + 1
    metrics = dict(
        sorted(diff.metrics.items(), key=lambda kv: (f"metrics.{kv[0]}" != metric, kv[0]))
    )
    single = len(diff.run_ids) == 1
    params = diff.params if not single else {k: [v] for k, v in diff.same_params.items()}
    body = _diff_rows("metrics", metrics, width, highlight=False)
    body += _diff_rows("params" if single else "params that differ", params, width, not single)
    body += _diff_rows("data that differs", diff.data, width, highlight=True)
    same = ""
    if not single:
        same = (
            f"<div style='color:#666'>{len(diff.same_params)} param(s) equal in all selected runs"
            + ("" if diff.params else "; no param differs")
            + ("" if diff.data else "; same data")
            + "</div>"
        )
    extra = f"<div style='color:#666'>and {more} more selected</div>" if more > 0 else ""
    return (
        "<div class='mlops-selection' style='font-size:12px'>"
        f"<b>Selected runs</b>{extra}<table><thead><tr><th></th>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table>{same}{_source_diffs(diff)}{_SOURCE_DIFF_CSS}</div>"
    )


def _diff_rows(title: str, items: dict[str, list[Any]], width: int, highlight: bool) -> str:
    if not items:
        return ""
    style = "background:rgba(214,39,40,0.10)" if highlight else ""
    out = [f"<tr><th colspan='{width}' style='text-align:left'>{title}</th></tr>"]
    for key, values in items.items():
        cells = "".join(f"<td style='{style}'>{escape(fmt(v))}</td>" for v in values)
        out.append(f"<tr><td><code>{escape(key)}</code></td>{cells}</tr>")
    return "".join(out)


def _source_diffs(diff: RunDiff) -> str:
    """The cell source of each selected run against the first one's."""
    if len(diff.run_ids) < 2:
        return ""
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
    return "<div><b>cell source</b></div>" + "".join(parts) if parts else ""


def static_html(
    header: str,
    frame: pd.DataFrame,
    columns: Sequence[Mapping[str, str]],
    metric: str | None,
    ascending: bool,
) -> str:
    """The comparison as plain HTML: ``header``, a bar chart of the best runs by ``metric``
    and the first rows of ``frame`` in ``columns`` ({key, label, kind})."""
    head = f"<div class='mlops-compare-static' style='font-size:12px'><div>{header}</div>"
    if frame.empty:
        return head + "</div>"
    rows = frame.head(STATIC_ROWS)
    th = "".join(f"<th style='text-align:left'>{escape(c['label'])}</th>" for c in columns)
    body = []
    for record in rows[[c["key"] for c in columns]].itertuples(index=False, name=None):
        cells = "".join(
            f"<td style='text-align:{'right' if c['kind'] == 'num' else 'left'}'>"
            f"{escape(cell_text(c['key'], v))}</td>"
            for c, v in zip(columns, record, strict=True)
        )
        body.append(f"<tr>{cells}</tr>")
    more = len(frame) - len(rows)
    tail = f"<div style='color:#666'>… {more:,} more runs</div>" if more > 0 else ""
    note = (
        "<div style='color:#666'>Static copy: run the cell in a live kernel for the "
        "interactive comparison.</div>"
    )
    return (
        f"{head}{_bars_svg(frame, metric, ascending)}"
        f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"{tail}{note}</div>"
    )


def _bars_svg(frame: pd.DataFrame, metric: str | None, ascending: bool, top: int = 20) -> str:
    """A small inline SVG bar chart of the best runs by ``metric`` (no JavaScript needed)."""
    import numpy as np

    if metric is None:
        return ""
    best = sort_runs(frame, metric, ascending=ascending).head(top)
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
        label = escape(as_text(name) or str(rid)[:8])[:28]
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
