"""``pipeline.yaml`` -> ``dvc.yaml`` + ``params.yaml``, so ``dvc repro`` reruns only what changed.

Each step becomes a stage whose command runs that one step through jupyter-mlops (papermill,
MLflow runs and run records as with ``pipeline run``); its deps are the notebook and the
inputs, its outs the outputs, its params the keys of ``params.yaml`` it reads. ``${run_dir}``
becomes a fixed folder (``build/pipelines/<name>`` by default), since DVC needs stable
paths.

Every path in ``dvc.yaml`` is relative to its folder (the stages' working directory),
inputs outside the pipeline's folder included (``../data/iris.csv``), never absolute: a
``git clone`` elsewhere keeps the links ``dvc dag`` shows and ``dvc repro`` finds its
stages unchanged. A step parameter naming a pipeline parameter (``"${alpha}"``) is kept
so in ``params.yaml`` and resolved by the stage as ``pipeline run`` resolves it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines.placeholders import names_in
from jupyter_mlops.pipelines.spec import Pipeline, is_yaml_value, load_pipeline

STEP_COMMAND = "python -m jupyter_mlops.pipelines step"


def export_dvc(
    pipeline: str | os.PathLike[str] | Pipeline,
    *,
    output: str | os.PathLike[str] | None = None,
    params_file: str = "params.yaml",
    run_dir: str | None = None,
    command: str = STEP_COMMAND,
) -> Path:
    """Write ``dvc.yaml`` (and the pipeline's parameters into ``params.yaml``) beside it.

    ``output`` puts ``dvc.yaml`` elsewhere (its folder becomes the stages' working
    directory; ``params.yaml`` stays beside the pipeline). Existing keys of ``params.yaml``
    that are not the pipeline's are kept. Returns the path of ``dvc.yaml``.
    """
    import yaml

    spec = load_pipeline(pipeline)
    if spec.path is None:
        raise PipelineError("Only a pipeline read from a file can be exported to DVC")
    base = spec.base
    run_dir = run_dir or f"build/pipelines/{spec.name}"
    plan = spec.plan({}, run_dir=base / run_dir, run_id="dvc")

    params_path = base / params_file
    values: dict[str, Any] = {}
    if params_path.is_file():
        values = yaml.safe_load(params_path.read_text(encoding="utf-8")) or {}
        if not isinstance(values, dict):
            raise PipelineError(f"{params_file} must be a mapping to add parameters to")
    for name, value in spec.params.items():
        if not is_yaml_value(value):
            raise PipelineError(f"pipeline parameter {name!r}: {value!r} cannot go to YAML")
        values[name] = value
    for step in spec.steps.values():
        if step.name in spec.params:
            raise PipelineError(
                f"step {step.name!r} has the name of a pipeline parameter: params.yaml keeps "
                "step parameters under the step's name"
            )
        if step.params:
            values[step.name] = dict(step.params)

    out = Path(output).resolve() if output else base / "dvc.yaml"
    stage_dir = out.parent

    def rel(path: Path) -> str:  # how dvc.yaml names a path: from its own folder
        return Path(os.path.relpath(path, stage_dir)).as_posix()

    stages: dict[str, Any] = {}
    pipeline_file = rel(spec.path)
    params_ref = rel(params_path)
    for planned in plan:
        step = spec.steps[planned.name]
        declared = spec.declared(step.name) or {}
        texts = [str(v) for v in step.params.values()] + step.inputs + step.outputs
        used = names_in(texts)
        keys = [k for k in spec.params if k in declared or k in used]
        keys += [f"{step.name}.{k}" for k in step.params]
        cmd = f"{command} {pipeline_file} {step.name} --run-dir {run_dir}"
        if params_ref != "params.yaml" or keys:
            cmd += f" --params-file {params_file}"  # read from the pipeline's folder
        stage: dict[str, Any] = {
            "cmd": cmd,
            "deps": [rel(planned.notebook)] + [rel(p) for p in planned.inputs],
        }
        if keys:
            stage["params"] = keys if params_ref == "params.yaml" else [{params_ref: keys}]
        if planned.outputs:
            stage["outs"] = [rel(p) for p in planned.outputs]
        stages[step.name] = stage

    params_path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    header = f"# Written by jupyter-mlops from {pipeline_file}: export again after editing it.\n"
    out.write_text(header + yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8")
    return out


def params_from_file(
    spec: Pipeline, step: str, params_file: str | os.PathLike[str]
) -> dict[str, Any]:
    """The overrides ``params.yaml`` holds for ``step``: pipeline keys and its own section."""
    import yaml

    path = Path(params_file)
    if not path.is_absolute():
        path = spec.base / path
    if not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out = {k: values[k] for k in spec.params if k in values}
    section = values.get(step)
    if isinstance(section, dict):
        out.update({f"{step}.{k}": v for k, v in section.items()})
    return out
