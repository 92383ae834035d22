"""jupyter-mlops: experiment tracking, data snapshots and model operations from Jupyter.

Only light modules are imported here; MLflow, DVC and friends load on first use so that
``import jupyter_mlops`` and ``%load_ext jupyter_mlops`` stay fast.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable
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
    "reproduce": "jupyter_mlops.reproduce",  # the function, see _Package
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

    # For type checkers, which know no module-level property: the function (see _Package).
    from jupyter_mlops.reproduce import reproduce as reproduce


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


class _Package(types.ModuleType):
    """This package's module, so that ``jupyter_mlops.reproduce`` is the function.

    ``jupyter_mlops.reproduce`` is also a subpackage, and the import system sets each
    subpackage it imports as an attribute of its parent (``setattr(jupyter_mlops,
    "reproduce", <module>)``), which would hide the function behind the module the first
    time anything imports ``jupyter_mlops.reproduce.*``. A property of the module's class
    is looked up before the module's own attributes: reading gives the function, and the
    import system's write is dropped (the subpackage stays in ``sys.modules`` under its
    name, which is all ``from jupyter_mlops.reproduce... import`` reads). Spell imports of
    the subpackage ``from jupyter_mlops.reproduce import X``: ``import
    jupyter_mlops.reproduce as m`` reads the attribute, so gives the function.
    """

    @property
    def reproduce(self) -> Callable[..., Any]:
        return _lazy("reproduce")  # type: ignore[no-any-return]

    @reproduce.setter
    def reproduce(self, value: Any) -> None:
        """The import system's ``setattr`` of the subpackage: nothing to keep."""


sys.modules[__name__].__class__ = _Package


def _lazy(name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return _lazy(name)
    raise AttributeError(f"module 'jupyter_mlops' has no attribute {name!r}")
