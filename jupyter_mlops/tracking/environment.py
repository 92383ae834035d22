"""Where and with what a cell ran: notebook, git state, Python and package versions."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.records import attributes
from jupyter_mlops.tracking.notebook import NOTEBOOK_ENV as NOTEBOOK_ENV


def notebook_path(
    namespace: Mapping[str, Any] | None = None, root: Path | None = None
) -> str | None:
    """The path of the notebook this kernel serves (relative to ``root`` when inside it),
    if anything tells us; how it is found: ``tracking/notebook.py``."""
    from jupyter_mlops.tracking.notebook import find_notebook

    source = find_notebook(namespace)
    if source is None:
        return None
    return source.relative(root) if root is not None else source.path


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty: bool
    branch: str | None
    root: str


def git_state(folder: Path) -> GitState | None:
    """Commit, dirty flag and branch of the git work tree containing ``folder``."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        top = git("rev-parse", "--show-toplevel")
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return None  # not a repo, no commit yet, or no git
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
        branch = git("rev-parse", "--abbrev-ref", "HEAD") or None
    except (OSError, subprocess.SubprocessError):
        dirty, branch = True, None
    return GitState(commit=commit, dirty=dirty, branch=branch, root=top)


@functools.cache
def _module_distributions() -> Mapping[str, list[str]]:
    # Scanning installed distributions costs tens of ms: once per process is enough.
    from importlib import metadata

    return metadata.packages_distributions()


def distribution_version(module: str) -> tuple[str, str] | None:
    """(distribution name, version) providing top-level ``module``; None if unknown."""
    from importlib import metadata

    for dist in _module_distributions().get(module, []):
        try:
            return dist, metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def used_packages(namespace: Mapping[str, Any]) -> dict[str, str]:
    """Versions of the installed distributions whose modules or objects the namespace holds."""
    modules: set[str] = set()
    for name, value in list(namespace.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, types.ModuleType):
            mod = value.__name__
        else:
            mod = getattr(type(value), "__module__", None) or ""
            if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
                mod = getattr(value, "__module__", None) or mod
        top = mod.split(".", 1)[0]
        if top and top not in sys.stdlib_module_names and top != "builtins":
            modules.add(top)
    found: dict[str, str] = {}
    for mod in sorted(modules):
        dist = distribution_version(mod)
        if dist is not None:
            found[dist[0]] = dist[1]
    return found


@dataclass
class Environment:
    python: str = field(default_factory=platform.python_version)
    implementation: str = field(default_factory=platform.python_implementation)
    platform: str = field(default_factory=platform.platform)
    executable: str = sys.executable
    packages: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return attributes(self)


def capture_environment(namespace: Mapping[str, Any]) -> Environment:
    """The interpreter and the versions of the packages the namespace uses."""
    return Environment(packages=used_packages(namespace))
