"""The environment a reproduction runs in: the run's recorded packages, how the chosen
interpreter differs from them, and that interpreter (the running one, or a fresh uv
environment built from the pins, see ``uvenv.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.reproduction.result import EnvironmentReport, PackageChange

REQUIREMENTS = "mlops/requirements.txt"
ENVIRONMENT = "mlops/environment.json"
MODES = ("current", "fresh")

# The installed version (or None) of each distribution named in argv, as JSON: looked up
# by name (a few ms each; listing every distribution costs most of a second).
_VERSIONS_SCRIPT = """
import json, sys, importlib.metadata as m
def version(name):
    try:
        return m.version(name)
    except m.PackageNotFoundError:
        return None
print(json.dumps({name: version(name) for name in sys.argv[1:]}))
"""


def parse_pins(text: str) -> dict[str, str]:
    """``name==version`` lines of a requirements text as {name: version}.

    Comments, blank lines, options (``-r``, ``--index-url``) and requirements without an
    exact pin are left out; an environment marker or extras do not hide the pin.
    """
    pins: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        if not line or line.startswith("-") or "==" not in line:
            continue
        name, _, version = line.partition("==")
        name = name.split("[", 1)[0].strip()
        version = version.split(",", 1)[0].strip()
        if name and version and "*" not in version:
            pins[name] = version
    return pins


def _artifact_text(run_id: str, path: str, config: Config) -> str | None:
    """A run's artifact as text (None when the run has none)."""
    import mlflow

    from jupyter_mlops.client import quiet_mlflow

    try:
        with quiet_mlflow():
            local = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=path, tracking_uri=config.tracking_uri
            )
        return Path(local).read_text(encoding="utf-8")
    except Exception:  # an older run without it, or an unreachable artifact store
        return None


def _model_requirements(uri: str, config: Config) -> str | None:
    """The ``requirements.txt`` MLflow logged with the model at ``uri`` (a logged model
    ``models:/m-...`` or a ``runs:/`` path), or None."""
    import mlflow

    from jupyter_mlops.client import client, quiet_mlflow

    try:
        with quiet_mlflow():
            if uri.startswith("models:/m-"):  # a logged model, not a registered name
                model = client(config).get_logged_model(uri.removeprefix("models:/"))
                uri = model.artifact_location
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{uri.rstrip('/')}/requirements.txt",
                tracking_uri=config.tracking_uri,
            )
        return Path(local).read_text(encoding="utf-8")
    except Exception:  # a model logged without requirements, or gone
        return None


def recorded_packages(run_id: str, config: Config | None = None) -> dict[str, str]:
    """The pinned packages ``run_id`` ran with: {distribution name: version}.

    ``mlops/requirements.txt`` when the run has it (the closure of what the cell used);
    for older runs, the packages of ``mlops/environment.json`` plus the pins of each
    logged model's ``requirements.txt`` (the environment's entries win). Empty when the
    run recorded none.
    """
    from jupyter_mlops.client import client
    from jupyter_mlops.tracking import store
    from jupyter_mlops.tracking.run import TAG_MODELS

    config = config or load_config()
    text = _artifact_text(run_id, REQUIREMENTS, config)
    if text is not None:
        return parse_pins(text)
    pins: dict[str, str] = {}
    env_text = _artifact_text(run_id, ENVIRONMENT, config)
    if env_text:
        try:
            packages = json.loads(env_text).get("packages") or {}
        except (ValueError, AttributeError):
            packages = {}
        pins.update({str(k): str(v) for k, v in packages.items() if v})
    run = store.call(client(config).get_run, run_id)
    try:
        models = json.loads(run.data.tags.get(TAG_MODELS) or "{}")
    except ValueError:
        models = {}
    have = {_canonical(name) for name in pins}
    for uri in models.values() if isinstance(models, dict) else []:
        for name, version in parse_pins(_model_requirements(str(uri), config) or "").items():
            if _canonical(name) not in have:
                pins[name] = version
                have.add(_canonical(name))
    return pins


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def installed_versions(names: Iterable[str], python: str | None = None) -> dict[str, str | None]:
    """{name: installed version, or None} for ``python`` (default: this interpreter);
    another interpreter is asked once, in a small subprocess. Names match as
    importlib.metadata matches them (case, ``-``/``_``/``.`` insensitive)."""
    wanted = list(dict.fromkeys(names))
    # Not resolved: a venv's python links to its base interpreter, shared by other venvs.
    if python is None or Path(python).absolute() == Path(sys.executable).absolute():
        return {name: _version_here(name) for name in wanted}
    try:
        done = subprocess.run(
            [python, "-I", "-c", _VERSIONS_SCRIPT, *wanted],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        found: dict[str, str | None] = json.loads(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        detail = (getattr(exc, "stderr", "") or str(exc)).strip().splitlines()[-1:] or [""]
        raise MlopsError(f"Could not list the packages of {python}: {detail[0]}") from None
    return found


def _version_here(name: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _same_version(a: str, b: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def package_differences(
    recorded: Mapping[str, str], python: str | None = None
) -> list[PackageChange]:
    """The recorded pins that ``python`` (default: this interpreter) does not satisfy, by
    canonical name: another version, or absent (``current`` None). Sorted by name."""
    installed = installed_versions(recorded, python)
    changes = []
    for name, version in sorted(recorded.items(), key=lambda item: _canonical(item[0])):
        current = installed.get(name)
        if current is None or not _same_version(version, current):
            changes.append(PackageChange(name=name, recorded=version, current=current))
    return changes


def prepare_environment(
    recorded: Mapping[str, str], *, mode: str | None = None, python_version: str | None = None
) -> EnvironmentReport:
    """The interpreter a reproduction's kernel runs, and how it differs from the record.

    ``mode`` "current": this interpreter, its differences listed; "fresh": a uv
    environment built from the pins (cached, see ``uvenv.fresh_environment``) for
    ``python_version`` (default: this interpreter's). ``None`` picks "fresh" when any
    recorded pin differs from this interpreter, else "current".
    """
    started = time.perf_counter()
    if mode is not None and mode not in MODES:
        raise MlopsError(f"Unknown environment mode {mode!r}: use one of {', '.join(MODES)}")
    changes = package_differences(recorded)
    if mode is None:
        mode = "fresh" if changes else "current"
    if mode == "current":
        return EnvironmentReport(
            mode="current",
            python=sys.executable,
            changes=changes,
            seconds=time.perf_counter() - started,
        )
    from jupyter_mlops.reproduction.uvenv import fresh_environment

    pins = {name: version for name, version in recorded.items()}
    python, unavailable, cached, _ = fresh_environment(pins, python_version)
    return EnvironmentReport(
        mode="fresh",
        python=python,
        changes=package_differences(recorded, python=python),
        unavailable=unavailable,
        cached=cached,
        seconds=time.perf_counter() - started,
    )
