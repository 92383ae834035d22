"""The live chart of a tracked cell's step metrics: small static SVG line charts.

While a ``%%track`` cell's loop runs, the recorder hands its step histories to a
:class:`LiveChart` at most every 0.5 s; the chart is re-rendered as plain SVG and shown
through a display function the face provides (IPython's ``display`` with a display id,
updated in place). Static SVG needs no widget round trips and stays in the saved notebook
as it last looked. Nothing here imports IPython: the face supplies ``show``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

MAX_POINTS = 300  # points drawn per metric: enough for a curve, cheap to render
MAX_PANELS = 8
_W, _H, _PAD = 280, 120, 6

Show = Callable[[Any], Callable[[Any], None]]  # show(obj) -> update(obj)


def _thin(values: Sequence[float]) -> list[tuple[int, float]]:
    """(step, value) pairs, at most MAX_POINTS of them, always ending at the last step."""
    n = len(values)
    stride = max(1, math.ceil(n / MAX_POINTS))
    picked = [(i, values[i]) for i in range(0, n, stride)]
    if picked[-1][0] != n - 1:
        picked.append((n - 1, values[n - 1]))
    return [(i, v) for i, v in picked if math.isfinite(v)]


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class StepChart:
    """A snapshot of step histories, shown as one small line chart per metric."""

    def __init__(self, histories: Mapping[str, Sequence[float]]) -> None:
        self.series = {k: _thin(v) for k, v in list(histories.items())[:MAX_PANELS] if v}
        self.steps = {k: len(v) for k, v in histories.items() if v}
        self.last = {k: v[-1] for k, v in histories.items() if v}

    def __repr__(self) -> str:
        parts = [f"{k}={_fmt(self.last[k])} (step {self.steps[k] - 1})" for k in self.steps]
        return "step metrics: " + ", ".join(parts)

    def _panel(self, key: str, points: list[tuple[int, float]]) -> str:
        title = html.escape(f"{key} = {_fmt(self.last[key])}  ·  {self.steps[key]} steps")
        svg = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H + 18}" '
            f'viewBox="0 0 {_W} {_H + 18}" style="margin:0 8px 8px 0">',
            f'<text x="{_PAD}" y="12" font-size="11" font-family="sans-serif">{title}</text>',
            f'<rect x="0.5" y="18.5" width="{_W - 1}" height="{_H - 1}" fill="none" '
            'stroke="#ccc"/>',
        ]
        if points:
            lo = min(v for _, v in points)
            hi = max(v for _, v in points)
            span_x = max(points[-1][0], 1)
            # The curve keeps clear of the max/min labels (top and bottom right); a flat
            # series runs through the middle.
            top, bottom = 18 + 16, 18 + _H - 14

            def xy(step: int, value: float) -> str:
                x = _PAD + (_W - 2 * _PAD) * step / span_x
                share = (value - lo) / (hi - lo) if hi > lo else 0.5
                y = bottom - (bottom - top) * share
                return f"{x:.1f},{y:.1f}"

            line = " ".join(xy(s, v) for s, v in points)
            svg += [
                f'<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="{line}"/>',
                f'<text x="{_W - _PAD}" y="{18 + 12}" font-size="9" text-anchor="end" '
                f'fill="#666">{_fmt(hi)}</text>',
            ]
            if hi > lo:
                svg.append(
                    f'<text x="{_W - _PAD}" y="{18 + _H - 4}" font-size="9" text-anchor="end" '
                    f'fill="#666">{_fmt(lo)}</text>'
                )
        svg.append("</svg>")
        return "".join(svg)

    def _repr_html_(self) -> str:
        panels = "".join(self._panel(k, p) for k, p in self.series.items())
        return f'<div class="mlops-step-chart" style="display:flex;flex-wrap:wrap">{panels}</div>'


class LiveChart:
    """Shows step histories under the cell on the first call, updates them in place after."""

    def __init__(self, show: Show) -> None:
        self._show = show
        self._update: Callable[[Any], None] | None = None
        self.draws = 0
        self.broken = False

    def __call__(self, histories: Mapping[str, Sequence[float]]) -> None:
        if self.broken:
            return
        try:
            chart = StepChart(histories)
            if self._update is None:
                self._update = self._show(chart)
            else:
                self._update(chart)
            self.draws += 1
        except Exception:
            # Called from inside the user's loop: a display that fails must not fail the
            # cell; the run records the steps anyway.
            self.broken = True
