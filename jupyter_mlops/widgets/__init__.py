"""Widgets over the core API: run comparison (``compare``, building the ``CompareWidget`` of
``comparison.py``, which draws with ``compare_plots`` and writes HTML with ``compare_html``);
the drift and monitoring widgets live in their own modules here.

Heavy libraries (pandas, plotly, ipywidgets) load when a widget is built, not on import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jupyter_mlops.config import Config
    from jupyter_mlops.widgets.comparison import CompareWidget

__all__ = ["compare"]

# Where ``mlflow ui`` listens by default; asked whether a UI is up for a local store.
DEFAULT_UI_PROBE = ("http://127.0.0.1:5000",)


def compare(
    experiment: str | Sequence[str] | None = None,
    *,
    run_ids: Sequence[str] = (),
    where: str | None = None,
    metric: str | None = None,
    top: int | None = None,
    ascending: bool | None = None,
    params: Sequence[str] | None = None,
    notebook: str | None = None,
    page_size: int = 50,
    ui_probe: Sequence[str] = DEFAULT_UI_PROBE,
    config: Config | None = None,
) -> CompareWidget:
    """A widget comparing tracked runs: table, plots, differences, register/open buttons.

    Runs are chosen as in :func:`jupyter_mlops.runs` (experiment, ``run_ids``, ``where``,
    ``metric``/``top``); ``metric`` is also the one plotted (default: the metric most runs
    have); ``params`` picks the parallel-coordinates axes. No matching run gives a widget
    that says so; a malformed ``where`` raises ``QueryError``.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.runs import Where, mlflow_ui_url, runs
    from jupyter_mlops.widgets.comparison import CompareWidget

    config = config or load_config()
    frame = runs(
        experiment,
        run_ids=run_ids,
        where=where,
        metric=metric,
        top=top,
        ascending=ascending,
        notebook=notebook,
        config=config,
    )
    described = []
    if run_ids:
        described.append(f"runs {' '.join(run_ids)}")
    if where:
        described.append(f"where {where}")
    if top:
        described.append(f"top {top}")
    if frame.empty and where:
        unknown = Where(where).missing_columns(runs(experiment, config=config))
        if unknown:
            described.append(f"no run has {', '.join(unknown)}")
    title = None
    if frame.empty and experiment:
        title = experiment if isinstance(experiment, str) else ", ".join(experiment)
    return CompareWidget(
        frame,
        metric=metric if metric and not frame.empty else None,
        params=params,
        ascending=ascending,
        title=title,
        description="; ".join(described),
        page_size=page_size,
        ui_url=mlflow_ui_url(config, probe=ui_probe),
        config=config,
    )
