"""Track a piece of code (a notebook cell) as a run: what ``%%track`` does, minus IPython.

The face supplies how to execute the code (IPython compiles cells its own way); this
module reads the code, opens the run, executes, and logs what the code produced. The face
applies the AST transform it is given (after its own transforms), so that the cell
reports what this execution actually assigned, stepped and fitted (see
:mod:`jupyter_mlops.tracking.instrument`).
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import inspect
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.config import Config
from jupyter_mlops.tracking.capture import Captured, CellFacts, analyse_cell, capture
from jupyter_mlops.tracking.lifecycle import track
from jupyter_mlops.tracking.livechart import LiveChart, Show
from jupyter_mlops.tracking.recorder import Recorder
from jupyter_mlops.tracking.run import TrackedRun
from jupyter_mlops.tracking.usermlflow import UserLogged, joined

Transform = Callable[[ast.Module], ast.Module]

# What a run records so it can be re-executed (the reproduce package reads these back).
CONTEXT_ARTIFACT = "mlops/context.py"  # the earlier cells the cell depends on
_CONTEXT_HEADER = "# The earlier kernel cells this run's cell depends on, in execution order.\n"
_log = safe_logger(__name__)


@dataclass
class CellResult:
    """The value of the cell's last expression and the run that recorded it."""

    value: Any
    run: TrackedRun


def track_code(
    source: str,
    namespace: Mapping[str, Any],
    execute: Callable[[Transform], Any] | Callable[[], Any],
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
    live: Show | None = None,
    history: Sequence[str] | None = None,
    track_args: str | None = None,
) -> CellResult:
    """Run ``execute(transform)`` inside a tracked run and log what the code assigned.

    ``source`` is the plain-Python code ``execute`` runs. ``execute`` applies
    ``transform`` to the code's AST before compiling it; the transformed code reports the
    bindings, loop steps and fit calls that actually ran, so only values this execution
    produced are recorded. (An ``execute`` taking no argument still works: names read off
    ``source`` whose binding changed are recorded, as a best effort.) ``raw_source`` is
    what the user wrote, stored as the run's code. If ``execute`` raises, the params and
    metrics it set before failing are still logged, the run ends FAILED and the exception
    propagates. ``on_run`` is called with the run once it has ended, successful or not.
    ``live(chart)`` shows the step-metrics chart and returns its updater (notebooks).
    ``search_runs`` logs one child run per candidate of a hyperparameter search.

    For a reproduction: ``history`` is the kernel's earlier cells as typed (``history[0]``
    is ``In[1]``); the ones the code depends on are stored as ``mlops/context.py``.
    ``track_args`` is the ``%%track`` line as typed (tag ``mlops.track.args``).
    """
    facts = analyse_cell(source)  # a SyntaxError surfaces before any run exists
    recorder = Recorder(live=LiveChart(live) if live is not None else None)
    before = {n: namespace[n] for n in facts.assigned if n in namespace}
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
            track_args=track_args,
        ) as run:
            run_ref = run
            failed = True
            user: UserLogged | None = None
            try:
                # The cell's own mlflow.start_run()/log_model() join this run (usermlflow.py).
                with joined(run, rename=name is None) as user:
                    value = _execute(execute, recorder, namespace)
                failed = False
            finally:
                # On failure, keep what can be kept without masking the cell's exception.
                guard = contextlib.suppress(Exception) if failed else contextlib.nullcontext()
                with guard:
                    run.log_source(raw_source if raw_source is not None else source)
                    captured = _capture(
                        recorder,
                        facts if recorder.instrumented else _rebound(facts, before, namespace),
                        namespace,
                        run,
                        user,
                        extra_params=params,
                        extra_metrics=metrics,
                        model_names=[model] if model else None,
                        with_models=log_models and not failed,
                    )
                    run.log_captured(captured, with_models=log_models and not failed, user=user)
                _record_rebuild(run, source, namespace, history=history)
        return CellResult(value=value, run=run)
    finally:
        if run_ref is not None and on_run is not None:
            on_run(run_ref)


