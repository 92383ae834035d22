"""Track a piece of code (a notebook cell) as a run: what ``%%track`` does, minus IPython.

The face supplies how to execute the code (IPython compiles cells its own way); this
module reads the code, opens the run, executes, and logs what the code produced.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.config import Config
from jupyter_mlops.tracking.capture import analyse_cell, capture
from jupyter_mlops.tracking.lifecycle import track
from jupyter_mlops.tracking.run import TrackedRun
from jupyter_mlops.tracking.usermlflow import UserLogged, joined


@dataclass
class CellResult:
    """The value of the cell's last expression and the run that recorded it."""

    value: Any
    run: TrackedRun


def track_code(
    source: str,
    namespace: Mapping[str, Any],
    execute: Callable[[], Any],
    *,
    experiment: str | None = None,
    name: str | None = None,
    data: Iterable[str | os.PathLike[str]] = (),
    params: Iterable[str] = (),
    metrics: Iterable[str] = (),
    model: str | None = None,
    log_models: bool = True,
    search_runs: bool = False,
    tags: Mapping[str, str] | None = None,
    raw_source: str | None = None,
    config: Config | None = None,
    on_run: Callable[[TrackedRun], None] | None = None,
) -> CellResult:
    """Run ``execute()`` inside a tracked run and log what ``source`` assigned.

    ``source`` is the plain-Python code ``execute`` runs (used to find params, metrics,
    models and the data models were fitted on); ``raw_source`` is what the user wrote,
    stored as the run's code. If ``execute`` raises, the params and metrics it set
    before failing are still logged, the run ends FAILED and the exception propagates.
    ``on_run`` is called with the run once it has ended, successful or not.
    ``search_runs`` logs one child run per candidate of a hyperparameter search.
    """
    facts = analyse_cell(source)  # a SyntaxError surfaces before any run exists
    run_ref: TrackedRun | None = None
    try:
        with track(
            experiment,
            name=name,
            data=data,
            tags=tags,
            namespace=namespace,
            search_runs=search_runs,
            config=config,
        ) as run:
            run_ref = run
            failed = True
            user: UserLogged | None = None
            try:
                # The cell's own mlflow.start_run()/log_model() join this run (usermlflow.py).
                with joined(run, rename=name is None) as user:
                    value = execute()
                failed = False
            finally:
                # On failure, keep what can be kept without masking the cell's exception.
                guard = contextlib.suppress(Exception) if failed else contextlib.nullcontext()
                with guard:
                    run.log_source(raw_source if raw_source is not None else source)
                    captured = capture(
                        facts,
                        namespace,
                        extra_params=params,
                        extra_metrics=metrics,
                        model_names=[model] if model else None,
                        with_models=log_models and not failed,
                    )
                    run.log_captured(captured, with_models=log_models and not failed, user=user)
        return CellResult(value=value, run=run)
    finally:
        if run_ref is not None and on_run is not None:
            on_run(run_ref)
