"""Where the project lives and how it is configured.

The project root is the nearest folder upwards holding ``.mlops/``, ``.git/`` or
``pyproject.toml`` from the current folder (in a kernel whose notebook is known, see
``tracking/notebook.py``, from the notebook's folder), else the current folder.
Settings come from, in order:
the environment (``MLFLOW_TRACKING_URI``), ``[tool.jupyter-mlops]`` in the root's
``pyproject.toml``, then the embedded default: a SQLite MLflow store and an artifact
folder under ``<root>/.mlops/``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.urls import remember
from jupyter_mlops.errors import ConfigError

MLOPS_DIR = ".mlops"
_ROOT_MARKERS = (MLOPS_DIR, ".git", "pyproject.toml")
#: Defaults of magic options (commands/settings.py reads them; traitlets and the line win).
MAGIC_KEYS = frozenset({"quiet", "monitor_interval", "runs_limit"})
_KNOWN_KEYS = {
    "tracking_uri",
    "artifact_root",
    "experiment",
    "dvc_remote",
    "prediction_log",
    *MAGIC_KEYS,
}


def marked_root(start: str | os.PathLike[str]) -> Path | None:
    """The nearest folder upwards from ``start`` that marks a project, or None."""
    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in _ROOT_MARKERS):
            return folder
    return None


def find_project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """Return the nearest folder upwards from ``start`` that marks a project."""
    here = Path(start or Path.cwd()).resolve()
    return marked_root(here) or here


def notebook_project_start(notebook: str | os.PathLike[str] | None) -> Path | None:
    """Where to look for the project of a kernel running ``notebook``: the notebook's
    folder when a project marks it (papermill ``--cwd`` and nbconvert move the kernel's
    working folder away from the project), else None (the working folder)."""
    if notebook is None:
        return None
    folder = Path(notebook).parent
    return folder if folder.is_dir() and marked_root(folder) is not None else None


def read_pyproject(root: Path) -> dict[str, Any]:
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}") from exc
    section = data.get("tool", {}).get("jupyter-mlops", {})
    if not isinstance(section, dict):
        raise ConfigError(f"[tool.jupyter-mlops] in {path} must be a table")
    unknown = set(section) - _KNOWN_KEYS
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {sorted(unknown)} in [tool.jupyter-mlops] of {path}; "
            f"known keys: {sorted(_KNOWN_KEYS)}"
        )
    return section


@dataclass(frozen=True)
class Config:
    """The resolved settings of one project."""

    root: Path
    tracking_uri: str
    artifact_root: Path | None
    experiment: str | None = None
    dvc_remote: str | None = None
    prediction_log: str | None = None  # a store URL; default: SQLite under .mlops/
    sources: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def mlops_dir(self) -> Path:
        """The project's state folder (deployments, logs, the embedded store)."""
        return self.root / MLOPS_DIR

    @property
    def is_local_store(self) -> bool:
        """True when runs go to a SQLite file rather than a tracking server."""
        return self.tracking_uri.startswith("sqlite:")

    def ensure_dirs(self) -> None:
        """Create ``.mlops/`` (and the artifact folder for a local store)."""
        self.mlops_dir.mkdir(parents=True, exist_ok=True)
        gitignore = self.mlops_dir / ".gitignore"
        if not gitignore.exists():
            # The store and artifacts are large and machine-local; DVC and MLflow own them.
            gitignore.write_text("*\n")
        if self.artifact_root is not None:
            self.artifact_root.mkdir(parents=True, exist_ok=True)


def load_config(start: str | os.PathLike[str] | None = None) -> Config:
    """Resolve the configuration of the project containing ``start`` (default: cwd)."""
    root = find_project_root(start)
    section = read_pyproject(root)
    sources: dict[str, str] = {}

    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env_uri:
        uri, sources["tracking_uri"] = env_uri, "MLFLOW_TRACKING_URI"
    elif section.get("tracking_uri"):
        uri, sources["tracking_uri"] = str(section["tracking_uri"]), "pyproject.toml"
    else:
        uri = f"sqlite:///{root / MLOPS_DIR / 'mlflow.db'}"
        sources["tracking_uri"] = "default"

    artifact_root: Path | None = None
    if section.get("artifact_root"):
        artifact_root = (root / str(section["artifact_root"])).resolve()
    elif uri.startswith("sqlite:"):
        artifact_root = root / MLOPS_DIR / "artifacts"

    prediction_log = os.environ.get("JUPYTER_MLOPS_PREDICTION_LOG") or section.get("prediction_log")
    remember(uri, prediction_log)  # their passwords are masked by value in every message too
    return Config(
        root=root,
        tracking_uri=uri,
        artifact_root=artifact_root,
        experiment=section.get("experiment"),
        dvc_remote=section.get("dvc_remote"),
        prediction_log=prediction_log,
        sources=sources,
    )
