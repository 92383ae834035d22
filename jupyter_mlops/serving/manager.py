"""Deployments: start and stop the model servers of a project.

Each deployment is one detached server process (``python -m jupyter_mlops.serving``, its own
session, so it outlives the kernel that started it) with its state under
``<project>/.mlops/deployments/<name>/``. :func:`deploy` reserves the port itself and hands
the listening socket to the server, so a taken port fails at once and no other process can
take it meanwhile. Changing a running deployment is :mod:`~jupyter_mlops.serving.releases`;
finding deployments is :mod:`~jupyter_mlops.serving.listing`. Nothing here imports FastAPI,
and MLflow only to resolve targets.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_mlops import values
from jupyter_mlops._util.layout import JOURNAL_DIR, DamagedState, read_state
from jupyter_mlops._util.processes import group_alive, pid_alive, stop_group
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.predlog import default_store_url, open_prediction_store, replay_journal
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.deployment import Deployment
from jupyter_mlops.serving.errors import PortInUseError, ServingError
from jupyter_mlops.serving.listing import (
    START_TIMEOUT_S,
    DamagedDeploymentError,
    damaged_deployment,
    deployment_folder,
    deployment_from_state,
    deployment_status,
    healthy,
    list_deployments,
    locked_state,
)
from jupyter_mlops.serving.proba import check_predict_mode
from jupyter_mlops.serving.state import (
    ACKS_DIR,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_REQUEST_TIMEOUT_S,
    LOG_FILE,
    hash_token,
    locked,
    log_tail,
    open_private,
    pid_is_server,
    record_event,
    write_state,
)
from jupyter_mlops.serving.targets import resolve_target

__all__ = ["default_deployment_name", "deploy", "listening_socket", "new_state", "stop"]


def default_deployment_name(ref: ModelRef) -> str:
    """The name a deployment of ``ref`` gets when none is given: the model's, as a folder name."""
    base = ref.name or (f"run-{ref.run_id[:8]}" if ref.run_id else "model")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-.") or "model"
    return name[:63]


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: a free port) and listening."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def _bind(host: str, port: int | None, config: Config) -> socket.socket:
    """Reserve ``host:port`` now (the server inherits the socket): no race, clear errors."""
    try:
        return listening_socket(host, port or 0)
    except OSError as exc:
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
    predict: str = "label",
    strict_invocations: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
) -> dict[str, Any]:
    """The initial ``state.json`` of a deployment (also used by the container entry point)."""
    check_predict_mode(predict)
    request_timeout = values.positive(request_timeout, "timeout")
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
        "token_hash": hash_token(token) if token else None,
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
        "predict": predict,
        "strict_invocations": bool(strict_invocations),
        "request_timeout_s": request_timeout,
        "log_file": LOG_FILE,
    }
    record_event(state, "deploy", primary=ref.label)
    return state


def _spawn(folder: Path, sock: socket.socket, config: Config) -> subprocess.Popen[bytes]:
    env = os.environ.copy()
    env["PYTHONUNBUFFERED"] = "1"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [
        sys.executable, "-m", "jupyter_mlops.serving",
        "--deployment-dir", str(folder), "--fd", str(sock.fileno()),
    ]  # fmt: skip
    with os.fdopen(open_private(folder / LOG_FILE, os.O_WRONLY | os.O_APPEND), "ab") as log:
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
                f"{log_tail(log)}"
            )
        if healthy(url, timeout=max(0.1, min(2.0, deadline - time.monotonic()))):
            return
        time.sleep(0.02)
    raise ServingError(
        f"The server did not become healthy within {timeout:.0f} s. Last lines of {log}:\n"
        f"{log_tail(log)}"
    )


