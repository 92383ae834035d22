"""A starter ``pipeline.yaml`` from one notebook (``%pipeline new``, ``pipeline new``).

The notebook is parameterized first, so the starter runs as written; the user then adds
steps. Its literal parameters become the pipeline's defaults, and those naming existing
files become the step's inputs, so a first run already snapshots its data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines.parameterize import parameterize
from jupyter_mlops.pipelines.spec import is_yaml_value, relative_path


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

    target = Path(path)
    if target.exists() and not overwrite:
        raise PipelineError(f"{target} exists; choose another path or overwrite it")
    found = parameterize(notebook)
    base = target.resolve().parent
    nb_path = Path(notebook).resolve()
    step = re.sub(r"[^A-Za-z0-9_.-]+", "-", nb_path.stem).strip("-") or "step"
    params = {k: v for k, v in found.parameters.items() if is_yaml_value(v)}
    inputs = []
    for key, value in params.items():
        if isinstance(value, str) and value and (nb_path.parent / value).is_file():
            # The notebook ran from its own folder; pipeline steps run from the pipeline's.
            params[key] = os.path.relpath(nb_path.parent / value, base).replace(os.sep, "/")
            inputs.append(f"${{{key}}}")
    step_def: dict[str, Any] = {"notebook": relative_path(nb_path, base)}
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
