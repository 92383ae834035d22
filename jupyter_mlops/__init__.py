"""jupyter-mlops: experiment tracking, data snapshots and model operations from Jupyter.

Only light modules are imported here; MLflow, DVC and friends load on first use so that
``import jupyter_mlops`` and ``%load_ext jupyter_mlops`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jupyter_mlops._version import __version__
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import (
    ConfigError,
    DataError,
    MlopsError,
    NotFoundError,
    OutcomeError,
    TrackingError,
)
from jupyter_mlops.tracking import (
    TrackedRun,
    latest_runs,
    restore_data,
    run_data,
    track,
    track_code,
)

# Heavier parts (registry, widgets, run queries) load on first use (see __getattr__).
_LAZY = {
    "register": "jupyter_mlops.registry",
    "promote": "jupyter_mlops.registry",
    "rollback": "jupyter_mlops.registry",
    "history": "jupyter_mlops.registry",
    "lineage": "jupyter_mlops.registry",
    "list_models": "jupyter_mlops.registry",
    "compare": "jupyter_mlops.widgets",
    "runs": "jupyter_mlops.tracking.runs",
    "get_run": "jupyter_mlops.tracking.runs.refs",
    "record_outcomes": "jupyter_mlops.predlog",
    "read_outcomes": "jupyter_mlops.predlog",
    "prediction_counts": "jupyter_mlops.predlog",
    "OutcomeReceipt": "jupyter_mlops.predlog",
    "reproduce": "jupyter_mlops.reproduction",
}

__all__ = [
    "Config",
    "ConfigError",
    "DataError",
    "MlopsError",
    "NotFoundError",
    "OutcomeError",
    "OutcomeReceipt",
    "TrackedRun",
    "TrackingError",
    "__version__",
    "compare",
    "get_run",
    "history",
    "latest_runs",
    "lineage",
    "list_models",
    "load_config",
    "load_ipython_extension",
    "prediction_counts",
    "promote",
    "read_outcomes",
    "record_outcomes",
    "register",
    "reproduce",
    "restore_data",
    "rollback",
    "run_data",
    "runs",
    "track",
    "track_code",
]

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell


def load_ipython_extension(ipython: InteractiveShell) -> None:
    """``%load_ext jupyter_mlops``: register the magics."""
    from jupyter_mlops.magics import MlopsMagics  # IPython is only needed here

    ipython.register_magics(MlopsMagics)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the built JupyterLab sidebar is (``jupyter_mlops/labextension``)."""
    return [{"src": "labextension", "dest": "jupyter-mlops"}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension feeding the sidebar."""
    return [{"module": "jupyter_mlops"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the sidebar's REST handlers (tornado is imported only here)."""
    from jupyter_mlops.server import load

    load(server_app)


def _lazy(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return _lazy(name)
    raise AttributeError(f"module 'jupyter_mlops' has no attribute {name!r}")
