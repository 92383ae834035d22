"""A shared MLflow tracking server for a team, and whether a tracking store is reachable.

``start_server`` runs MLflow's own ``mlflow server`` (nothing of ours in between), so
what a team gets is exactly what it would run by hand: a backend store (PostgreSQL for a
team; the project's SQLite file by default) and an artifact store proxied by the server
(``--artifacts-destination``), so clients need no access to the artifact folder or bucket.
The server is detached and outlives the process that started it; its state (pid, URL, log)
lives under ``.mlops/server/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from jupyter_mlops._util.processes import pid_alive, stop_group
from jupyter_mlops._util.urls import redact, redact_text
from jupyter_mlops.config import MLOPS_DIR, Config, load_config
from jupyter_mlops.errors import ConfigError, MlopsError

DEFAULT_PORT = 5000


@dataclass
class Reachability:
    """Whether a tracking URI answers, how fast, and what went wrong if not."""

    uri: str
    ok: bool
    detail: str
    seconds: float

    def __str__(self) -> str:
        state = "reachable" if self.ok else "UNREACHABLE"
        return f"{state} ({self.detail}, {self.seconds * 1000:.0f} ms)"


def probe(uri: str, timeout: float = 3.0) -> Reachability:
    """Check that the tracking store at ``uri`` answers within ``timeout`` seconds.

    A server is asked for ``/health``; a database URI is connected to; a SQLite file must
    be readable (or creatable). Never raises for an unreachable store: that is the answer.
    """
    started = time.perf_counter()

    def result(ok: bool, detail: str) -> Reachability:
        return Reachability(redact(uri), ok, redact_text(detail), time.perf_counter() - started)

    scheme = urlsplit(uri).scheme.split("+")[0]
    if scheme in ("http", "https"):
        url = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return result(resp.status == 200, f"HTTP {resp.status} from /health")
        except urllib.error.HTTPError as exc:
            return result(False, f"HTTP {exc.code} from /health")
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return result(False, f"cannot connect: {reason}")
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
        if path.exists():
            ok = os.access(path, os.R_OK | os.W_OK)
            return result(ok, "SQLite file" + ("" if ok else " not readable and writable"))
        parent = next((p for p in path.parents if p.exists()), None)
        ok = parent is not None and parent.is_dir() and os.access(parent, os.W_OK)
        return result(ok, "SQLite file not created yet" + ("" if ok else "; folder not writable"))
    if scheme in ("postgresql", "mysql", "mssql"):
        try:
            import sqlalchemy
            from sqlalchemy.pool import NullPool

            engine = sqlalchemy.create_engine(
                normalise_backend_uri(uri),
                connect_args=_connect_timeout_args(scheme, timeout),
                poolclass=NullPool,
            )
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
            finally:
                engine.dispose()
            return result(True, f"{scheme} database")
        except Exception as exc:  # driver missing, refused, bad password: all the answer
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return result(False, f"cannot connect: {first}")
    return result(False, f"cannot check a {scheme or 'plain path'!r} store")


def _connect_timeout_args(scheme: str, timeout: float) -> dict[str, object]:
    if scheme == "postgresql":
        return {"connect_timeout": max(1, int(timeout))}
    if scheme == "mysql":
        return {"connect_timeout": max(1, int(timeout))}
    return {}


# -- the server ---------------------------------------------------------------------------


@dataclass
class ServerInfo:
    """A tracking server started by ``start_server``."""

    url: str
    pid: int
    backend_store_uri: str
    artifacts_destination: str
    log: str
    started: float

    def __str__(self) -> str:
        return (
            f"MLflow tracking server {self.url} (pid {self.pid})\n"
            f"  backend store: {redact(self.backend_store_uri)}\n"
            f"  artifacts:     {self.artifacts_destination}\n"
            f"  log:           {self.log}\n"
            f"Point kernels at it:  export MLFLOW_TRACKING_URI={self.url}\n"
            f"  or in pyproject.toml:  [tool.jupyter-mlops] tracking_uri = {self.url!r}"
        )


def _state_dir(config: Config) -> Path:
    return config.root / MLOPS_DIR / "server"


def _state_file(config: Config, port: int) -> Path:
    return _state_dir(config) / f"{port}.json"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def normalise_backend_uri(uri: str) -> str:
    """Pick an installed PostgreSQL driver for a plain ``postgresql://`` URI.

    SQLAlchemy maps ``postgresql://`` to psycopg2; jupyter-mlops' ``team`` extra installs
    psycopg 3, so such a URI is given the ``+psycopg`` driver when psycopg2 is missing.
    """
    if not uri.startswith("postgresql://") and not uri.startswith("postgres://"):
        return uri
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
        return "postgresql+psycopg://" + uri.split("://", 1)[1]
    return uri


def start_server(
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: str | None = None,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    workers: int = 1,
    timeout: float = 120.0,
    config: Config | None = None,
) -> ServerInfo:
    """Start ``mlflow server`` detached and wait until it answers ``/health``.

    Defaults: the project's embedded SQLite store as the backend (so a project can be
    shared as it is) and its ``.mlops/artifacts`` folder as the artifact store. For a team,
    pass a PostgreSQL URI and a shared artifact location. Binds to 127.0.0.1 unless told
    otherwise. One worker by default: with several uvicorn workers, every request on a
    kept-alive connection took ~45 ms instead of ~3 ms here (MLflow's own clients keep
    connections alive), which made tracking 3x slower than one worker. Raises
    ``MlopsError`` with the end of the server's log if it does not come up.
    """
    config = config or load_config()
    config.ensure_dirs()
    embedded = f"sqlite:///{config.root / MLOPS_DIR / 'mlflow.db'}"
    backend = normalise_backend_uri(backend_store_uri or embedded)
    if artifacts_destination is None:
        artifacts = config.root / MLOPS_DIR / "artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        artifacts_destination = str(artifacts)
    elif "://" not in artifacts_destination:
        artifacts = (config.root / artifacts_destination).resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        artifacts_destination = str(artifacts)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    existing = _read_state(config, port)
    if existing is not None and pid_alive(existing.pid):
        raise MlopsError(
            f"A tracking server started from this project already runs at {existing.url} "
            f"(pid {existing.pid}); stop it with `jupyter-mlops server stop --port {port}`."
        )
    if not _port_free(host, port):
        raise MlopsError(f"Port {port} on {host} is in use; choose another with --port.")
    if backend.startswith(("postgresql", "mysql", "mssql")):
        reach = probe(backend, timeout=5)
        if not reach.ok:
            raise ConfigError(
                f"Cannot reach the backend store {redact(backend)}: {reach.detail}. "
                "Is the database server running, and does the database exist?"
            )

    state_dir = _state_dir(config)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"{port}.log"
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        artifacts_destination,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    env = dict(os.environ)
    # The server's GenAI job runner (judges, scorers) is not needed for tracking and costs
    # several processes; a team that wants it sets the variable itself.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env.pop("MLFLOW_TRACKING_URI", None)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=config.root,
            env=env,
            start_new_session=True,  # its own process group: stop takes the workers too
        )
    info = ServerInfo(url, proc.pid, backend, artifacts_destination, str(log_path), time.time())
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise MlopsError(
                f"mlflow server exited with code {proc.returncode} before answering. "
                f"End of {log_path}:\n{_tail(log_path)}"
            )
        if probe(url, timeout=1).ok:
            break
        if time.monotonic() > deadline:
            stop_group(proc.pid)
            raise MlopsError(
                f"mlflow server did not answer on {url} within {timeout:.0f} s. "
                f"End of {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.25)
    _state_file(config, port).write_text(json.dumps(asdict(info), indent=2))
    return info


def _tail(path: Path, lines: int = 15) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


def _read_state(config: Config, port: int) -> ServerInfo | None:
    path = _state_file(config, port)
    try:
        return ServerInfo(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def servers(config: Config | None = None) -> list[tuple[ServerInfo, bool]]:
    """Servers started from this project, each with whether its process is alive."""
    config = config or load_config()
    out = []
    for path in sorted(_state_dir(config).glob("*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            info = ServerInfo(**json.loads(path.read_text()))
            out.append((info, pid_alive(info.pid)))
    return out


def stop_server(port: int = DEFAULT_PORT, config: Config | None = None) -> ServerInfo:
    """Stop the server this project started on ``port`` (and its worker processes)."""
    config = config or load_config()
    info = _read_state(config, port)
    if info is None:
        running = ", ".join(str(i.url) for i, _ in servers(config)) or "none"
        raise MlopsError(f"No server started from this project on port {port} (known: {running})")
    stop_group(info.pid)
    _state_file(config, port).unlink(missing_ok=True)
    return info