def _record_rebuild(
    run: TrackedRun,
    source: str,
    namespace: Mapping[str, Any],
    *,
    history: Sequence[str] | None,
) -> None:
    """Record what re-executing the code elsewhere needs, and what may keep it from giving
    the same results. Best effort: a failure here is logged, never the cell's (its params,
    metrics and models are recorded already)."""
    context = ""
    with _logged("the cell's context (mlops/context.py)"):
        if history is not None:
            from jupyter_mlops.tracking.slicing import context_source, dependency_slice

            context = context_source(dependency_slice(source, history))
            run.log_text(_CONTEXT_HEADER + context, CONTEXT_ARTIFACT)
    with _logged("the packages the cell used (mlops/requirements.txt)"):
        from jupyter_mlops.tracking.environment import (
            REQUIREMENTS_ARTIFACT,
            requirements,
            requirements_text,
        )

        pins = requirements(namespace, [source, context])
        run.log_text(requirements_text(pins), REQUIREMENTS_ARTIFACT)
    with _logged("the reproducibility risks"):
        from jupyter_mlops.tracking.risks import TAG_RISKS, find_risks

        found = find_risks(
            source,
            namespace,
            data_paths=[s.path for s in run.data],
            root=run.config.root,
            context_source=context,
        )
        if found:
            run.notes.extend(f"may not reproduce: {risk.message}" for risk in found)
            run.set_tags({TAG_RISKS: json.dumps([risk.to_dict() for risk in found])})


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """Run the block; an exception in it is logged as ``what`` not recorded, not raised."""
    try:
        yield
    except Exception as exc:
        _log.warning("jupyter-mlops: %s not recorded: %r", what, exc)


def _execute(
    execute: Callable[[Transform], Any] | Callable[[], Any],
    recorder: Recorder,
    namespace: Mapping[str, Any],
) -> Any:
    """``execute(recorder.instrument)`` with the recorder in the namespace; a legacy
    ``execute()`` (or a read-only namespace) runs uninstrumented."""
    try:
        inspect.signature(execute).bind(recorder.instrument)
        takes_transform = isinstance(namespace, MutableMapping)
    except (TypeError, ValueError):
        takes_transform = False
    if not takes_transform:
        return execute()  # type: ignore[call-arg]
    assert isinstance(namespace, MutableMapping)
    with recorder.installed(namespace):
        return execute(recorder.instrument)  # type: ignore[call-arg]


def _rebound(
    facts: CellFacts, before: Mapping[str, Any], namespace: Mapping[str, Any]
) -> CellFacts:
    """``facts`` cut to the names whose binding the uninstrumented code changed."""
    kept = [
        n
        for n in facts.assigned
        if n in namespace and (n not in before or before[n] is not namespace[n])
    ]
    return CellFacts(
        assigned=kept,
        literals={n: v for n, v in facts.literals.items() if n in kept},
        fitted=facts.fitted,
        fit_data=facts.fit_data,
    )


def _capture(
    recorder: Recorder,
    facts: CellFacts,
    namespace: Mapping[str, Any],
    run: TrackedRun,
    user: UserLogged | None,
    **options: Any,
) -> Captured:
    """What the execution produced; metric keys the user logged in the cell are theirs
    (the run is read back only when the cell's own MLflow code wrote to it)."""
    if recorder.instrumented:
        executed = recorder.result(namespace)
        # What ran, with what the code says about it (the tree names numpy arrays after
        # their frame; the names a model was called with find a PyTorch model's input).
        facts = dataclasses.replace(
            executed.facts,
            tree=facts.tree,
            mentioned=facts.mentioned,
            called_with=facts.called_with,
        )
        options.update(fit_inputs=executed.fit_inputs, histories=executed.histories)
    skip = run.logged_metric_keys() if user is not None and user.wrote else set()
    return capture(facts, namespace, skip_metrics=skip, **options)
