"""Fresh virtual environments built with uv from a run's pinned packages, cached.

uv because it resolves and installs in seconds and hard-links from its shared download
cache, so a second environment with the same packages costs no download. Each
environment is keyed by (Python version, pins, jupyter-mlops version, kernel
requirements), built into a temporary folder and renamed into place only when complete
(a half-built one is never reused), under a file lock so concurrent builders of one key
wait for each other. The kernel side (ipykernel, mlflow and dvc at the running versions,
so the reproduction writes the same store schema) is installed beside the pins;
jupyter_mlops itself is made importable through a folder holding a link to the running
package, named in a ``.pth`` file (never the running site-packages as a whole).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from jupyter_mlops._util.locks import file_lock
from jupyter_mlops._version import __version__
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.reproduction.pipconfig import index_options

CACHE_ENV = "JUPYTER_MLOPS_ENV_CACHE"
READY = "ready.json"  # written last: its presence marks a complete environment
LOG = "build.log"
MAX_ROUNDS = 10  # resolution retries: uv names one conflict at a time

# What a kernel needs to run `%load_ext jupyter_mlops` and `%%track` (with --data): a
# subset of jupyter-mlops's own requirements; mlflow and dvc at the running versions.
_KERNEL_NEEDS = (
    "ipykernel",
    "ipython",
    "ipywidgets",  # else tqdm (imported by mlflow and dvc) warns into the cell's output
    "mlflow",
    "dvc",
    "nbformat",
    "numpy",
    "pandas",
    "pyarrow",
    "pyyaml",
    "packaging",
    "psutil",
)
_RUNNING_PINNED = ("mlflow", "dvc")
_SELF = "jupyter-mlops"

_PIN = re.compile(r"([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([A-Za-z0-9.+!*_-]+)")
_NOT_FOUND = re.compile(r"\b([A-Za-z0-9][A-Za-z0-9._-]*) was not found in the package registry")
_INDEX_PROBLEMS = (
    "error sending request",
    "failed to fetch",
    "dns error",
    "network was disabled",
    "network is unreachable",
    "connection refused",
    "operation timed out",
    "invalid peer certificate",
    "tcp connect error",
)


class EnvironmentBuildError(MlopsError):
    """A fresh environment could not be built (no interpreter, index unreachable, nothing
    resolves); the message names uv's log."""


def cache_root() -> Path:
    """Where fresh environments live: ``$JUPYTER_MLOPS_ENV_CACHE`` or
    ``~/.cache/jupyter-mlops/envs``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "jupyter-mlops" / "envs"


def uv_binary() -> str:
    """The uv executable that came with the ``uv`` package."""
    try:
        import uv
    except ImportError:
        raise EnvironmentBuildError("Fresh environments need uv: pip install uv") from None
    return str(uv.find_uv_bin())


def _canonical(name: str) -> str:
    from packaging.utils import canonicalize_name

    return str(canonicalize_name(name))


def kernel_requirements() -> list[str]:
    """The requirements the reproduction kernel needs beside the run's pins, sorted."""
    from importlib import metadata

    from packaging.requirements import InvalidRequirement, Requirement

    wanted = {_canonical(name): name for name in _KERNEL_NEEDS}
    specs: dict[str, str] = {}
    try:
        declared = metadata.requires(_SELF) or []
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        declared = []
    for line in declared:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        name = _canonical(req.name)
        if name in wanted and (req.marker is None or req.marker.evaluate({"extra": ""})):
            specs[name] = f"{name}{req.specifier}"
    for name in wanted:
        specs.setdefault(name, name)
    for name in _RUNNING_PINNED:
        with contextlib.suppress(metadata.PackageNotFoundError):
            specs[name] = f"{name}=={metadata.version(name)}"
    return sorted(specs.values())


