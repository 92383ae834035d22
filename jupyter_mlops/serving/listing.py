"""Finding deployments: their folders, whether each is alive, and the :class:`Deployment`
views of one or all of them.

A deployment's status is read, not remembered: the state says ``stopped`` or ``failed`` when
it was stopped or never came up; otherwise its process must be alive and (when asked)
``/health`` must answer, or the deployment is ``dead``.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_mlops._util.layout import STATE_FILE, DamagedState, deployments_root, read_state
from jupyter_mlops._util.processes import pid_alive
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.deployment import DamagedDeployment, Deployment, DeploymentList
from jupyter_mlops.serving.errors import DeploymentNotFoundError, ServingError
from jupyter_mlops.serving.state import ACKS_DIR, locked

__all__ = [
    "START_TIMEOUT_S",
    "DamagedDeploymentError",
    "checked_state",
    "damaged_deployment",
    "deployment_folder",
    "deployment_from_state",
    "deployment_status",
    "existing_folder",
    "get_deployment",
    "healthy",
    "list_deployments",
    "locked_state",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: How long a server may take to answer ``/health`` before it counts as dead.
START_TIMEOUT_S = 120.0


def deployment_folder(name: str, config: Config) -> Path:
    """Where deployment ``name`` lives (it need not exist); refuses names unfit for a folder."""
    if not _NAME.match(name):
        raise ServingError(
            f"Invalid deployment name {name!r}: use letters, digits, '-', '_' or '.' "
            "(at most 63, starting with a letter or digit)."
        )
    return deployments_root(config.mlops_dir) / name


def existing_folder(name: str, config: Config) -> Path:
    """The folder of deployment ``name``; not found unless it has a state file."""
    folder = deployment_folder(name, config)
    if not (folder / STATE_FILE).is_file():
        known = ", ".join(d.name for d in list_deployments(config, check_health=False)) or "none"
        raise DeploymentNotFoundError(
            f"No deployment named {name!r} in {config.root} (deployments: {known})."
        )
    return folder


class DamagedDeploymentError(ServingError):
    """The deployment asked for has a state file that cannot be read (``damaged`` says
    where, what and the fix)."""

    def __init__(self, damaged: DamagedDeployment, done: str | None = None) -> None:
        did = f"{done}, but it" if done else "it"
        super().__init__(f"Deployment {damaged.name!r}: {did} cannot be used: {damaged}")
        self.damaged = damaged

    def details(self) -> dict[str, Any]:
        return {"reason": "corrupt", "path": str(self.damaged.path)}


def _group_of_server(pid: Any, folder: Path) -> int | None:
    """The process group of ``pid`` when it is alive and one of this deployment's server
    processes (the group leader runs ``jupyter_mlops.serving --deployment-dir folder``)."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0 or not pid_alive(pid):
        return None
    try:
        group = os.getpgid(pid)
        cmdline = Path(f"/proc/{group}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, UnicodeDecodeError):
        return None
    if "jupyter_mlops.serving" in cmdline and str(folder) in cmdline:
        return group
    return None


def damaged_deployment(folder: Path, problem: str, text: str = "") -> DamagedDeployment:
    """The listing entry of a deployment whose state cannot be read; its server's process
    group is looked for in what is left of the state (``"pid": N``) and in the workers'
    acknowledgements (``acks/<pid>.json``)."""
    candidates: list[Any] = [DamagedState(folder, problem, text).field("pid")]
    candidates += sorted(
        int(p.stem) for p in (folder / ACKS_DIR).glob("*.json") if p.stem.isdigit()
    )
    pid = next((g for g in (_group_of_server(c, folder) for c in candidates) if g), None)
    return DamagedDeployment(folder.name, folder / STATE_FILE, problem, pid)


def checked_state(folder: Path) -> dict[str, Any] | None:
    """``read_state`` with a damaged file as :class:`DamagedDeploymentError` (path, problem,
    the fix and the server still running, if any)."""
    try:
        return read_state(folder)
    except DamagedState as exc:
        raise DamagedDeploymentError(damaged_deployment(folder, exc.problem, exc.text)) from None
    except OSError as exc:
        raise DamagedDeploymentError(damaged_deployment(folder, f"unreadable: {exc}")) from None


@contextlib.contextmanager
def locked_state(name: str, config: Config | None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Deployment ``name``'s folder and state, held under its lock for a change."""
    config = config or load_config()
    folder = existing_folder(name, config)
    with locked(folder):
        state = checked_state(folder)
        if state is None:  # removed meanwhile
            raise DeploymentNotFoundError(f"No deployment named {name!r} in {config.root}.")
        yield folder, state


def healthy(url: str, timeout: float = 1.0) -> bool:
    """Whether the server at ``url`` answers ``/health`` with 200."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def deployment_status(state: dict[str, Any], *, check_health: bool = True) -> str:
    """``running``, ``starting``, ``dead``, ``stopped`` or ``failed``; without
    ``check_health``, a live process counts as what its state recorded."""
    recorded = str(state.get("status") or "starting")
    if recorded in ("stopped", "failed"):
        return recorded
    pid = int(state.get("pid") or 0)
    if not pid_alive(pid):
        return "dead"
    if not check_health:
        return recorded
    host = state.get("host") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if healthy(f"http://{host}:{state['port']}"):
        return "running"
    started = float(state.get("started_at") or 0)
    if recorded == "starting" and time.time() - started < START_TIMEOUT_S:
        return "starting"
    return "dead"


def deployment_from_state(
    folder: Path, state: dict[str, Any], status: str | None = None
) -> Deployment:
    """The view of a deployment's state (its status checked now unless given)."""
    return Deployment(
        name=str(state["name"]),
        status=status or deployment_status(state),
        host=str(state.get("host") or "127.0.0.1"),
        port=int(state.get("port") or 0),
        pid=state.get("pid"),
        workers=int(state.get("workers") or 1),
        primary=ModelRef.from_dict(state["primary"]),
        canary=ModelRef.from_dict(state["canary"]) if state.get("canary") else None,
        canary_weight=float(state.get("canary_weight") or 0.0) if state.get("canary") else 0.0,
        history=list(state.get("history") or []),
        started_at=state.get("started_at"),
        stopped_at=state.get("stopped_at"),
        token_required=bool(state.get("token_hash") or state.get("token_sha256")),
        folder=folder,
        generation=int(state.get("generation") or 0),
        events=list(state.get("events") or []),
        predict_mode=str(state.get("predict") or "label"),
        strict_invocations=bool(state.get("strict_invocations")),
    )


def get_deployment(name: str, *, config: Config | None = None) -> Deployment:
    """The deployment called ``name``, with its current health."""
    config = config or load_config()
    folder = existing_folder(name, config)
    state = checked_state(folder)
    if state is None:  # removed meanwhile
        raise DeploymentNotFoundError(f"No deployment named {name!r} in {config.root}.")
    try:
        return deployment_from_state(folder, state)
    except (KeyError, TypeError, ValueError, MlopsError) as exc:
        problem = f"a field cannot be used ({type(exc).__name__}: {exc})"
        raise DamagedDeploymentError(damaged_deployment(folder, problem)) from None


def list_deployments(config: Config | None = None, *, check_health: bool = True) -> DeploymentList:
    """Every deployment of the project: running, starting, dead (process gone or unhealthy)
    or stopped, with models, traffic split and uptime. A deployment whose state cannot be
    read is in the list's ``damaged`` (shown as ``corrupt``), never left out."""
    config = config or load_config()
    out = DeploymentList()
    root = deployments_root(config.mlops_dir)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            state = checked_state(folder)
            if state is None:
                continue
            status = deployment_status(state, check_health=check_health)
            out.append(deployment_from_state(folder, state, status))
        except DamagedDeploymentError as exc:
            out.damaged.append(exc.damaged)
        except (KeyError, TypeError, ValueError, MlopsError) as exc:
            problem = f"a field cannot be used ({type(exc).__name__}: {exc})"
            out.damaged.append(damaged_deployment(folder, problem))
    return out
