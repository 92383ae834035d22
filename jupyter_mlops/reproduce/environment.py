"""The environment a reproduction runs in: the run's recorded packages, how the chosen
interpreter differs from them, and that interpreter (the running one, or a fresh uv
environment built from the pins, see ``uvenv.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.reproduce.result import EnvironmentReport, PackageChange

REQUIREMENTS = "mlops/requirements.txt"
ENVIRONMENT = "mlops/environment.json"
MODES = ("current", "fresh")

# Lists every installed distribution of the interpreter that runs it, as JSON.
_LIST_SCRIPT = (
    "import json, importlib.metadata as m\n"
    "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()"
    " if d.metadata['Name']}))"
)


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
    """A run's (or, with a ``models:/`` uri as ``path``, a model's) artifact as text."""
    import mlflow

    from jupyter_mlops.client import quiet_mlflow

    try:
        with quiet_mlflow():
            if path.startswith("models:/"):
                local = mlflow.artifacts.download_artifacts(
                    artifact_uri=path, tracking_uri=config.tracking_uri
                )
            else:
                local = mlflow.artifacts.download_artifacts(
                    run_id=run_id, artifact_path=path, tracking_uri=config.tracking_uri
                )
        return Path(local).read_text(encoding="utf-8")
    except Exception:  # an older run without it, or a model without requirements
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
        model_text = _artifact_text(run_id, f"{str(uri).rstrip('/')}/requirements.txt", config)
        for name, version in parse_pins(model_text or "").items():
            if _canonical(name) not in have:
                pins[name] = version
                have.add(_canonical(name))
    return pins


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def installed_packages(python: str | None = None) -> dict[str, str]:
    """{canonical name: version} of the distributions installed for ``python`` (default:
    this interpreter); another interpreter is asked once, in a small subprocess."""
    if python is None or Path(python).resolve() == Path(sys.executable).resolve():
        from importlib import metadata

        found = {
            dist.metadata["Name"]: dist.version
            for dist in metadata.distributions()
            if dist.metadata["Name"]
        }
    else:
        try:
            done = subprocess.run(
                [python, "-I", "-c", _LIST_SCRIPT],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            found = json.loads(done.stdout)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            detail = getattr(exc, "stderr", "") or str(exc)
            last = detail.strip().splitlines()[-1:] or [""]
            raise MlopsError(f"Could not list the packages of {python}: {last[0]}") from None
    canonical: dict[str, str] = {}
    for name, version in found.items():
        canonical.setdefault(_canonical(name), version)  # the first on sys.path wins
    return canonical


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
    installed = installed_packages(python)
    changes = []
    for name, version in sorted(recorded.items(), key=lambda item: _canonical(item[0])):
        current = installed.get(_canonical(name))
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
    from jupyter_mlops.reproduce.uvenv import fresh_environment

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
