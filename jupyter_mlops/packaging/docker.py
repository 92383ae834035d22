"""A registered model as a self-contained build context: model, pins, wheel, Dockerfile.

The context needs nothing from the project it came from: the MLflow model is copied in,
requirements are pinned from what the run recorded (``mlflow-skinny`` for ``mlflow``: a
server only loads a model folder), jupyter-mlops comes as a wheel (``packaging.wheel``), and
``package.json`` keeps the version's identity (registered name, version, run id, alias), so
the server reports it in ``/info`` and labels ``/metrics`` with it. ``docker build`` needs
only the package index. As MLflow's ``generate-dockerfile`` does, the base image is pinned to
the Python version the model was saved with; the server runs as a non-root user.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from jupyter_mlops import values
from jupyter_mlops._util.layout import PACKAGE_FILE
from jupyter_mlops._version import __version__
from jupyter_mlops.client import quiet_mlflow
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.packaging.wheel import build_wheel

# What the server imports beyond the model's own requirements (pinned to this environment).
SERVING_DISTRIBUTIONS = (
    "fastapi", "uvicorn", "prometheus-client", "pyarrow", "orjson", "numpy", "pandas",
    "packaging", "pyyaml",
)  # fmt: skip
CONTAINER_PORT = 8080
CONTAINER_USER = 10001  # no name in the image: any non-root uid; 10001 clears system ranges

DOCKERFILE = """\
# {model} version {version} (run {run_id}), packaged by jupyter-mlops {jupyter_mlops}.
# Build: docker build -t {image} .   Run: docker run -p {port}:{port} {image}
FROM python:{python}-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
PIP_NO_CACHE_DIR=1
COPY requirements.txt /app/requirements.txt
RUN pip install -r /app/requirements.txt
COPY wheels /app/wheels
RUN pip install --no-deps /app/wheels/{wheel}
COPY model /app/model
COPY {package_file} /app/{package_file}
COPY lineage.json /app/lineage.json
RUN mkdir -p /app/deployment && chown {user}:{user} /app/deployment
USER {user}
EXPOSE {port}
CMD ["python", "-m", "jupyter_mlops.serving", "--package", "/app", \
"--host", "0.0.0.0", "--port", "{port}"]
"""


@dataclass
class Package:
    """Where a build context was written and what it holds."""

    path: Path
    model: str
    version: str
    image: str
    requirements: list[str]
    run_id: str | None = None

    def __str__(self) -> str:
        return (
            f"Build context for {self.model} version {self.version} (run {self.run_id}) "
            f"at {self.path}\n"
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
    for name, line in lines.items():
        if not any(op in line for op in "=<>~!@;"):  # unpinned: the version trained with
            pin = _pin(line.split("[")[0])
            lines[name] = f"{line}=={pin.split('==')[1]}" if pin else line
    for dist in SERVING_DISTRIBUTIONS:
        pin = _pin(dist)
        if pin and dist.lower() not in lines:
            lines[dist.lower()] = pin
    if "mlflow" in lines:
        # Serving loads a model from a folder: MLflow's tracking server, UI and SQL
        # stores are dead weight in an image, and mlflow-skinny is the same package without them.
        lines["mlflow"] = lines["mlflow"].replace("mlflow", "mlflow-skinny", 1)
    return sorted(lines.values(), key=str.lower)


def _python_version(model_dir: Path) -> str:
    """The Python the model was saved with (MLmodel's python_function), else this one."""
    import yaml

    try:
        flavors = yaml.safe_load((model_dir / "MLmodel").read_text()).get("flavors", {})
        saved = str(flavors.get("python_function", {}).get("python_version") or "")
    except (OSError, AttributeError, yaml.YAMLError):
        saved = ""
    return saved if saved.count(".") == 2 else platform.python_version()


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

    dest = values.out_folder(out).resolve()  # an existing file is refused before any work
    config = config or load_config()
    version = get_version(ref, config)
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
        wheel = build_wheel(dest / "wheels")
        info = lineage(f"{version.name}/{version.version}", config=config).to_dict()
        info.pop("cell_source", None)  # the code lives in MLflow; the image needs the ids
        (dest / "lineage.json").write_text(json.dumps(info, indent=2, default=str))
        identity = {
            "name": version.name,
            "version": str(version.version),
            "run_id": version.run_id or None,
            "alias": _alias(ref),
            "model_uri": uri,
            "jupyter_mlops": __version__,
        }
        (dest / PACKAGE_FILE).write_text(json.dumps(identity, indent=2) + "\n")
        image = f"{version.name.lower()}:{version.version}"
        (dest / "Dockerfile").write_text(
            DOCKERFILE.format(
                model=version.name,
                version=version.version,
                run_id=version.run_id,
                jupyter_mlops=__version__,
                python=_python_version(dest / "model"),
                port=CONTAINER_PORT,
                image=image,
                wheel=wheel.name,
                package_file=PACKAGE_FILE,
                user=CONTAINER_USER,
            )
        )
        (dest / ".dockerignore").write_text("**/__pycache__\n")
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)  # no half-written context left behind
        raise
    return Package(
        dest, version.name, str(version.version), image, requirements, version.run_id or None
    )


def _alias(ref: str) -> str | None:
    """The alias ``ref`` named (``name@alias``), if any."""
    text = ref.removeprefix("models:/")
    return text.split("@", 1)[1] if "@" in text else None
