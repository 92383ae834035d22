"""Runs: capture what a cell produced and record it in MLflow."""

from jupyter_mlops.tracking.cell import CellResult, track_code
from jupyter_mlops.tracking.lifecycle import latest_runs, track
from jupyter_mlops.tracking.lineage import restore_data, run_data
from jupyter_mlops.tracking.run import ModelRecord, TrackedRun

__all__ = [
    "CellResult",
    "ModelRecord",
    "TrackedRun",
    "latest_runs",
    "restore_data",
    "run_data",
    "track",
    "track_code",
]
