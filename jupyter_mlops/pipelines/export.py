"""``pipeline.yaml`` -> ``dvc.yaml`` + ``params.yaml``, so ``dvc repro`` reruns only what changed.

Each step becomes a stage whose command runs that one step through jupyter-mlops (papermill,
MLflow runs and run records as with ``pipeline run``); its deps are the notebook and the
inputs, its outs the outputs, its params the keys of ``params.yaml`` it reads. ``${run_dir}``
becomes a fixed folder (``build/pipelines/<name>`` by default), since DVC needs stable
paths. Starter files for new pipelines are written here too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from jupyter_mlops.pipelines.spec import Pipeline, PipelineError, load_pipeline

STEP_COMMAND = "python -m jupyter_mlops.pipelines step"
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _yaml_value(value: Any) -> bool:
    if isinstance(value, str | int | float | bool) or value is None:
        return True
    if isinstance(value, list | tuple):
        return all(_yaml_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _yaml_value(v) for k, v in value.items())
    return False


def _rel(path: Path, base: Path) -> str:
    try:
        return path.resolve().relative_to(base).as_posix()
    except ValueError:
        return str(path)


def export_dvc(
    pipeline: str | os.PathLike[str] | Pipeline,
    *,
    output: str | os.PathLike[str] | None = None,
    params_file: str = "params.yaml",
    run_dir: str | None = None,
    command: str = STEP_COMMAND,
) -> Path:
    """Write ``dvc.yaml`` (and the pipeline's parameters into ``params.yaml``) beside it.

    Existing keys of ``params.yaml`` that are not the pipeline's are kept. Returns the
    path of ``dvc.yaml``.
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
        if not _yaml_value(value):
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

    stages: dict[str, Any] = {}
    pipeline_file = _rel(spec.path, base)
    for planned in plan:
        step = spec.steps[planned.name]
        declared = spec.declared(step.name) or {}
        texts = [str(v) for v in step.params.values()] + step.inputs + step.outputs
        used = {m for t in texts for m in _PLACEHOLDER.findall(t)}
        keys = [k for k in spec.params if k in declared or k in used]
        keys += [f"{step.name}.{k}" for k in step.params]
        cmd = f"{command} {pipeline_file} {step.name} --run-dir {run_dir}"
        if params_file != "params.yaml" or keys:
            cmd += f" --params-file {params_file}"
        stage: dict[str, Any] = {
            "cmd": cmd,
            "deps": [_rel(planned.notebook, base)] + [_rel(p, base) for p in planned.inputs],
        }
        if keys:
            stage["params"] = keys if params_file == "params.yaml" else [{params_file: keys}]
        if planned.outputs:
            stage["outs"] = [_rel(p, base) for p in planned.outputs]
        stages[step.name] = stage

    out = Path(output) if output else base / "dvc.yaml"
    params_path.write_text(yaml.safe_dump(values, sort_keys=False), encoding="utf-8")
    header = f"# Written by jupyter-mlops from {pipeline_file}: export again after editing it.\n"
    out.write_text(header + yaml.safe_dump({"stages": stages}, sort_keys=False), encoding="utf-8")
    return out


def params_from_file(spec: Pipeline, step: str, params_file: str | os.PathLike[str]) -> dict:
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


def new_pipeline(
    notebook: str | os.PathLike[str],
    path: str | os.PathLike[str] = "pipeline.yaml",
    *,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a starter ``pipeline.yaml`` with ``notebook`` as its one step.

    The notebook is parameterized first; its literal parameters become the pipeline's
    defaults, and those naming existing files become the step's inputs.
    """
    import yaml

    from jupyter_mlops.pipelines.parameterize import parameterize

    target = Path(path)
    if target.exists() and not overwrite:
        raise PipelineError(f"{target} exists; choose another path or overwrite it")
    found = parameterize(notebook)
    base = target.resolve().parent
    nb_path = Path(notebook).resolve()
    step = re.sub(r"[^A-Za-z0-9_.-]+", "-", nb_path.stem).strip("-") or "step"
    params = {k: v for k, v in found.parameters.items() if _yaml_value(v)}
    inputs = []
    for key, value in params.items():
        if isinstance(value, str) and value and (nb_path.parent / value).is_file():
            # The notebook ran from its own folder; pipeline steps run from the pipeline's.
            params[key] = os.path.relpath(nb_path.parent / value, base).replace(os.sep, "/")
            inputs.append(f"${{{key}}}")
    step_def: dict[str, Any] = {"notebook": _rel(nb_path, base)}
    if inputs:
        step_def["inputs"] = inputs
    step_def["outputs"] = []
    data = {"name": name or step, "params": params, "steps": {step: step_def}}
    text = (
        f"# Pipeline starter written by jupyter-mlops from {nb_path.name}.\n"
        "# Add steps (notebook, params, inputs, outputs, needs), then:\n"
        f"#   jupyter-mlops pipeline run {target.name} -p name=value\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
