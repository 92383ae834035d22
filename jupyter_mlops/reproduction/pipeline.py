"""Reproduce a pipeline run: the recorded ``pipeline.yaml`` run again, step by step.

A pipeline run's parent MLflow run records the pipeline (``mlflow.source.name``: its
``pipeline.yaml``, relative to the project), its parameters, the commit and the DVC
snapshot of its input data; each step is a child run. The reproduction runs the same
pipeline file at the recorded commit, in a scratch copy with the data restored, with the
same parameters, into the original's store and experiment (the new parent run tagged
``mlops.reproduces``), then compares the parents and each step with its namesake.
A step's run reproduces through its pipeline run.
"""

from __future__ import annotations

from typing import Any

from jupyter_mlops.config import Config
from jupyter_mlops.reproduction import scratch, verdict
from jupyter_mlops.reproduction.compare import compare_runs
from jupyter_mlops.reproduction.result import (
    TAG_REPRODUCES,
    Cause,
    Difference,
    EnvironmentReport,
    Reproduction,
)
from jupyter_mlops.reproduction.source import Recorded, read_run

TAG_PIPELINE = "mlops.pipeline"
TAG_PIPELINE_RUN = "mlops.pipeline.run"
TAG_STEP = "mlops.pipeline.step"
TAG_SOURCE = "mlflow.source.name"
TAG_PARENT = "mlflow.parentRunId"


def is_pipeline_run(recorded: Recorded) -> bool:
    """A pipeline run's parent run (a step run is tagged with its step as well)."""
    return TAG_PIPELINE in recorded.tags and TAG_STEP not in recorded.tags


def parent_of_step(recorded: Recorded) -> str | None:
    """The parent run of a pipeline step's run (None for anything else)."""
    if TAG_PIPELINE in recorded.tags and TAG_STEP in recorded.tags:
        return recorded.tags.get(TAG_PARENT) or None
    return None


def recorded_params(original: Recorded, config: Config) -> dict[str, Any]:
    """The run's parameters with their types: from its record under ``.mlops/pipelines/``
    when this project has it, else the strings MLflow kept read back as Python literals."""
    from jupyter_mlops.pipelines.execute import parse_parameters

    record_id = original.tags.get(TAG_PIPELINE_RUN)
    if record_id:
        from jupyter_mlops.errors import MlopsError
        from jupyter_mlops.pipelines.records import get_pipeline_run

        try:
            record = get_pipeline_run(record_id, config=config)
        except MlopsError:
            record = None
        if record is not None:
            return dict(record.params)
    return parse_parameters(f"{k}={v}" for k, v in original.params.items())


def reproduce_pipeline(
    original: Recorded,
    config: Config,
    copy: scratch.Scratch,
    environment: EnvironmentReport,
    tolerance: float,
) -> Reproduction:
    """Run the recorded pipeline again in ``copy`` (data already restored) and compare the
    parent runs and each step's run with its namesake."""
    import dataclasses

    from jupyter_mlops.config import load_config
    from jupyter_mlops.pipelines import runner

    spec_rel = original.tags.get(TAG_SOURCE) or ""
    spec_path = copy.project / spec_rel
    if not spec_rel.endswith((".yaml", ".yml")) or not spec_path.is_file():
        why = (
            f"The pipeline file {spec_rel or '(not recorded)'} is not in the recorded "
            "commit's files: commit it and run the pipeline again."
        )
        return _failed(original, environment, copy, [Cause("code", spec_rel, why)])
    # The copy's own settings (pyproject), the original's store: the runs land beside it.
    scratch_config = dataclasses.replace(
        load_config(copy.project),
        tracking_uri=config.tracking_uri,
        artifact_root=config.artifact_root,
        experiment=original.experiment,
    )
    record = runner.run(
        spec_path,
        recorded_params(original, config),
        experiment=original.experiment,
        tags={TAG_REPRODUCES: original.run_id},
        config=scratch_config,
        python=environment.python if environment.mode == "fresh" else None,
    )
    if record.mlflow_run_id is None:
        why = f"The pipeline did not start ({record.status}): see {record.folder}"
        return _failed(original, environment, copy, [Cause("execution", "pipeline", why)])
    new = read_run(record.mlflow_run_id, config, code=False)
    differences, checked = compare_runs(original, new, None, tolerance)
    steps = 0
    before, after = _steps(original, config), _steps(new, config)
    for name in sorted(set(before) | set(after)):
        steps += 1
        a, b = before.get(name), after.get(name)
        if a is None or b is None:
            detail = "only in the reproduction" if a is None else "absent from the reproduction"
            differences.append(Difference("execution", f"step {name}", a, b, detail))
            continue
        found, counts = compare_runs(a, b, None, tolerance)
        differences += [dataclasses.replace(d, name=f"{name}: {d.name}") for d in found]
        for key, count in counts.items():
            checked[key] = checked.get(key, 0) + count
    checked["steps"] = steps
    causes: list[Cause] = list(copy.causes)
    failed = not record.ok
    if failed:
        for step in record.failed_steps:
            line = f"Step {step.name} failed: {step.error} (executed: {step.executed_notebook})"
            causes.append(Cause("execution", step.name, line))
            differences.insert(0, Difference("execution", f"step {step.name}", None, None, line))
    if failed or differences:
        causes = verdict.order_causes(
            differences,
            first=causes,
            unseeded=[
                c for n, a in before.items() for c in verdict.unseeded(a, after.get(n), None)
            ],
            packages=verdict.package_causes(environment),
            code=copy.if_different,
        )
    return Reproduction(
        original_run_id=original.run_id,
        run_id=new.run_id,
        verdict=verdict.verdict_of(differences, failed),
        environment=environment,
        differences=differences,
        causes=causes,
        checked=checked,
        workdir=copy.folder,
    )


def step_run_ids(parent: Recorded, config: Config) -> dict[str, str]:
    """The run ids of a pipeline run's steps, by step name."""
    from jupyter_mlops.client import client as project_client
    from jupyter_mlops.tracking import store

    client = project_client(config)
    children: list[Any] = store.call(
        client.search_runs,
        [parent.experiment_id],
        filter_string=f"tags.`{TAG_PARENT}` = '{parent.run_id}'",
        max_results=1000,
    )
    return {
        child.data.tags[TAG_STEP]: str(child.info.run_id)
        for child in children
        if child.data.tags.get(TAG_STEP)
    }


def _steps(parent: Recorded, config: Config) -> dict[str, Recorded]:
    """The step runs of a pipeline run, by step name."""
    ids = step_run_ids(parent, config)
    return {name: read_run(run_id, config, code=False) for name, run_id in ids.items()}


def _failed(
    original: Recorded,
    environment: EnvironmentReport,
    copy: scratch.Scratch,
    causes: list[Cause],
) -> Reproduction:
    from jupyter_mlops.reproduction.result import FAILED

    return Reproduction(
        original_run_id=original.run_id,
        run_id=None,
        verdict=FAILED,
        environment=environment,
        differences=[Difference("execution", c.subject, None, None, c.message) for c in causes],
        causes=[*causes, *copy.causes],
        workdir=copy.folder,
    )
