"""Which reader a store gets: the embedded SQLite store is read directly, anything else
(a server, another database, an unexpected schema) through MLflow's client."""

from __future__ import annotations

import sqlite3
from typing import Literal

from jupyter_mlops._util.urls import safe_logger
from jupyter_mlops.config import Config
from jupyter_mlops.errors import QueryError
from jupyter_mlops.tracking.runs.client_reader import ClientReader
from jupyter_mlops.tracking.runs.sqlite_reader import SqliteReader, sqlite_path

_log = safe_logger(__name__)

Reader = Literal["auto", "sqlite", "mlflow"]
RunReader = SqliteReader | ClientReader


def open_reader(config: Config, reader: Reader) -> RunReader | None:
    """The reader to use; None when the embedded store does not exist yet (no runs)."""
    path = sqlite_path(config.tracking_uri)
    if reader == "mlflow" or path is None:
        if reader == "sqlite":
            raise QueryError(f"{config.tracking_uri} is not a SQLite store")
        return ClientReader(config)
    if not path.is_file():
        return None
    try:
        sql = SqliteReader(path)
        if sql.usable():
            return sql
        sql.close()
    except sqlite3.Error as exc:
        _log.debug("reading %s directly failed (%s): using MLflow's client", path, exc)
    if reader == "sqlite":
        raise QueryError(f"{path} does not have the MLflow schema this version reads")
    return ClientReader(config)
