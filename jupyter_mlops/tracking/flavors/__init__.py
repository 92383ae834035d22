"""The registry of model flavours: which framework a model object belongs to.

Lookup is ordered: flavours registered with ``register`` are asked first (newest first),
then the built-in ones in the order of ``BUILTIN``, so a specific flavour (say xgboost's
native one) wins over the generic scikit-learn one that also accepts its estimators. A
flavour whose framework is not installed is skipped, never imported.
"""

from __future__ import annotations

import functools
import importlib.util
from typing import Any

from jupyter_mlops.errors import UsageError
from jupyter_mlops.tracking.flavors.base import Flavor, LogArgs, Unwrapped, pinned
from jupyter_mlops.tracking.flavors.boosting import is_eval_history
from jupyter_mlops.tracking.flavors.lightgbm import LightGBMFlavor
from jupyter_mlops.tracking.flavors.pytorch import PyTorchFlavor
from jupyter_mlops.tracking.flavors.sklearn import SklearnFlavor
from jupyter_mlops.tracking.flavors.xgboost import XGBoostFlavor

__all__ = [
    "BUILTIN",
    "FALLBACK",
    "Flavor",
    "LogArgs",
    "Unwrapped",
    "available",
    "flavor_for",
    "get",
    "is_eval_history",
    "pinned",
    "register",
    "unregister",
]

# XGBoost's and LightGBM's estimators follow the scikit-learn API: their flavours come
# first, or the generic one would take them by duck typing (and pickle them).
BUILTIN: tuple[Flavor, ...] = (
    PyTorchFlavor(),
    XGBoostFlavor(),
    LightGBMFlavor(),
    SklearnFlavor(),
)
# A model no flavour recognises (an unfitted estimator, a custom object with ``predict``)
# is still logged when asked for explicitly, pickled by the scikit-learn flavour.
FALLBACK = "sklearn"
_registered: list[Flavor] = []


@functools.cache
def _installed(library: str) -> bool:
    # find_spec locates a top-level package without importing it.
    return importlib.util.find_spec(library) is not None


def register(flavor: Flavor) -> None:
    """Ask ``flavor`` before every flavour known so far; it replaces one of the same name."""
    unregister(flavor.name)
    _registered.insert(0, flavor)


def unregister(name: str) -> None:
    """Forget the flavour ``name`` added with ``register`` (built-in ones stay)."""
    _registered[:] = [f for f in _registered if f.name != name]


def available() -> list[Flavor]:
    """The flavours whose framework is installed, in lookup order."""
    names: set[str] = set()
    found = []
    for flavor in [*_registered, *BUILTIN]:
        if flavor.name not in names and _installed(flavor.library):
            names.add(flavor.name)
            found.append(flavor)
    return found


def flavor_for(obj: Any) -> Flavor | None:
    """The first flavour that detects ``obj`` as a trained model; None if none does."""
    return next((f for f in available() if f.detects(obj)), None)


def get(name: str) -> Flavor:
    """The flavour called ``name``; ``UsageError`` naming the known ones if there is none."""
    flavors = available()
    for flavor in flavors:
        if flavor.name == name:
            return flavor
    known = ", ".join(f.name for f in flavors) or "none"
    raise UsageError(f"No model flavour {name!r} (installed: {known})")
