"""Notebooks as parameterised, reproducible steps (papermill), pipelines of them, and retraining.

::

    from jupyter_mlops import pipelines

    pipelines.parameterize("notebooks/train.ipynb")          # tag the parameters cell
    run = pipelines.run("pipeline.yaml", {"n_estimators": 200})
    sweep = pipelines.sweep("pipeline.yaml", {"n_estimators": [50, 100, 200]})
    pipelines.export_dvc("pipeline.yaml")                    # dvc.yaml + params.yaml
    pipelines.retrain("iris-rf", "pipeline.yaml", when="drift_share > 0.3")
    pipelines.history()

Only light modules are imported here; papermill, MLflow, DVC, Dask and YAML load when used.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from jupyter_mlops.pipelines.execute import NotebookExecutionError, execute_notebook
from jupyter_mlops.pipelines.executors import known_executors, register_executor
from jupyter_mlops.pipelines.export import export_dvc, new_pipeline
from jupyter_mlops.pipelines.history import History, history
from jupyter_mlops.pipelines.parameterize import (
    ParameterError,
    Parameterized,
    notebook_parameters,
    parameterize,
)
from jupyter_mlops.pipelines.retrain import (
    RetrainDecision,
    install_alert_action,
    list_decisions,
    retrain,
    run_alert_action,
    watch,
)
from jupyter_mlops.pipelines.runner import (
    PipelineRun,
    StepRun,
    Sweep,
    expand_grid,
    get_pipeline_run,
    list_pipeline_runs,
    load_grid,
    parse_overrides,
    run,
    sweep,
)
from jupyter_mlops.pipelines.spec import Pipeline, PipelineError, Step, load_pipeline

__all__ = [
    "History",
    "NotebookExecutionError",
    "ParameterError",
    "Parameterized",
    "Pipeline",
    "PipelineError",
    "PipelineRun",
    "RetrainDecision",
    "Step",
    "StepRun",
    "Sweep",
    "execute_notebook",
    "expand_grid",
    "export_dvc",
    "get_pipeline_run",
    "history",
    "install_alert_action",
    "known_executors",
    "launch",
    "list_decisions",
    "list_pipeline_runs",
    "load_grid",
    "load_pipeline",
    "new_pipeline",
    "notebook_parameters",
    "parameterize",
    "parse_overrides",
    "register_executor",
    "retrain",
    "run",
    "run_alert_action",
    "run_step",
    "sweep",
    "watch",
]


def launch(
    pipeline: str | os.PathLike[str] | Pipeline,
    params: Iterable[str] = (),
    *,
    grid: str | os.PathLike[str] | None = None,
    executor: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    steps: Iterable[str] | None = None,
) -> PipelineRun | Sweep:
    """What ``pipeline run`` does from ``-p name=value`` items: one run, or a sweep.

    A comma-separated value (``-p n_estimators=50,100,200``) or a ``grid`` file makes a
    sweep over every combination; otherwise the pipeline runs once.
    """
    fixed, swept = parse_overrides(params)
    variants: list[dict[str, Any]] = []
    if grid is not None:
        variants = load_grid(grid)
    if swept:
        extra = expand_grid(swept)
        variants = [{**v, **e} for v in variants for e in extra] if variants else extra
    common: dict[str, Any] = {"executor": executor, "scheduler": scheduler, "workers": workers}
    if variants:
        if steps is not None:
            raise PipelineError("A sweep runs whole pipelines: drop --step")
        return sweep(pipeline, variants, fixed, **common)
    return run(pipeline, fixed, steps=steps, **common)


def run_step(
    pipeline: str | os.PathLike[str] | Pipeline,
    step: str,
    params: Iterable[str] = (),
    *,
    params_file: str | os.PathLike[str] | None = None,
    run_dir: str | os.PathLike[str] | None = None,
) -> PipelineRun:
    """Run one step alone (what a DVC stage runs): its inputs must already exist.

    Overrides come from ``params_file`` (the ``params.yaml`` of the DVC export), then
    ``params``. No DVC snapshot is taken: ``dvc repro`` records the stage's deps itself.
    """
    from jupyter_mlops.pipelines.export import params_from_file

    spec = load_pipeline(pipeline)
    overrides: dict[str, Any] = {}
    if params_file is not None:
        overrides.update(params_from_file(spec, step, params_file))
    fixed, swept = parse_overrides(params)
    if swept:
        raise PipelineError(f"step {step!r}: one step runs with one value per parameter")
    overrides.update(fixed)
    return run(spec, overrides, steps=[step], snapshot=False, run_dir=run_dir)


def _install_alert_action() -> None:
    import importlib.util

    try:
        if importlib.util.find_spec("jupyter_mlops.monitoring") is not None:
            install_alert_action()
    except Exception:  # monitoring half-built or importing us: it can register later
        pass


_install_alert_action()
