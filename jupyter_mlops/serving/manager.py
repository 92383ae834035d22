"""Deployments: start, change, list and stop model servers of a project.

Each deployment is one detached server process (``python -m jupyter_mlops.serving``, its own
session, so it outlives the kernel that started it) with its state under
``<project>/.mlops/deployments/<name>/``. Canary, promote and rollback only rewrite
``state.json``: the running server loads any new model first, then switches its routing, and
acknowledges; these functions return once every worker did. Nothing here imports FastAPI,
and MLflow only to resolve targets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import html
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.processes import pid_alive, stop_group
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import default_store_url, open_prediction_store, replay_journal
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.errors import DeploymentNotFoundError, PortInUseError, ServingError
from jupyter_mlops.serving.state import (
    ACKS_DIR,
    JOURNAL_DIR,
    LOG_FILE,
    STATE_FILE,
    deployments_root,
    locked,
    pid_is_server,
    read_acks,
    read_state,
    write_state,
)
from jupyter_mlops.serving.targets import resolve_target

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
START_TIMEOUT_S = 120.0
SWITCH_TIMEOUT_S = 120.0
_EVENTS_KEPT = 100


# -- the Deployment view ------------------------------------------------------------------


@dataclass
class Deployment:
    """A deployment as it is now: where it answers, what it serves, whether it is alive."""

    name: str
    status: str  # running, starting, dead, stopped or failed
    host: str
    port: int
    pid: int | None
    workers: int
    primary: ModelRef
    canary: ModelRef | None
    canary_weight: float
    history: list[dict[str, Any]]
    started_at: float | None
    stopped_at: float | None
    token_required: bool
    folder: Path
    generation: int
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def uptime(self) -> float | None:
        """Seconds since start while running, else None."""
        if self.status != "running" or self.started_at is None:
            return None
        return time.time() - self.started_at

    @property
    def traffic(self) -> dict[str, float]:
        """Percent of traffic per model label."""
        if self.canary is None or self.canary_weight <= 0:
            return {self.primary.label: 100.0}
        return {
            self.primary.label: 100.0 - self.canary_weight,
            self.canary.label: self.canary_weight,
        }

    def curl_example(self) -> str:
        """A ready-to-paste curl command for ``/predict``."""
        record = self.primary.example or {"feature": 1.0}
        auth = ' -H "Authorization: Bearer $MLOPS_TOKEN"' if self.token_required else ""
        return (
            f"curl -s {self.url}/predict -H 'Content-Type: application/json'{auth} "
            f"-d {shlex.quote(json.dumps(record))}"
        )

    def predict(self, data: Any, *, token: str | None = None, timeout: float = 30.0) -> Any:
        """POST ``data`` (a record, a list of records or a DataFrame) to ``/predict``."""
        if hasattr(data, "to_dict") and hasattr(data, "columns"):
            data = json.loads(data.to_json(orient="records"))
        request = urllib.request.Request(
            f"{self.url}/predict",
            data=json.dumps(data).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ServingError(f"{self.name}: HTTP {exc.code}: {exc.read().decode()}") from exc

    def _model_lines(self) -> list[tuple[str, ModelRef, float]]:
        lines = [("primary", self.primary, 100.0 - (self.canary_weight if self.canary else 0))]
        if self.canary is not None:
            lines.append(("canary", self.canary, self.canary_weight))
        return lines

    def __str__(self) -> str:
        up = f", up {_duration(self.uptime)}" if self.uptime is not None else ""
        pid = f"pid {self.pid}" if self.pid else "no process"
        out = [f"Deployment {self.name}: {self.status} at {self.url} ({pid}{up})"]
        for role, ref, weight in self._model_lines():
            run = f"  run {ref.run_id}" if ref.run_id else ""
            out.append(f"  {role:<8} {ref.label:<24} {weight:5.1f}%{run}")
        if self.history:
            out.append(f"  previous primaries: {', '.join(_label(h) for h in self.history)}")
        if self.status in ("running", "starting"):
            out.append(f"  docs:    {self.url}/docs")
            out.append(f"  example: {self.curl_example()}")
        else:
            out.append(f"  log:     {self.log_file}")
        return "\n".join(out)

    def _repr_html_(self) -> str:
        esc = html.escape
        colour = {"running": "#1a7f37", "starting": "#9a6700"}.get(self.status, "#cf222e")
        rows = "".join(
            f"<tr><td>{role}</td><td>{esc(ref.label)}</td><td>{weight:.1f}%</td>"
            f"<td><code>{esc(ref.run_id or '')}</code></td>"
            f"<td><code>{esc(ref.uri)}</code></td></tr>"
            for role, ref, weight in self._model_lines()
        )
        up = f" &middot; up {_duration(self.uptime)}" if self.uptime is not None else ""
        link = f'<a href="{esc(self.url)}/docs" target="_blank">{esc(self.url)}</a>'
        body = (
            f"<div><b>Deployment {esc(self.name)}</b> "
            f'<span style="color:{colour}">{esc(self.status)}</span> at {link}'
            f"{' (token required)' if self.token_required else ''}{up}"
            "<table><tr><th>role</th><th>model</th><th>traffic</th><th>run</th><th>uri</th></tr>"
            f"{rows}</table>"
        )
        if self.status in ("running", "starting"):
            body += f"<pre>{esc(self.curl_example())}</pre>"
        else:
            body += f"<p>log: <code>{esc(str(self.log_file))}</code></p>"
        return body + "</div>"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able summary (for the CLI's ``--json`` and the server extension)."""
        return {
            "name": self.name,
            "status": self.status,
            "url": self.url,
            "pid": self.pid,
            "workers": self.workers,
            "primary": self.primary.to_dict(),
            "canary": self.canary.to_dict() if self.canary else None,
            "canary_weight": self.canary_weight,
            "traffic": self.traffic,
            "history": self.history,
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "uptime": self.uptime,
            "token_required": self.token_required,
            "generation": self.generation,
            "log_file": str(self.log_file),
        }


