"""A registered model as a self-contained build context: model, pins, server, Dockerfile.

The context needs nothing from the project it came from: the MLflow model is copied in,
requirements are pinned from what the run recorded, and the serving code of jupyter-mlops
is vendored (it is pure Python and imports no Jupyter), so ``docker build`` needs only the
package index.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from jupyter_mlops.client import quiet_mlflow
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError

# What the vendored server imports beyond the model's own requirements.
SERVING_DISTRIBUTIONS = ("fastapi", "uvicorn", "prometheus-client", "pyarrow", "orjson")
CONTAINER_PORT = 8080

DOCKERFILE = """\
# Build: docker build -t {image} .   Run: docker run -p {port}:{port} {image}
FROM python:{python}-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY requirements.txt /app/requirements.txt
RUN pip install --no-cache-dir -r /app/requirements.txt
COPY src /app/src
COPY model /app/model
COPY lineage.json /app/lineage.json
ENV PYTHONPATH=/app/src
EXPOSE {port}
CMD ["python", "-m", "jupyter_mlops.serving", "--model", "/app/model", "--name", "{name}", \
"--deployment-dir", "/app/deployment", "--host", "0.0.0.0", "--port", "{port}"]
"""


@dataclass
class Package:
    """Where a build context was written and what it holds."""

    path: Path
    model: str
    version: str
    image: str
    requirements: list[str]

    def __str__(self) -> str:
        return (
            f"Build context for {self.model} version {self.version} at {self.path}\n"
            f"  docker build -t {self.image} {self.path}\n"
            f"  docker run -p {CONTAINER_PORT}:{CONTAINER_PORT} {self.image}\n"
            f"  curl -X POST localhost:{CONTAINER_PORT}/predict -H 'Content-Type: "
            "application/json' -d '[{...}]'"
        )

    __repr__ = __str__


def _pin(dist: str) -> str | None:
    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return None


def _requirements(model_dir: Path) -> list[str]:
    """The model's pinned requirements plus the server's, one line per distribution."""
    lines: dict[str, str] = {}
    req_file = model_dir / "requirements.txt"
    if req_file.is_file():
        for raw in req_file.read_text().splitlines():
            line = raw.strip()
            if line and not line.startswith(("#", "-")):
                name = line.split("==")[0].split(">")[0].split("<")[0].split("[")[0].strip()
                lines[name.lower()] = line
    for dist in SERVING_DISTRIBUTIONS:
        pin = _pin(dist)
        if pin and dist.lower() not in lines:
            lines[dist.lower()] = pin
    if "mlflow" in lines:
        # Serving loads a model from a folder: MLflow's tracking server, UI and SQL
        # stores are dead weight in an image, and mlflow-skinny is the same package without them.
        lines["mlflow"] = lines["mlflow"].replace("mlflow", "mlflow-skinny", 1)
    return sorted(lines.values(), key=str.lower)


def _vendor_serving(dest: Path) -> None:
    """Copy the jupyter_mlops Python sources (no built front-end assets, no caches)."""
    src = Path(__file__).resolve().parent.parent  # the jupyter_mlops package
    shutil.copytree(
        src,
        dest / "jupyter_mlops",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "labextension", "static"),
    )


def package(
    ref: str,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    config: Config | None = None,
) -> Package:
    """Write a Docker build context that serves model version ``ref`` (``name@alias``)."""
    import mlflow

    from jupyter_mlops.registry.lineage import lineage
    from jupyter_mlops.registry.lookup import get_version

    config = config or load_config()
    version = get_version(ref, config)
    dest = Path(out).resolve()
    if dest.exists():
        if not overwrite and any(dest.iterdir()):
            raise MlopsError(f"{dest} exists and is not empty: choose another --out or overwrite")
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        uri = f"models:/{version.name}/{version.version}"
        with quiet_mlflow():
            mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=str(dest / "model"), tracking_uri=config.tracking_uri
            )
        if not (dest / "model" / "MLmodel").is_file():
            raise MlopsError(f"{uri} did not download as an MLflow model (no MLmodel file)")
        requirements = _requirements(dest / "model")
        (dest / "requirements.txt").write_text("\n".join(requirements) + "\n")
        _vendor_serving(dest / "src")
        info = lineage(f"{version.name}/{version.version}", config=config).to_dict()
        info.pop("cell_source", None)  # the code lives in MLflow; the image needs the ids
        (dest / "lineage.json").write_text(json.dumps(info, indent=2, default=str))
        env_python = str(info.get("environment", {}).get("python") or "")
        python = ".".join(env_python.split(".")[:2]) or "3.11"
        image = f"{version.name.lower()}:{version.version}"
        (dest / "Dockerfile").write_text(
            DOCKERFILE.format(python=python, port=CONTAINER_PORT, image=image, name=version.name)
        )
        (dest / ".dockerignore").write_text("**/__pycache__\n")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # no half-written context left behind
        raise
    return Package(dest, version.name, str(version.version), image, requirements)
