"""``jupyter-mlops server``: a shared MLflow tracking server for a team (command line only:
it outlives kernels, and a notebook only points at it through the tracking URI)."""

from __future__ import annotations

import argparse
from typing import Any

from jupyter_mlops._util.records import attributes
from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import PORT, WORKERS, json_option


def start(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.tracking import server

    options = ("backend_store_uri", "artifacts_destination", "host", "port", "workers")
    return server.start_server(**attributes(args, *options))


def stop(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.tracking import server

    info = server.stop_server(args.port)
    return f"Stopped the tracking server {info.url} (pid {info.pid})"


def status(args: argparse.Namespace, context: Context) -> Any:
    if args.json:
        from jupyter_mlops.commands import output
        from jupyter_mlops.tracking.server import servers

        return output.servers(servers())
    from jupyter_mlops.present import servers_text

    return servers_text()


class Server(Command):
    name = "server"
    help = "a shared MLflow tracking server for a team"

    def add_arguments(self, parser: Arguments) -> None:
        q = parser.subcommand(
            "start",
            "start `mlflow server` detached (default: this project's store, on 127.0.0.1:5000)",
            start,
        )
        q.add_argument(
            "--backend-store-uri",
            help="where runs and models live, e.g. postgresql://user:pw@db/mlflow "
            "(default: this project's .mlops/mlflow.db)",
        )
        q.add_argument(
            "--artifacts-destination",
            help="where the server keeps artifacts: a folder or s3://... "
            "(default: .mlops/artifacts)",
        )
        q.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
        q.add_argument("--port", type=PORT, default=5000, help="port, 1-65535 (default 5000)")
        q.add_argument(
            "--workers",
            type=WORKERS,
            default=1,
            help="uvicorn worker processes (default 1: with more, each request on a kept-alive "
            "connection was measured ~45 ms slower)",
        )
        q = parser.subcommand("stop", "stop a server started from this project", stop)
        q.add_argument("--port", type=PORT, default=5000, help="port, 1-65535 (default 5000)")
        q = parser.subcommand(
            "status", "servers started from this project and their health", status
        )
        json_option(q)
