"""Where and with what a cell ran: notebook, git state, Python and package versions."""

from __future__ import annotations

import functools
import platform
import subprocess
import sys
import types
from collections.abc import Iterable, Mapping
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


@functools.cache
def distribution_version(module: str) -> tuple[str, str] | None:
    """(distribution name, version) providing top-level ``module``; None if unknown.

    Read once per process: parsing a distribution's metadata costs milliseconds, and every
    tracked cell asks for the same few (a package upgraded in a running kernel needs a
    restart to be imported anyway)."""
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
        top = _top_module(value)
        if top and top not in sys.stdlib_module_names:
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


# -- pinned requirements: what a reproduction installs -----------------------------------
REQUIREMENTS_ARTIFACT = "mlops/requirements.txt"
# Names the IPython shell puts in every namespace: the shell's, not the cell's, packages.
_SHELL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})
_SELF = "jupyter-mlops"  # the toolkit: the reproduction brings its own


def requirements(namespace: Mapping[str, Any], sources: Iterable[str] = ()) -> dict[str, str]:
    """{distribution: version} that re-running the code needs: the distributions whose
    modules or objects ``namespace`` holds and those the code in ``sources`` imports, with
    everything they require (``Requires-Dist`` of the installed distributions, markers
    evaluated for this interpreter). jupyter-mlops and its own requirements are left out.
    """
    modules = {_top_module(value) for name, value in list(namespace.items())
               if not name.startswith("_") and name not in _SHELL_NAMES}  # fmt: skip
    for source in sources:
        modules |= imported_modules(source)
    todo = []
    for module in sorted(m for m in modules if m and m not in sys.stdlib_module_names):
        dist = distribution_version(module)
        if dist is not None:
            todo.append(_canonical(dist[0]))
    found: dict[str, str] = {}
    seen: set[str] = {_SELF}
    while todo:
        key = todo.pop()
        if key in seen:
            continue
        seen.add(key)
        info = _distribution(key)
        if info is None:  # required but not installed (an optional dependency)
            continue
        name, version, requires = info
        found[name] = version
        todo.extend(requires)
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


def requirements_text(pins: Mapping[str, str]) -> str:
    """``pins`` as a requirements file: ``name==version`` lines under a comment header."""
    head = (
        "# The packages this run used and what they require, as installed when it ran.\n"
        f"# python {platform.python_version()}\n"
    )
    return head + "".join(f"{name}=={version}\n" for name, version in pins.items())


def imported_modules(source: str) -> set[str]:
    """Top-level modules plain-Python ``source`` imports (none if it does not parse)."""
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return set()
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".", 1)[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".", 1)[0])
    return found


def _top_module(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        mod = value.__name__
    else:
        mod = getattr(type(value), "__module__", None) or ""
        if isinstance(value, type | types.FunctionType | types.BuiltinFunctionType):
            mod = getattr(value, "__module__", None) or mod
    top = str(mod).split(".", 1)[0]
    return "" if top == "builtins" else top


def _canonical(name: str) -> str:
    import re

    return re.sub(r"[-_.]+", "-", name).lower()


@functools.cache
def _distribution(key: str) -> tuple[str, str, tuple[str, ...]] | None:
    """(name as the distribution spells it, version, canonical names of what it requires
    here) of installed distribution ``key``; read once per process (metadata files)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(key)
    except metadata.PackageNotFoundError:
        return None
    requires = tuple(dict.fromkeys(r for r in map(_required, dist.requires or []) if r is not None))
    return str(dist.metadata["Name"]), dist.version, requires


@functools.cache
def _required(spec: str) -> str | None:
    """The canonical name a ``Requires-Dist`` line needs here (None: its marker is false,
    e.g. an extra or another platform's dependency)."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        req = Requirement(spec)
    except InvalidRequirement:
        return None
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return _canonical(req.name)