class DeploymentList(list[Deployment]):
    """Deployments with a text and an HTML table."""

    def __str__(self) -> str:
        if not self:
            return "No deployments."
        header = ("name", "status", "url", "models (traffic)", "uptime")
        rows = [
            (
                d.name,
                d.status,
                d.url,
                ", ".join(f"{label} {w:g}%" for label, w in d.traffic.items()),
                _duration(d.uptime) if d.uptime is not None else "-",
            )
            for d in self
        ]
        widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
        return "\n".join(
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in (header, *rows)
        )

    def _repr_html_(self) -> str:
        if not self:
            return "<p>No deployments.</p>"
        esc = html.escape
        rows = "".join(
            f"<tr><td>{esc(d.name)}</td><td>{esc(d.status)}</td>"
            f'<td><a href="{esc(d.url)}/docs" target="_blank">{esc(d.url)}</a></td>'
            f"<td>{esc(', '.join(f'{k} {v:g}%' for k, v in d.traffic.items()))}</td>"
            f"<td>{_duration(d.uptime) if d.uptime is not None else '-'}</td></tr>"
            for d in self
        )
        return (
            "<table><tr><th>name</th><th>status</th><th>url</th><th>models (traffic)</th>"
            f"<th>uptime</th></tr>{rows}</table>"
        )


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def _label(entry: dict[str, Any]) -> str:
    return ModelRef.from_dict(entry["model"]).label


# -- helpers ------------------------------------------------------------------------------


def _root(config: Config) -> Path:
    return deployments_root(config.mlops_dir)


def _folder(name: str, config: Config) -> Path:
    if not _NAME.match(name):
        raise ServingError(
            f"Invalid deployment name {name!r}: use letters, digits, '-', '_' or '.' "
            "(at most 63, starting with a letter or digit)."
        )
    return _root(config) / name


def _existing(name: str, config: Config) -> Path:
    """The folder of deployment ``name``; not found unless it has a state file."""
    folder = _folder(name, config)
    if not (folder / STATE_FILE).is_file():
        known = ", ".join(d.name for d in list_deployments(config, check_health=False)) or "none"
        raise DeploymentNotFoundError(
            f"No deployment named {name!r} in {config.root} (deployments: {known})."
        )
    return folder


def _default_name(ref: ModelRef) -> str:
    base = ref.name or (f"run-{ref.run_id[:8]}" if ref.run_id else "model")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "model"
    return name[:63]