def _key(python_version: str, pins: Mapping[str, str], kernel: list[str]) -> str:
    identity = {
        "python": python_version,
        "pins": sorted(f"{_canonical(n)}=={v}" for n, v in pins.items()),
        "jupyter_mlops": __version__,
        "kernel": kernel,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    return f"py{python_version}-{digest[:16]}"


def _uv_env() -> dict[str, str]:
    """uv's process environment: never download interpreters; trust the system's
    certificates as pip does (unless uv's own TLS settings are given)."""
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1"}
    if not any(k in env for k in ("UV_NATIVE_TLS", "UV_SYSTEM_CERTS", "SSL_CERT_FILE")):
        env["UV_NATIVE_TLS"] = "1"
    for key in ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONPATH", "PYTHONHOME"):
        env.pop(key, None)  # uv must act on the environment it is given, nothing else
    return env


def _run(args: list[str], log: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run uv with its output captured into ``log`` (never into the user's output)."""
    with log.open("a", encoding="utf-8") as fh:
        fh.write(f"$ {' '.join(args)}\n")
    try:
        done = subprocess.run(
            args, capture_output=True, text=True, env=_uv_env(), cwd=cwd, timeout=1800
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentBuildError(f"uv could not run ({exc}); log: {log}") from None
    with log.open("a", encoding="utf-8") as fh:
        fh.write(done.stdout + done.stderr + f"[exit {done.returncode}]\n\n")
    return done


def _first_error(text: str) -> str:
    """uv's error in one line: its ``error:`` line and the first cause under it."""
    lines = [line.strip().strip("×╰─▶│ ").strip() for line in text.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("Using ", "warning:"))]
    for i, line in enumerate(lines):
        if line.lower().startswith(("error", "no solution", "failed")):
            cause = lines[i + 1] if i + 1 < len(lines) else ""
            cause = cause.removeprefix("cause:").strip()
            return f"{line.removeprefix('error:').strip().rstrip(':')}: {cause}" if cause else line
    return lines[0] if lines else "no output"


def _interpreter(python_version: str | None, log: Path, cwd: Path) -> tuple[str, str, str | None]:
    """(interpreter path, its version, note) for ``python_version``: the exact version
    when installed here, else one of the same minor (the note says so)."""
    running = platform.python_version()
    if not python_version or python_version == running:
        return sys.executable, running, None
    uv = uv_binary()
    minor = ".".join(python_version.split(".")[:2])
    for wanted in dict.fromkeys([python_version, minor]):
        done = _run([uv, "python", "find", "--no-python-downloads", wanted], log, cwd)
        path = done.stdout.strip().splitlines()[-1:] if done.returncode == 0 else []
        if path:
            probe = subprocess.run(
                [path[0], "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            found = probe.stdout.strip() or wanted
            note = None if found == python_version else f"python=={python_version}"
            return path[0], found, note
    raise EnvironmentBuildError(
        f"Python {python_version} is not installed here (and interpreters are not "
        f"downloaded): install Python {minor} or reproduce with --env current"
    )


def fresh_environment(
    pins: Mapping[str, str], python_version: str | None = None
) -> tuple[str, list[str], bool, float]:
    """A virtual environment with ``pins`` and what the reproduction kernel needs.

    Returns (its python, the "name==version" pins that could not be had, whether it was
    reused from the cache, seconds). A pin uv cannot resolve or build is relaxed to its
    bare name (and dropped if even that fails); a missing exact Python version is
    replaced by the same minor and reported as ``python==X.Y.Z``. Raises a one-line
    ``MlopsError`` when nothing resolves or the package index cannot be reached.
    """
    started = time.perf_counter()
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    kernel = kernel_requirements()
    # The kernel's mlflow and dvc (the running versions) replace the recorded ones.
    replaced = {_canonical(name) for name in (*_RUNNING_PINNED, _SELF)}
    wanted = {n: v for n, v in pins.items() if _canonical(n) not in replaced}
    scratch_log = root / ".interpreters.log"  # the last search for an interpreter
    scratch_log.write_text("", encoding="utf-8")
    base, version, note = _interpreter(python_version, scratch_log, root)
    notes = [note] if note else []
    key = _key(version, wanted, kernel)
    final = root / key
    with file_lock(root / f"{key}.lock"):
        ready = final / READY
        if ready.is_file() and _python(final).exists():
            unavailable = json.loads(ready.read_text(encoding="utf-8"))["unavailable"]
            _link_package(final)
            seconds = time.perf_counter() - started
            return str(_python(final)), [*notes, *unavailable], True, seconds
        shutil.rmtree(final, ignore_errors=True)  # half-built or its interpreter is gone
        for stale in root.glob(f".{key}.*.building"):  # left by a builder that died
            shutil.rmtree(stale, ignore_errors=True)
        building = root / f".{key}.{os.getpid()}.building"
        building.mkdir()
        log = building / LOG
        try:
            unavailable = _build(building, base, wanted, kernel, log)
        except EnvironmentBuildError as exc:
            kept = root / f"{key}.failed.log"
            with contextlib.suppress(OSError):
                shutil.move(str(log), kept)
            shutil.rmtree(building, ignore_errors=True)
            raise EnvironmentBuildError(str(exc).replace(str(log), str(kept))) from None
        except BaseException:
            shutil.rmtree(building, ignore_errors=True)
            raise
        (building / READY).write_text(
            json.dumps({"unavailable": unavailable, "python": version, "kernel": kernel}),
            encoding="utf-8",
        )
        building.rename(final)
        _link_package(final)
    return str(_python(final)), [*notes, *unavailable], False, time.perf_counter() - started


def _python(env_root: Path) -> Path:
    venv = env_root / "venv"
    return venv / "Scripts" / "python.exe" if os.name == "nt" else venv / "bin" / "python"


def _site_packages(env_root: Path) -> Path:
    venv = env_root / "venv"
    if os.name == "nt":
        return venv / "Lib" / "site-packages"
    return next((venv / "lib").glob("python*/site-packages"))


def _build(
    building: Path, base: str, pins: Mapping[str, str], kernel: list[str], log: Path
) -> list[str]:
    """Create the venv in ``building`` and install; the pins that had to be relaxed."""
    uv = uv_binary()
    venv = building / "venv"
    done = _run([uv, "venv", "--relocatable", "--python", base, str(venv)], log, building)
    if done.returncode != 0:
        why = _first_error(done.stderr)
        raise EnvironmentBuildError(f"uv could not create the environment: {why} (log: {log})")
    python = str(_python(building))
    current = {_canonical(n): (n, v) for n, v in pins.items()}
    relaxed: dict[str, str] = {}  # canonical name -> the pin given up
    dropped: set[str] = set()
    options = index_options()
    for _ in range(MAX_ROUNDS):
        requested = [
            name if key in relaxed else f"{name}=={version}"
            for key, (name, version) in sorted(current.items())
            if key not in dropped
        ]
        reqs = building / "requirements.txt"
        reqs.write_text("\n".join([*kernel, *requested]) + "\n", encoding="utf-8")
        # Not compiled here (three times the build): the kernel writes the bytecode of what
        # it imports (pipelines.execute lets a kernel of another interpreter write it).
        args = [uv, "pip", "install", "--python", python, "-r", str(reqs), *options]
        done = _run(args, log, building)
        if done.returncode == 0:
            _write_pth(building)
            return sorted(relaxed.values())
        error = done.stderr
        if any(sign in error.lower() for sign in _INDEX_PROBLEMS):
            raise EnvironmentBuildError(
                f"The package index could not be reached: {_first_error(error)} (log: {log})"
            )
        culprits = {
            _canonical(m[1])
            for m in _PIN.finditer(error)
            if _canonical(m[1]) in current and current[_canonical(m[1])][1] == m[2]
        } - set(relaxed)
        gone = {_canonical(m[1]) for m in _NOT_FOUND.finditer(error)} & set(current)
        if not culprits and not (gone - dropped):
            raise EnvironmentBuildError(
                f"uv could not install {_named(error, pins, kernel)}: "
                f"{_first_error(error)} (log: {log})"
            )
        for key in culprits:
            name, version = current[key]
            relaxed[key] = f"{name}=={version}"
        dropped |= gone
        for key in gone:
            name, version = current[key]
            relaxed.setdefault(key, f"{name}=={version}")
    raise EnvironmentBuildError(
        f"uv could not resolve the pins after {MAX_ROUNDS} rounds (log: {log})"
    )


def _named(error: str, pins: Mapping[str, str], kernel: list[str]) -> str:
    """The requested pins uv's error names, else the first few pins (a closure can hold
    a hundred)."""
    asked = {_canonical_pin(n, v) for n, v in pins.items()}
    asked |= {_canonical_pin(m[1], m[2]) for req in kernel for m in _PIN.finditer(req)}
    named = [f"{m[1]}=={m[2]}" for m in _PIN.finditer(error) if _canonical_pin(m[1], m[2]) in asked]
    if named:
        return ", ".join(dict.fromkeys(named))
    listed = [f"{n}=={v}" for n, v in sorted(pins.items())]
    more = f" (+{len(listed) - 5} more)" if len(listed) > 5 else ""
    return (", ".join(listed[:5]) + more) or "the kernel's requirements"


def _canonical_pin(name: str, version: str) -> str:
    return f"{_canonical(name)}=={version}"


_SRC = "mlops-src"


def _write_pth(env_root: Path) -> None:
    """Name the folder that will hold the link to jupyter_mlops, relative to
    site-packages (the environment is renamed after its build)."""
    site = _site_packages(env_root)
    folder = env_root / "venv" / _SRC
    folder.mkdir(exist_ok=True)
    (site / "_jupyter_mlops_src.pth").write_text(os.path.relpath(folder, site) + "\n")


def _link_package(env_root: Path) -> None:
    """Point the environment's ``jupyter_mlops`` at the running package (refreshed at
    each use: the link follows the checkout that reproduces)."""
    package = Path(__file__).resolve().parents[1]  # the jupyter_mlops folder
    link = env_root / "venv" / _SRC / "jupyter_mlops"
    if link.is_symlink() and link.readlink() == package:
        return
    fresh = link.with_name(f".jupyter_mlops.{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        fresh.unlink()
    try:
        fresh.symlink_to(package, target_is_directory=True)
        fresh.replace(link)
    except OSError as exc:
        raise EnvironmentBuildError(
            f"Could not link jupyter_mlops into {env_root}: {exc}"
        ) from None
