"""A deployment's state on disk: ``<project>/.mlops/deployments/<name>/``.

``state.json`` is the single source of truth shared by the notebook (which writes it) and the
server process (which watches it): models, traffic split, history of primaries, process id,
port, token hash. Writes are atomic (temporary file + rename) under an exclusive file lock,
and each change bumps ``generation``. Every server worker acknowledges the generation it
applied in ``acks/<pid>.json``, so a caller knows when a promote or rollback took effect in
all workers. The folder is private to its owner (mode 0700, the files written in it 0600):
the state names the models and stores, and holds the token's hash. Only the standard library
is used: the server imports this too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
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
#: Seconds a prediction may take, from its arrival, before it is answered 504.
DEFAULT_REQUEST_TIMEOUT_S = 30.0
#: scrypt parameters of a new token record: about 0.2 s and 32 MiB per hash, so guessing a
#: token from a copied state.json costs that much per guess.
TOKEN_SCRYPT = {"n": 2**15, "r": 8, "p": 1}
#: Modes of the deployment folder and of the files the project writes in it.
PRIVATE_DIR, PRIVATE_FILE = 0o700, 0o600


def private_folder(folder: Path) -> None:
    """Create ``folder`` (and parents) if needed and make it reachable by its owner only."""
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # not ours to change (a mounted folder): leave it
        folder.chmod(PRIVATE_DIR)


def open_private(path: Path, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags``, the file mode 0600 (never readable by
    others, even for a moment; an existing file is made 0600 too)."""
    fd = os.open(path, flags | os.O_CREAT, PRIVATE_FILE)
    if hasattr(os, "fchmod"):  # POSIX
        os.fchmod(fd, PRIVATE_FILE)
    return fd


def write_private(path: Path, text: str) -> None:
    """Replace the content of ``path`` with ``text``, the file mode 0600."""
    with os.fdopen(open_private(path, os.O_WRONLY | os.O_TRUNC), "w") as fh:
        fh.write(text)


def hash_token(token: str) -> dict[str, Any]:
    """The state's record of a bearer token: salted scrypt, its parameters beside it."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, dklen=32, maxmem=2**26, **TOKEN_SCRYPT)
    return {"scheme": "scrypt", **TOKEN_SCRYPT, "salt": salt.hex(), "hash": digest.hex()}


def token_matches(state: dict[str, Any], token: str) -> bool:
    """Whether ``token`` is the deployment's (constant-time compare; slow for a scrypt record).

    Reads the ``token_hash`` record, and ``token_sha256`` of states written before it."""
    record = state.get("token_hash")
    if isinstance(record, dict) and record.get("scheme") == "scrypt":
        try:
            n, r, p = (int(record[k]) for k in ("n", "r", "p"))
            salt, expected = bytes.fromhex(record["salt"]), bytes.fromhex(record["hash"])
            digest = hashlib.scrypt(
                token.encode(), salt=salt, n=n, r=r, p=p, dklen=len(expected), maxmem=2**27
            )
        except (KeyError, TypeError, ValueError):  # a damaged record lets nobody in
            return False
        return hmac.compare_digest(digest, expected)
    legacy = state.get("token_sha256")
    if isinstance(legacy, str):
        return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), legacy)
    return False


def token_required(state: dict[str, Any]) -> bool:
    """Whether the deployment's state holds a token record (new or old form)."""
    return bool(state.get("token_hash") or state.get("token_sha256"))


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the deployment's exclusive lock (state read-modify-write, start, stop)."""
    private_folder(folder)
    try:
        import fcntl
    except ImportError:  # Windows: single-writer use only
        yield
        return
    with os.fdopen(open_private(folder / LOCK_FILE, os.O_WRONLY | os.O_APPEND), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_state(folder: Path, state: dict[str, Any]) -> None:
    """Replace the state file atomically (readers see the old or the new, never half), mode
    0600 in a 0700 folder."""
    private_folder(folder)
    state["schema"] = SCHEMA_VERSION
    state["updated_at"] = time.time()
    tmp = folder / f".{STATE_FILE}.{os.getpid()}.tmp"
    write_private(tmp, json.dumps(state, indent=2, default=str))
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
    private_folder(acks)
    pid = os.getpid()
    payload = {"pid": pid, "generation": generation, "error": error, "at": time.time()}
    tmp = acks / f".{pid}.tmp"
    write_private(tmp, json.dumps(payload))
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