def _health(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _status(state: dict[str, Any], *, check_health: bool = True) -> str:
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
    if _health(f"http://{host}:{state['port']}"):
        return "running"
    started = float(state.get("started_at") or 0)
    if recorded == "starting" and time.time() - started < START_TIMEOUT_S:
        return "starting"
    return "dead"


def _deployment(folder: Path, state: dict[str, Any], status: str | None = None) -> Deployment:
    return Deployment(
        name=str(state["name"]),
        status=status or _status(state),
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
        token_required=bool(state.get("token_sha256")),
        folder=folder,
        generation=int(state.get("generation") or 0),
        events=list(state.get("events") or []),
    )


def _bind(host: str, port: int | None, config: Config) -> socket.socket:
    """Reserve ``host:port`` now (the server inherits the socket): no race, clear errors."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port or 0))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            owner = next(
                (
                    d.name
                    for d in list_deployments(config, check_health=False)
                    if d.port == port and d.status in ("running", "starting")
                ),
                None,
            )
            by = f"by deployment {owner!r}" if owner else "by another process"
            raise PortInUseError(
                f"Port {port} on {host} is already in use ({by}). Choose another port, "
                "or leave it out to pick a free one."
            ) from exc
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ServingError(f"Cannot bind to {host}: no such address on this machine.") from exc
        raise ServingError(f"Cannot listen on {host}:{port}: {exc}") from exc
    return sock


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _event(state: dict[str, Any], action: str, **details: Any) -> None:
    events = list(state.get("events") or [])
    events.append({"at": time.time(), "action": action, **details})
    state["events"] = events[-_EVENTS_KEPT:]


def new_state(
    ref: ModelRef,
    *,
    name: str,
    host: str,
    port: int,
    workers: int,
    config: Config,
    token: str | None = None,
    batching: bool = True,
    max_batch_rows: int = 256,
    max_wait_ms: float = 2.0,
    prediction_log: bool | str = True,
    durability: str = "write",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> dict[str, Any]:
    """The initial ``state.json`` of a deployment (also used by the container entry point)."""
    if durability not in ("write", "fsync"):
        raise ServingError(f"durability must be 'write' or 'fsync', not {durability!r}")
    if prediction_log is True:  # the project's store: prediction_log in config, else SQLite
        log_url: str | None = config.prediction_log or default_store_url(config.mlops_dir)
    elif prediction_log:
        log_url = str(prediction_log)
    else:
        log_url = None
    if log_url and log_url != default_store_url(config.mlops_dir):
        # Fail now on an unknown scheme, a bad path or an unreachable database.
        open_prediction_store(log_url).close()
    state: dict[str, Any] = {
        "name": name,
        "generation": 1,
        "status": "starting",
        "host": host,
        "port": port,
        "workers": max(1, int(workers)),
        "pid": None,
        "started_at": time.time(),
        "stopped_at": None,
        "primary": ref.to_dict(),
        "primary_since": time.time(),
        "canary": None,
        "canary_weight": 0.0,
        "history": [],
        "token_sha256": hashlib.sha256(token.encode()).hexdigest() if token else None,
        "tracking_uri": config.tracking_uri,
        "project_root": str(config.root),
        "prediction_log": log_url,
        "durability": durability,
        "batching": {
            "enabled": bool(batching),
            "max_batch_rows": int(max_batch_rows),
            "max_wait_ms": float(max_wait_ms),
        },
        "max_body_bytes": int(max_body_bytes),
        "log_file": LOG_FILE,
    }
    _event(state, "deploy", primary=ref.label)
    return state


def _spawn(folder: Path, sock: socket.socket, config: Config) -> subprocess.Popen[bytes]:
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [
        sys.executable, "-m", "jupyter_mlops.serving",
        "--deployment-dir", str(folder), "--fd", str(sock.fileno()),
    ]  # fmt: skip
    with (folder / LOG_FILE).open("ab") as log:
        log.write(f"\n--- {dt.datetime.now().isoformat(timespec='seconds')} start\n".encode())
        log.flush()
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(sock.fileno(),),
            start_new_session=True,  # its own session: survives the kernel, stoppable as a group
            cwd=config.root,
            env=env,
        )


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            raise ServingError(
                f"The server exited (code {code}) while starting. Last lines of {log}:\n"
                f"{_log_tail(log)}"
            )
        if _health(url, timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
            return
        time.sleep(0.02)
    raise ServingError(
        f"The server did not become healthy within {timeout:.0f} s. Last lines of {log}:\n"
        f"{_log_tail(log)}"
    )


@contextlib.contextmanager
def _changing(name: str, config: Config | None) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Lock a running deployment's state for a change; yields (folder, state copy)."""
    config = config or load_config()
    folder = _existing(name, config)
    with locked(folder):
        state = read_state(folder)
        if state is None:
            raise DeploymentNotFoundError(f"No deployment named {name!r} in {config.root}.")
        status = _status(state, check_health=False)
        if status not in ("running", "starting"):
            raise ServingError(f"Deployment {name!r} is {status}; deploy it again first.")
        yield folder, json.loads(json.dumps(state))


def _await_generation(folder: Path, state: dict[str, Any], timeout: float) -> str | None:
    """Wait until every worker serves ``state``'s generation; returns a worker's error."""
    generation, workers = int(state["generation"]), int(state.get("workers") or 1)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        acks = [a for a in read_acks(folder) if int(a.get("generation", 0)) >= generation]
        errors = [a["error"] for a in acks if a.get("error")]
        if errors:
            return str(errors[0])
        if len(acks) >= workers:
            return None
        if not pid_alive(int(state.get("pid") or 0)):
            raise ServingError(
                f"Deployment {state['name']!r} died. Last lines of {folder / LOG_FILE}:\n"
                f"{_log_tail(folder / LOG_FILE)}"
            )
        time.sleep(0.02)
    raise ServingError(
        f"Deployment {state['name']!r} did not apply the change within {timeout:.0f} s "
        f"(see {folder / LOG_FILE})."
    )


def _apply(name: str, change: Any, config: Config | None, wait: bool, timeout: float) -> Deployment:
    """Write ``change(state)`` as the next generation and wait for the workers to serve it."""
    with _changing(name, config) as (folder, state):
        previous = json.loads(json.dumps(state))
        change(state)
        state["generation"] = int(previous["generation"]) + 1
        write_state(folder, state)
    if wait:
        error = _await_generation(folder, state, timeout)
        if error is not None:
            with locked(folder):  # put back what is served, as a newer generation
                current = read_state(folder) or state
                previous["generation"] = int(current["generation"]) + 1
                _event(previous, "reverted", reason=error)
                write_state(folder, previous)
            raise ServingError(f"Deployment {name!r} kept its previous models: {error}")
    return _deployment(folder, state, "running" if wait else None)


# -- public API ---------------------------------------------------------------------------


def deploy(
    target: str,
    *,
    name: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    workers: int = 1,
    token: str | None = None,
    wait: bool = True,
    timeout: float = START_TIMEOUT_S,
    batching: bool = True,
    max_batch_rows: int = 256,
    max_wait_ms: float = 2.0,
    prediction_log: bool | str = True,
    durability: str = "write",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    config: Config | None = None,
) -> Deployment:
    """Serve ``target`` (``name@alias``, ``name/version`` or a URI) in a detached server.

    The port is reserved here (a taken port raises :class:`PortInUseError` at once) and
    handed to the server process; with ``wait`` this returns once ``/health`` answers.
    ``token`` protects every endpoint but ``/health`` (only its hash is stored).
    ``prediction_log`` is True (the project's ``prediction_log`` setting, else its SQLite
    file), False, or a store URL (``sqlite:///...``, ``postgresql://...``); ``durability``
    ``"write"`` survives a killed server, ``"fsync"`` also a machine crash.
    """
    config = config or load_config()
    config.ensure_dirs()
    if workers < 1:
        raise ServingError("workers must be at least 1.")
    ref = resolve_target(target, config)
    name = name or _default_name(ref)
    folder = _folder(name, config)
    with locked(folder):
        old = read_state(folder)
        if old is not None and _status(old) in ("running", "starting"):
            raise ServingError(
                f"Deployment {name!r} is already running at http://{old['host']}:{old['port']} "
                f"({ModelRef.from_dict(old['primary']).label}). Stop it first, or give "
                "another name."
            )
        sock: socket.socket | None = None
        if port is None and old is not None and old.get("host") == host and old.get("port"):
            # Redeploying a name: keep its URL when its old port is free.
            with contextlib.suppress(ServingError):
                sock = _bind(host, int(old["port"]), config)
        if sock is None:
            sock = _bind(host, port, config)
        try:
            state = new_state(
                ref, name=name, host=host, port=sock.getsockname()[1], workers=workers,
                config=config, token=token, batching=batching, max_batch_rows=max_batch_rows,
                max_wait_ms=max_wait_ms, prediction_log=prediction_log, durability=durability,
                max_body_bytes=max_body_bytes,
            )  # fmt: skip
            for ack in (folder / ACKS_DIR).glob("*.json"):
                ack.unlink(missing_ok=True)
            write_state(folder, state)
            proc = _spawn(folder, sock, config)
            state["pid"] = proc.pid
            write_state(folder, state)
        finally:
            sock.close()
    deployment = _deployment(folder, state, "starting")
    if not wait:
        return deployment
    try:
        _wait_healthy(proc, deployment.url, folder / LOG_FILE, timeout)
    except ServingError:
        if proc.poll() is None:
            stop_group(proc.pid, 5.0)
        with locked(folder):
            state["status"], state["stopped_at"] = "failed", time.time()
            write_state(folder, state)
        raise
    with locked(folder):
        current = read_state(folder) or state
        current["status"] = "running"
        write_state(folder, current)
    return _deployment(folder, current, "running")


def canary(
    name: str,
    target: str | None = None,
    weight: float = 10.0,
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Send ``weight`` percent of ``name``'s traffic to ``target`` (sticky per request key).

    Without ``target``, changes the weight of the current canary; weight 0 keeps it loaded
    but idle. The server loads the canary before routing any request to it.
    """
    if not 0.0 <= float(weight) <= 100.0:
        raise ServingError(f"weight is a percentage between 0 and 100, not {weight}.")
    ref = resolve_target(target, config) if target is not None else None

    def change(state: dict[str, Any]) -> None:
        if ref is None and not state.get("canary"):
            raise ServingError(f"Deployment {name!r} has no canary: give a target.")
        if ref is not None:
            state["canary"] = ref.to_dict()
        state["canary_weight"] = float(weight)
        label = ModelRef.from_dict(state["canary"]).label
        _event(state, "canary", canary=label, weight=float(weight))

    return _apply(name, change, config, wait, timeout)


def promote(
    name: str,
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Blue-green switch: the canary becomes the primary for all traffic, in one step.

    The old primary goes on the history (and stays loaded), so :func:`rollback` is instant.
    """

    def change(state: dict[str, Any]) -> None:
        if not state.get("canary"):
            raise ServingError(f"Deployment {name!r} has no canary to promote.")
        now = time.time()
        history = list(state.get("history") or [])
        history.append(
            {"model": state["primary"], "since": state.get("primary_since"), "until": now}
        )
        state["history"] = history
        old = ModelRef.from_dict(state["primary"]).label
        state["primary"], state["primary_since"] = state["canary"], now
        state["canary"], state["canary_weight"] = None, 0.0
        _event(state, "promote", primary=ModelRef.from_dict(state["primary"]).label, replaced=old)

    return _apply(name, change, config, wait, timeout)


def rollback(
    name: str,
    *,
    wait: bool = True,
    timeout: float = SWITCH_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Back to the previous primary (dropping any canary); with none, just drop the canary."""

    def change(state: dict[str, Any]) -> None:
        history = list(state.get("history") or [])
        if history:
            previous = history.pop()
            old = ModelRef.from_dict(state["primary"]).label
            state["primary"], state["primary_since"] = previous["model"], time.time()
            state["history"] = history
            _event(state, "rollback", primary=_label(previous), replaced=old)
        elif state.get("canary"):
            _event(state, "rollback", dropped=ModelRef.from_dict(state["canary"]).label)
        else:
            raise ServingError(
                f"Deployment {name!r} has nothing to roll back: no earlier primary, no canary."
            )
        state["canary"], state["canary_weight"] = None, 0.0

    return _apply(name, change, config, wait, timeout)


def stop(name: str, *, timeout: float = 10.0, config: Config | None = None) -> Deployment:
    """Stop the server (SIGTERM, then SIGKILL after ``timeout``); its folder and log stay."""
    config = config or load_config()
    folder = _existing(name, config)
    with locked(folder):
        state = read_state(folder)
        if state is None:
            raise DeploymentNotFoundError(f"No deployment named {name!r} in {config.root}.")
        pid = int(state.get("pid") or 0)
        if pid and pid_alive(pid) and pid_is_server(pid):
            stop_group(pid, timeout)
        if state.get("status") != "stopped":
            state["status"], state["stopped_at"] = "stopped", time.time()
            _event(state, "stop")
            write_state(folder, state)
    if state.get("prediction_log"):  # a killed server leaves its journal: store it now
        with contextlib.suppress(Exception):
            store = open_prediction_store(str(state["prediction_log"]))
            try:
                replay_journal(folder / JOURNAL_DIR, store)
            finally:
                store.close()
    return _deployment(folder, state, "stopped")


def get_deployment(name: str, *, config: Config | None = None) -> Deployment:
    """The deployment called ``name``, with its current health."""
    config = config or load_config()
    folder = _existing(name, config)
    state = read_state(folder)
    if state is None:  # removed meanwhile
        raise DeploymentNotFoundError(f"No deployment named {name!r} in {config.root}.")
    return _deployment(folder, state)


def list_deployments(config: Config | None = None, *, check_health: bool = True) -> DeploymentList:
    """Every deployment of the project: running, starting, dead (process gone or unhealthy)
    or stopped, with models, traffic split and uptime."""
    config = config or load_config()
    out = DeploymentList()
    root = _root(config)
    if not root.is_dir():
        return out
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        try:
            state = read_state(folder)
        except (OSError, ValueError):
            continue
        if state is None:
            continue
        status = _status(state, check_health=check_health)
        out.append(_deployment(folder, state, status))
    return out
