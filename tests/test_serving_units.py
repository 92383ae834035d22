"""Serving pieces that need no server: target shorthands, requirement checks, light
imports, errors for unknown deployments."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_mlops.config import load_config
from jupyter_mlops.serving import (
    DeploymentNotFoundError,
    ServingError,
    get_deployment,
    list_deployments,
    model_uri,
    promote,
    read_predictions,
    stop,
)


def test_target_shorthands() -> None:
    assert model_uri("iris-rf@champion") == "models:/iris-rf@champion"
    assert model_uri("iris-rf/3") == "models:/iris-rf/3"
    assert model_uri("runs:/abc/model") == "runs:/abc/model"
    assert model_uri("models:/x@y") == "models:/x@y"


def test_requirement_mismatches_are_named(tmp_path: Path) -> None:
    from importlib.metadata import version

    from jupyter_mlops.serving.targets import requirement_mismatches

    (tmp_path / "requirements.txt").write_text(
        f"scikit-learn=={version('scikit-learn')}\nscikit-learn<0.1\nno-such-dist-xyz==1.0\n"
    )
    (tmp_path / "MLmodel").write_text("flavors:\n  python_function:\n    python_version: 2.7.18\n")
    problems = requirement_mismatches(str(tmp_path))
    assert len(problems) == 3, problems
    assert "scikit-learn<0.1 is required but" in problems[0]
    assert "no-such-dist-xyz==1.0 is required but not installed" in problems[1]
    assert "Python 2.7.18" in problems[2]


def test_import_is_light_and_server_needs_no_ipython() -> None:
    probe = (
        "import sys, json\n"
        "import jupyter_mlops.serving\n"
        "light = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'fastapi', 'uvicorn', 'mlflow', 'pandas', 'IPython', 'starlette', 'sklearn'})\n"
        "import jupyter_mlops.serving.app, jupyter_mlops.serving.__main__\n"
        "print(json.dumps([light, 'IPython' in sys.modules, 'ipykernel' in sys.modules]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    light, ipython, ipykernel = json.loads(out.strip().splitlines()[-1])
    assert light == []
    assert not ipython and not ipykernel


def test_unknown_deployment_is_not_found(project: Path) -> None:
    config = load_config(project)
    assert list(list_deployments(config)) == []
    with pytest.raises(DeploymentNotFoundError):
        get_deployment("nope", config=config)
    with pytest.raises(DeploymentNotFoundError):
        promote("nope", config=config)
    with pytest.raises(DeploymentNotFoundError):
        read_predictions("nope", config=config)
    with pytest.raises(ServingError, match="Invalid deployment name"):
        stop("../etc", config=config)
