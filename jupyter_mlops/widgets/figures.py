"""The comparison's plots as plain plotly trace and layout dicts, built from a ``runs()`` frame.

Plotly is handed only finite numbers, strings and None: text params are encoded as
categories, missing values get their own "n/a" tick, so no user data can make plotly raise.
Kept free of widgets so the figures can be checked (and reused) on their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.tracking.runs import numbers_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_CATEGORIES = 40  # a text param with more distinct values says little on an axis
MAX_DIMENSIONS = 12  # params on the parallel-coordinates plot, besides the metric
WEBGL_ABOVE = 2000  # points: SVG scatter is smooth below this, WebGL above
SELECTED = "#d62728"
UNSELECTED = "#c8c8c8"
NA = "n/a"
PLOT_MARGIN = {"l": 60, "r": 30, "t": 40, "b": 40}
COLOURS = [  # plotly's default colour sequence
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


@dataclass
class Encoded:
    """A column as numbers for an axis: text becomes category codes, missing a low tick."""

    values: np.ndarray
    kind: str  # "num" | "cat"
    tickvals: list[float] | None = None
    ticktext: list[str] | None = None

    @property
    def usable(self) -> bool:
        return self.kind in ("num", "cat")


def layout(*, width: int, height: int, title: str) -> dict[str, Any]:
    """A figure layout in the comparison's plain style."""
    return {
        # A fixed size: the figure is drawn before the notebook has laid out its box, and
        # plotly's widget only resizes on window events.
        "width": width,
        "height": height,
        "margin": PLOT_MARGIN,
        "title": {"text": title, "font": {"size": 13}},
        # Plotly's named templates are deep-copied into every figure (~0.1 s each).
        "template": "none",
        "paper_bgcolor": "white",
        "plot_bgcolor": "white",
        "font": {"size": 11},
        "colorway": COLOURS,
        "xaxis": {"gridcolor": "#eee", "zeroline": False},
        "yaxis": {"gridcolor": "#eee", "zeroline": False},
        "showlegend": True,
        "legend": {"font": {"size": 10}, "orientation": "h", "y": -0.25},
    }


def short(name: str) -> str:
    """``params.n_estimators`` -> ``n_estimators``."""
    for prefix in ("params.", "metrics.", "tags."):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def fmt(value: Any) -> str:
    """A value for a table cell or a tick: numbers to 4 significant digits."""
    if value is None:
        return ""
    if isinstance(value, float):
        if value != value:
            return ""
        return f"{value:.4g}"
    return str(value)


def encode(series: pd.Series) -> Encoded:
    """``series`` as finite floats for a plot axis.

    All-numeric values stay numbers; otherwise values become the codes of their sorted
    categories (ticks show the text). Missing values sit one step below the rest, ticked
    "n/a". ``kind`` is "skip" for a column with too many distinct texts to read.
    """
    import numpy as np
    import pandas as pd

    numbers = numbers_of(series)
    missing = series.isna().to_numpy()
    finite = np.isfinite(numbers)
    if (~missing).any() and (finite | missing).all():
        values = numbers.copy()
        if not missing.any():
            return Encoded(values, "num")
        lo, hi = float(numbers[finite].min()), float(numbers[finite].max())
        gap = (hi - lo) * 0.15 or 1.0
        values[missing] = lo - gap
        ticks = [float(t) for t in np.linspace(lo, hi, 5 if hi > lo else 1)]
        return Encoded(values, "num", [lo - gap, *ticks], [NA, *(fmt(t) for t in ticks)])
    codes, uniques = pd.factorize(series)  # -1 for missing values
    if len(uniques) > MAX_CATEGORIES:
        return Encoded(np.zeros(len(series)), "skip")
    texts = [str(u) for u in uniques]
    order = sorted(range(len(texts)), key=lambda i: _natural(texts[i]))
    rank = np.empty(len(texts) + 1)
    rank[order] = np.arange(len(texts), dtype=float)
    rank[-1] = -1.0  # missing
    values = rank[codes]
    tickvals = [float(i) for i in range(len(texts))]
    ticktext = [texts[i] for i in order]
    if missing.any():
        tickvals, ticktext = [-1.0, *tickvals], [NA, *ticktext]
    return Encoded(values, "cat", tickvals, ticktext)


