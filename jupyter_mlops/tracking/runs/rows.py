"""What a store reader hands to the table: runs as long (run, key, value) rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class RunRows:
    """What a reader returns: one row per run, and (run, key, value) rows per kind.

    Runs are referred to by an integer (SQLite's rowid, or a counter), in ascending order
    in ``info``: integers are cheaper than 32-character ids to create and to look up, which
    matters with hundreds of thousands of param rows.
    """

    info: list[tuple[Any, ...]] = field(default_factory=list)  # (number, *INFO_COLUMNS)
    params: list[tuple[int, str, Any]] = field(default_factory=list)
    metrics: list[tuple[int, str, Any]] = field(default_factory=list)  # None for NaN
    tags: list[tuple[int, str, Any]] = field(default_factory=list)
    datasets: list[tuple[int, str, Any]] = field(default_factory=list)  # run, name, hash
    experiments: dict[str, str] = field(default_factory=dict)  # id -> name


INFO_COLUMNS = (
    "run_id",
    "run_name",
    "experiment_id",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "user",
)
