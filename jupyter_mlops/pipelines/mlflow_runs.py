"""The MLflow side of a pipeline run: a parent run per pipeline run, a child run per step.

The tags written here are what ties a step's run (and the models its ``%%track`` cells
log into it) to its pipeline run, its sweep variant and the DVC snapshot of its input
data. All calls go through the project's one MLflow client and the store's retry policy; MLflow
itself is imported only when a run is opened.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from jupyter_mlops.config import Config
from jupyter_mlops.pipelines.records import FAILED, KILLED, SUCCEEDED, PipelineRun
from jupyter_mlops.pipelines.spec import Pipeline, relative_path

T = TypeVar("T")

TAG_PIPELINE = "mlops.pipeline"
TAG_PIPELINE_RUN = "mlops.pipeline.run"
TAG_STEP = "mlops.pipeline.step"
TAG_SWEEP = "mlops.sweep.id"
TAG_VARIANT = "mlops.sweep.variant"
TAG_ERROR = "mlops.pipeline.error"
TAG_STATUS = "mlops.pipeline.status"
TAG_LIMIT = 4900  # characters of a tag value kept (MLflow refuses longer ones)
PARAMS_PER_BATCH = 100  # MLflow's limit per log_batch call

#: The MLflow run status that ends a run whose record has this status.
MLFLOW_STATUS = {SUCCEEDED: "FINISHED", FAILED: "FAILED", KILLED: "KILLED"}


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` under the tracking store's retry policy."""
    from jupyter_mlops.tracking import store

    return store.call(fn, *args, **kwargs)


def log_params(client: Any, run_id: str, params: Mapping[str, Any]) -> None:
    """Log ``params`` as strings cut to MLflow's length limit, in batches MLflow accepts."""
    from mlflow.entities import Param

    from jupyter_mlops.tracking.values import MAX_PARAM_LENGTH

    batch = [Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
    for start in range(0, len(batch), PARAMS_PER_BATCH):
        call(client.log_batch, run_id, params=batch[start : start + PARAMS_PER_BATCH])


def set_tags(client: Any, run_id: str, tags: Mapping[str, Any]) -> None:
    """Set ``tags`` on run ``run_id`` in one call, values cut to what MLflow accepts."""
    from mlflow.entities import RunTag

    batch = [RunTag(str(k), str(v)[:TAG_LIMIT]) for k, v in tags.items()]
    if batch:
        call(client.log_batch, run_id, tags=batch)


def log_metrics(client: Any, run_id: str, metrics: Mapping[str, float]) -> None:
    """Log ``metrics`` (step 0, now) in one call."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, v, now, 0) for k, v in metrics.items()]
    if batch:
        call(client.log_batch, run_id, metrics=batch)


def active_run_id() -> str | None:
    """The MLflow run active in this process (a notebook's), which becomes the parent."""
    if "mlflow" not in sys.modules:  # nothing can be active if MLflow was never imported
        return None
    import mlflow

    active = mlflow.active_run()
    return active.info.run_id if active else None


def _base_tags(config: Config, spec: Pipeline) -> dict[str, str]:
    from jupyter_mlops._version import __version__
    from jupyter_mlops.tracking.environment import git_state

    tags = {
        "mlops.version": __version__,
        "mlops.project_root": str(config.root),
        "mlflow.source.type": "PROJECT",
        "mlflow.source.name": relative_path(spec.path, config.root) if spec.path else spec.name,
    }
    git = git_state(config.root)
    if git is not None:
        tags["mlflow.source.git.commit"] = git.commit
        tags["mlops.git.dirty"] = str(git.dirty).lower()
    return tags


def pointer_tags(
    config: Config, record: PipelineRun, run_tags: Mapping[str, str]
) -> dict[str, str]:
    """``mlops.git.dirty``/``mlops.git.uncommitted_data`` when the commit the run records
    lacks the ``.dvc`` files of its input snapshots (see :mod:`jupyter_mlops.data.pointers`)."""
    from jupyter_mlops.data import DataSnapshot, pointers

    if "mlflow.source.git.commit" not in run_tags:
        return {}
    snaps = [DataSnapshot.from_dict(d) for d in record.data]
    loose = pointers.check(config.root, snaps)
    return loose.tags if loose is not None else {}


def _lineage_tags(record: PipelineRun) -> dict[str, str]:
    """The run's input data snapshots and its place in a sweep, shared by parent and steps."""
    from jupyter_mlops.tracking.run import TAG_DATA

    tags: dict[str, str] = {}
    if record.data:  # whatever a step made derives from the run's input data
        tags[TAG_DATA] = json.dumps(record.data)
    if record.sweep:
        tags[TAG_SWEEP] = record.sweep["id"]
        tags[TAG_VARIANT] = str(record.sweep["variant"])
    return tags


def pipeline_run_tags(
    config: Config, spec: Pipeline, record: PipelineRun, extra: Mapping[str, Any]
) -> dict[str, str]:
    """Tags of a pipeline run's parent MLflow run (``extra`` given by the caller)."""
    tags = {
        **_base_tags(config, spec),
        TAG_PIPELINE: spec.name,
        TAG_PIPELINE_RUN: record.run_id,
        **{str(k): str(v) for k, v in extra.items()},
        **_lineage_tags(record),
    }
    parent = active_run_id()
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags


def step_run_tags(record: PipelineRun, pipeline: str, step: str, notebook: str) -> dict[str, str]:
    """Tags of a step's child MLflow run; ``notebook`` relative to the project root."""
    from jupyter_mlops.tracking.run import TAG_NOTEBOOK

    assert record.mlflow_run_id is not None  # the parent run is opened before any step
    return {
        "mlflow.parentRunId": record.mlflow_run_id,
        "mlflow.source.name": notebook,
        "mlflow.source.type": "NOTEBOOK",
        TAG_NOTEBOOK: notebook,
        TAG_PIPELINE: pipeline,
        TAG_PIPELINE_RUN: record.run_id,
        TAG_STEP: step,
        **_lineage_tags(record),
    }
