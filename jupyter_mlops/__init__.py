"""jupyter-mlops: experiment tracking, data snapshots and model operations from Jupyter.

Only light modules are imported here; MLflow, DVC and friends load on first use so that
``import jupyter_mlops`` and ``%load_ext jupyter_mlops`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import (
    ConfigError,
    DataError,
    MlopsError,
    NotFoundError,
    TrackingError,
)
from jupyter_mlops.tracking import (
    TrackedRun,
    get_run,
    latest_runs,
    restore_data,
    run_data,
    track,
    track_code,
)

__version__ = "0.1.0"

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "MlopsError",
    "NotFoundError",
    "TrackedRun",
    "TrackingError",
    "__version__",
    "get_run",
    "latest_runs",
    "load_config",
    "load_ipython_extension",
    "restore_data",
    "run_data",
    "track",
    "track_code",
]

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext jupyter_mlops``: register the magics."""
    from jupyter_mlops.magics import MlopsMagics  # IPython is only needed here

    ipython.register_magics(MlopsMagics)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"module 'jupyter_mlops' has no attribute {name!r}")
