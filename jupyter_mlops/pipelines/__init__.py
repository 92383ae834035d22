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

from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines.decisions import RetrainDecision, list_decisions
from jupyter_mlops.pipelines.execute import NotebookExecutionError, execute_notebook
from jupyter_mlops.pipelines.executors import known_executors, register_executor
from jupyter_mlops.pipelines.export import (
    export_dvc,
    export_pipeline,
    known_exporters,
    register_exporter,
)
from jupyter_mlops.pipelines.history import History, history
from jupyter_mlops.pipelines.overrides import expand_grid, load_grid, parse_overrides
from jupyter_mlops.pipelines.parameterize import (
    ParameterError,
    Parameterized,
    notebook_parameters,
    parameterize,
)
from jupyter_mlops.pipelines.records import (
    PipelineRun,
    StepRun,
    Sweep,
    get_pipeline_run,
    list_pipeline_runs,
)
from jupyter_mlops.pipelines.retrain import retrain, run_alert_action, watch
from jupyter_mlops.pipelines.runner import launch, run, run_step, sweep
from jupyter_mlops.pipelines.spec import Pipeline, Step, load_pipeline
from jupyter_mlops.pipelines.starter import new_pipeline

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
    "export_pipeline",
    "get_pipeline_run",
    "history",
    "known_executors",
    "known_exporters",
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
    "register_exporter",
    "retrain",
    "run",
    "run_alert_action",
    "run_step",
    "sweep",
    "watch",
]