def _natural(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def rank_params(
    frame: pd.DataFrame,
    params: Sequence[str],
    metric: str | None,
    encoded: Mapping[str, Encoded] | None = None,
) -> list[str]:
    """``params`` ordered by how strongly they go with ``metric`` (|rank correlation|).

    ``encoded`` may hold :func:`encode` results aligned with ``frame``, to reuse them.
    """
    import numpy as np
    import pandas as pd

    if metric is None or metric not in frame.columns or len(frame) < 3:
        return list(params)
    target = frame[metric].rank().to_numpy(float)
    scores = {}
    for p in params:
        enc = encoded[p] if encoded and p in encoded else encode(frame[p])
        if not enc.usable:
            scores[p] = -1.0
            continue
        ranked = pd.Series(enc.values).rank().to_numpy(float)
        ok = ~np.isnan(target) & ~np.isnan(ranked)
        if ok.sum() < 3 or np.std(ranked[ok]) == 0 or np.std(target[ok]) == 0:
            scores[p] = 0.0
            continue
        scores[p] = abs(float(np.corrcoef(ranked[ok], target[ok])[0, 1]))
    return sorted(params, key=lambda p: -scores[p])


def parcoords(
    frame: pd.DataFrame,
    params: Sequence[str],
    metric: str | None,
    selected: Iterable[str] = (),
    encoded: Mapping[str, Encoded] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A parallel-coordinates trace of ``params`` and then ``metric``, one line per run.

    Lines are coloured by the metric, or, when runs are selected, red for those and grey
    for the rest. Returns the trace and notes about params left out.
    """
    import numpy as np

    notes: list[str] = []
    dims = []
    encoded = encoded or {}
    for column in params:
        enc = encoded.get(column) or encode(frame[column])
        if not enc.usable:
            notes.append(f"{short(column)} has too many distinct values to plot")
            continue
        dims.append(_dimension(short(column), enc))
    color: Any = None
    colorscale: Any = "Viridis"
    showscale = True
    if metric is not None and metric in frame.columns:
        enc = encoded.get(metric) or encode(frame[metric])
        dims.append(_dimension(short(metric), enc))
        color = enc.values
    chosen = set(selected)
    if chosen:
        ids = frame["run_id"].to_numpy(dtype=object)
        # A set lookup per run: np.isin on object arrays compares every pair.
        color = np.fromiter((rid in chosen for rid in ids), dtype=float, count=len(ids))
        colorscale, showscale = [[0, UNSELECTED], [1, SELECTED]], False
    line: dict[str, Any] = {"colorscale": colorscale, "showscale": showscale}
    if color is not None:
        line["color"] = color
        if chosen:
            line.update(cmin=0, cmax=1)
        else:
            line["colorbar"] = {"title": {"text": short(metric or "")}, "thickness": 12}
    trace = {"type": "parcoords", "dimensions": dims, "line": line}
    return trace, notes


def _dimension(label: str, enc: Encoded) -> dict[str, Any]:
    dim: dict[str, Any] = {"label": label, "values": enc.values}
    if enc.tickvals is not None:
        dim["tickvals"] = enc.tickvals
        dim["ticktext"] = enc.ticktext
    if len(enc.values):
        lo, hi = float(enc.values.min()), float(enc.values.max())
        dim["range"] = [lo, hi] if hi > lo else [lo - 1, hi + 1]
    return dim


def scatter(
    frame: pd.DataFrame, x: str, y: str, selected: Iterable[str] = ()
) -> tuple[dict[str, Any], list[str]]:
    """A scatter of column ``x`` against ``y``, one point per run that has both.

    Text x values become a category axis. Returns the trace and the run ids of its points
    in order (to map clicks and selections back to runs).
    """
    import numpy as np
    import pandas as pd

    both = frame[x].notna() & frame[y].notna()
    rows = frame[both]
    ids = rows["run_id"].astype(str).tolist()
    xs = rows[x]
    if x.startswith("params.") or xs.dtype == object or pd.api.types.is_string_dtype(xs.dtype):
        numbers = numbers_of(xs)
        xs = pd.Series(numbers, index=xs.index) if not np.isnan(numbers).any() else xs.astype(str)
    ys = pd.Series(numbers_of(rows[y]), index=rows.index)
    if pd.api.types.is_numeric_dtype(xs.dtype):
        finite = np.isfinite(xs.to_numpy(float)) & np.isfinite(ys.to_numpy(float))
    else:
        finite = np.isfinite(ys.to_numpy(float))
    keep = np.flatnonzero(finite)  # infinities are left out like missing values
    ids = [ids[i] for i in keep]
    names = rows["run_name"].astype(object).where(rows["run_name"].notna(), "")
    xs_out = xs.to_numpy()[keep]
    trace: dict[str, Any] = {
        "type": "scattergl" if len(ids) > WEBGL_ABOVE else "scatter",
        "mode": "markers",
        "x": xs_out if pd.api.types.is_numeric_dtype(xs.dtype) else [str(v) for v in xs_out],
        "y": ys.to_numpy(float)[keep],
        # One string per point: a 2-D customdata would be walked element by element when
        # the widget looks for binary buffers.
        "text": [
            f"{n} ({i[:8]})" for n, i in zip(names.to_numpy(dtype=object)[keep], ids, strict=True)
        ],
        "hovertemplate": f"%{{text}}<br>{short(x)}=%{{x}}<br>{short(y)}=%{{y}}<extra></extra>",
        "marker": {"size": 8, "color": "#1f77b4"},
        "selected": {"marker": {"color": SELECTED, "size": 11}},
        "unselected": {"marker": {"opacity": 0.35}},
        "selectedpoints": selected_points(ids, selected),
    }
    return trace, ids


def selected_points(ids: Sequence[str], selected: Iterable[str]) -> list[int] | None:
    """Indices of the selected runs among a trace's points (None: nothing selected)."""
    chosen = set(selected)
    if not chosen:
        return None
    return [i for i, rid in enumerate(ids) if rid in chosen]


def history(
    history_frame: pd.DataFrame, metric: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    """One line per run of ``metric`` against step (``history_frame`` from metric_history)."""
    import numpy as np

    key = short(metric)
    rows = history_frame[history_frame["key"] == key]
    traces = []
    for run_id, group in rows.groupby("run_id", sort=False):
        values = group["value"].to_numpy(float)
        finite = np.isfinite(values)
        traces.append(
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": names.get(str(run_id), str(run_id)[:8]),
                "x": group["step"].to_numpy(float)[finite],
                "y": values[finite],
                "hovertemplate": f"step %{{x}}<br>{key}=%{{y}}<extra>%{{fullData.name}}</extra>",
            }
        )
    return traces


def panel_layout(title: str, height: int = 260, **extra: Any) -> dict[str, Any]:
    """The plotly layout of one small panel of the monitor and performance views."""
    return {
        "height": height,
        "margin": {"l": 50, "r": 20, "t": 40, "b": 35},
        "title": {"text": title, "font": {"size": 13}},
        "template": "plotly_white",
        "legend": {"font": {"size": 10}},
        **extra,
    }
