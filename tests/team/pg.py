"""A real PostgreSQL server for tests: a throw-away cluster in a temp folder.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it). The
cluster trusts local connections, listens on 127.0.0.1 only, and is owned by the
``postgres`` user when the tests run as root (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

USER = "mlops"


def bin_dir() -> Path:
    """The folder with initdb and pg_ctl (Debian keeps them off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(
        "PostgreSQL is not installed: `apt-get install postgresql` (.ci/run does this)"
    )


def _as_owner(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


@dataclass
class Cluster:
    """One running PostgreSQL server."""

    data: Path
    port: int

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database ``name``; returns its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=USER, dbname="postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            _as_owner([str(bin_dir() / "pg_ctl"), "-D", str(self.data), *args]),
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        self._pg_ctl(
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200",
            "-l",
            str(self.data / "server.log"),
            "-w",
            "start",
        )

    def stop(self) -> None:
        self._pg_ctl("-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        """Stop the server (if running) and delete the cluster's folder."""
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.data.parent, ignore_errors=True)


def new_cluster() -> Cluster:
    """initdb a cluster in a new temp folder and start it on a free port.

    Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    """
    folder = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    data = folder / "pgdata"
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres")
    initdb = [str(bin_dir() / "initdb"), "-D", str(data), "-A", "trust", "-U", USER]
    subprocess.run(
        _as_owner([*initdb, "-E", "UTF8", "--no-sync"]),
        check=True,
        capture_output=True,
        timeout=120,
    )
    cluster = Cluster(data, free_port())
    cluster.start()
    return cluster
