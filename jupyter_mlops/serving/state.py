"""A deployment's state on disk: ``<project>/.mlops/deployments/<name>/``.

``state.json`` is the single source of truth shared by the notebook (which writes it) and the
server process (which watches it): models, traffic split, history of primaries, process id,
port, token hash. Writes are atomic (temporary file + rename) under an exclusive file lock,
and each change bumps ``generation``. Every server worker acknowledges the generation it
applied in ``acks/<pid>.json``, so a caller knows when a promote or rollback took effect in
all workers. Only the standard library is used: the server imports this too.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from jupyter_mlops._util.layout import STATE_FILE
from jupyter_mlops._util.processes import pid_alive

LOCK_FILE = "state.lock"
LOG_FILE = "server.log"
ACKS_DIR = "acks"
SCHEMA_VERSION = 1
#: The largest request body a server reads unless the state sets ``max_body_bytes``.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
#: How many change events (deploy, canary, promote, ...) a state keeps.
EVENTS_KEPT = 100


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the deployment's exclusive lock (state read-modify-write, start, stop)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: single-writer use only
        yield
        return
    with (folder / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (readers see the old or the new, never half)."""
    folder.mkdir(parents=True, exist_ok=True)
    state["schema"] = SCHEMA_VERSION
    state["updated_at"] = time.time()
    tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(folder / STATE_FILE)


def record_event(state: dict[str, Any], action: str, **details: Any) -> None:
    """Append a change (``deploy``, ``canary``, ``promote``, ...) to the state's events."""
    events = list(state.get("events") or [])
    events.append({"at": time.time(), "action": action, **details})
    state["events"] = events[-EVENTS_KEPT:]


def log_tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` of a server log (empty when it cannot be read), for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def state_stamp(folder: Path) -> tuple[int, int, int] | None:
    """A cheap change marker of the state file (inode, size, mtime) for watchers."""
    try:
        st = (folder / STATE_FILE).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def write_ack(folder: Path, generation: int, error: str | None = None) -> None:
    """Record that this worker process now serves ``generation`` (or why it could not)."""
    acks = folder / ACKS_DIR
    acks.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    payload = {"pid": pid, "generation": generation, "error": error, "at": time.time()}
    tmp = acks / f".{pid}.tmp"
    tmp.write_text(json.dumps(payload))
    tmp.replace(acks / f"{pid}.json")


def read_acks(folder: Path) -> list[dict[str, Any]]:
    """The acknowledgements of the worker processes that are still alive."""
    out = []
    for path in sorted((folder / ACKS_DIR).glob("*.json")):
        try:
            ack = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if pid_alive(int(ack.get("pid", 0))):
            out.append(ack)
        else:
            path.unlink(missing_ok=True)
    return out


def pid_is_server(pid: int) -> bool:
    """Whether ``pid`` runs this package's server (guards against a reused pid)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return pid_alive(pid)  # no /proc: trust the pid
    return "jupyter_mlops.serving" in text