def deploy(
    target: str,
    *,
    name: str | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    workers: int = 1,
    wait: bool = True,
    timeout: float = START_TIMEOUT_S,
    token: str | None = None,
    batching: bool = True,
    max_batch_rows: int = 256,
    max_wait_ms: float = 2.0,
    prediction_log: bool | str = True,
    durability: str = "write",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    predict: str = "label",
    strict_invocations: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT_S,
    config: Config | None = None,
) -> Deployment:
    """Serve ``target`` (``name@alias``, ``name/version`` or a URI) in a detached server.

    The port is reserved here (a taken port raises :class:`PortInUseError` at once) and
    handed to the server process; with ``wait`` this returns once ``/health`` answers.
    ``token`` protects every endpoint but ``/health`` (only its hash is stored).
    ``prediction_log`` is True (the project's ``prediction_log`` setting, else its SQLite
    file), False, or a store URL (``sqlite:///...``, ``postgresql://...``); ``durability``
    ``"write"`` survives a killed server, ``"fsync"`` also a machine crash. ``predict``
    ``"proba"`` answers class probabilities by default (a model without ``predict_proba`` is
    refused here, before any server starts); requests choose with ``?predict=``.
    ``/invocations`` answers exactly as ``mlflow models serve``; ``strict_invocations``
    makes it validate and answer errors as ``/predict`` does. ``request_timeout`` (seconds,
    default 30) bounds each prediction from its arrival: a request not answered by then gets
    504 (``timeout`` is how long to wait for the server to start).
    """
    port = None if port is None else values.port(port)  # 1-65535, before anything starts
    request_timeout = values.positive(request_timeout, "timeout")
    config = config or load_config()
    config.ensure_dirs()
    if workers < 1:
        raise ServingError("workers must be at least 1.")
    check_predict_mode(predict)
    ref = resolve_target(target, config)
    if predict == "proba":
        _require_proba(ref)
    name = name or default_deployment_name(ref)
    folder = deployment_folder(name, config)
    with locked(folder):
        try:
            old = read_state(folder)
        except DamagedState as exc:  # a new state is the fix, unless its server still runs
            damaged = damaged_deployment(folder, exc.problem, exc.text)
            if damaged.pid:
                raise DamagedDeploymentError(damaged) from None
            old = None
        if old is not None and deployment_status(old) in ("running", "starting"):
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
            bound = sock.getsockname()[1]
            state = new_state(
                ref, name=name, host=host, port=bound, workers=workers,
                config=config, token=token, batching=batching, max_batch_rows=max_batch_rows,
                max_wait_ms=max_wait_ms, prediction_log=prediction_log, durability=durability,
                max_body_bytes=max_body_bytes, predict=predict,
                strict_invocations=strict_invocations, request_timeout=request_timeout,
            )  # fmt: skip
            for ack in (folder / ACKS_DIR).glob("*.json"):
                ack.unlink(missing_ok=True)
            write_state(folder, state)
            proc = _spawn(folder, sock, config)
            state["pid"] = proc.pid
            write_state(folder, state)
        finally:
            sock.close()
    deployment = deployment_from_state(folder, state, "starting")
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
    return deployment_from_state(folder, current, "running")


def _require_proba(ref: ModelRef) -> None:
    """Refuse ``predict="proba"`` for a model without ``predict_proba`` (loads it here)."""
    from jupyter_mlops.serving.proba import no_proba_message, proba_of
    from jupyter_mlops.serving.targets import load_pyfunc

    if proba_of(load_pyfunc(ref)) is None:
        raise ServingError(no_proba_message(ref.label))


def stop(name: str, *, timeout: float = 10.0, config: Config | None = None) -> Deployment:
    """Stop the server (SIGTERM, then SIGKILL after ``timeout``); its folder and log stay.

    With a damaged state the server found from what is left is stopped all the same, and
    :class:`DamagedDeploymentError` says so and how to repair the state."""
    try:
        return _stop(name, timeout, config)
    except DamagedDeploymentError as exc:
        damaged = exc.damaged
        if not damaged.pid:
            raise
        stop_group(damaged.pid, timeout)
        stopped, damaged.pid = damaged.pid, None
        raise DamagedDeploymentError(
            damaged, f"stopped its server (process group {stopped})"
        ) from None


def _stop(name: str, timeout: float, config: Config | None) -> Deployment:
    with locked_state(name, config) as (folder, state):
        pid = int(state.get("pid") or 0)
        # A server killed on its own may leave processes of its group (workers, forks that
        # hold its journal's lock): a dead leader's group id is not reused while they live.
        leader = pid_alive(pid) and pid_is_server(pid) if pid else False
        if pid and (leader or (not pid_alive(pid) and group_alive(pid))):
            stop_group(pid, timeout)
        if state.get("status") != "stopped":
            state["status"], state["stopped_at"] = "stopped", time.time()
            record_event(state, "stop")
            write_state(folder, state)
    if state.get("prediction_log"):  # a killed server leaves its journal: store it now
        with contextlib.suppress(Exception):
            store = open_prediction_store(str(state["prediction_log"]))
            try:
                replay_journal(folder / JOURNAL_DIR, store)
            finally:
                store.close()
    return deployment_from_state(folder, state, "stopped")
