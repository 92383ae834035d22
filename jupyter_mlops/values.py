"""Checks of single values shared by the faces' option converters and the Python API.

Each check returns the value (converted where it says so) or raises
:class:`jupyter_mlops.errors.UsageError` with a one-line message naming the value, what it
must be and an example, before anything runs. ``commands/options.py`` wraps them as argparse
``type=`` converters, so the magic and the command line refuse the same values the API does.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import UsageError

#: Ports a deployment or server may listen on.
PORT_RANGE = (1, 65535)
#: The most runs ``runs -n`` lists (a listing, not an export: ``mlflow`` exports more).
MAX_RUNS_LISTED = 10_000
#: MLflow's limits: its API takes experiment names up to 500 characters, but its SQL stores
#: keep them in a VARCHAR(256) column (PostgreSQL refuses longer ones), so 256 holds for
#: every store; tag keys may be at most 250 characters (``mlflow.utils.validation``).
MAX_EXPERIMENT_NAME = 256
MAX_TAG_KEY = 250
#: Tag prefixes the project and MLflow write themselves; a user tag may not overwrite them.
RESERVED_TAG_PREFIXES = ("mlops.", "mlflow.")
#: The most processes or tasks at once a deployment, server or pipeline may ask for.
MAX_WORKERS = 256
#: The most entries ``pipeline history -n`` lists.
MAX_HISTORY_LISTED = 10_000
#: The largest model version accepted anywhere (MLflow stores versions as 32-bit integers).
MAX_VERSION = 2**31 - 1


def number(value: Any, what: str) -> float:
    """``value`` as a finite float (NaN and infinities refused)."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(out):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    return out


def positive(value: Any, what: str) -> float:
    """A finite number above zero (intervals: 0 would be a busy loop)."""
    out = number(value, what)
    if out <= 0:
        raise UsageError(f"{what} must be above 0 seconds, got {value!r}")
    return out


def non_negative(value: Any, what: str) -> float:
    """A finite number of zero or more (cooldowns, thresholds of distances)."""
    out = number(value, what)
    if out < 0:
        raise UsageError(f"{what} cannot be negative, got {value!r}")
    return out


def between(value: Any, what: str, low: float, high: float, *, open_low: bool = False) -> float:
    """A finite number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    out = number(value, what)
    if out > high or out < low or (open_low and out == low):
        bracket = "(" if open_low else "["
        raise UsageError(f"{what} must be in {bracket}{low:g}, {high:g}], got {value!r}")
    return out


def whole(value: Any, what: str, low: int, high: int) -> int:
    """A whole number in ``[low, high]`` (bool and fractions refused)."""
    if isinstance(value, bool):
        raise UsageError(f"{what} must be a whole number, got {value!r}")
    try:
        out = int(value) if not isinstance(value, float) else None
    except (TypeError, ValueError):
        out = None
    if out is None:
        raise UsageError(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    if not low <= out <= high:
        raise UsageError(f"{what} must be from {low} to {high}, got {value!r}")
    return out


def port(value: Any) -> int:
    """A TCP port, 1-65535."""
    return whole(value, "port", *PORT_RANGE)


def runs_limit(value: Any) -> int:
    """How many runs a listing shows: 1 to :data:`MAX_RUNS_LISTED`."""
    return whole(value, "limit", 1, MAX_RUNS_LISTED)


def workers(value: Any) -> int:
    """How many worker processes or tasks at once: 1 to :data:`MAX_WORKERS`."""
    return whole(value, "workers", 1, MAX_WORKERS)


def history_limit(value: Any) -> int:
    """How many entries a history listing shows: 1 to :data:`MAX_HISTORY_LISTED`."""
    return whole(value, "limit", 1, MAX_HISTORY_LISTED)


def version_number(value: Any, what: str = "version") -> str:
    """A model version as MLflow numbers it (1, 2, ...), returned as its string."""
    text = str(value).strip()
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 1 <= int(text) <= MAX_VERSION:
        raise UsageError(f"{what} must be a model version number such as 3, got {value!r}")
    return str(int(text))


def experiment_name(value: Any) -> str:
    """An MLflow experiment name: not blank, at most :data:`MAX_EXPERIMENT_NAME` characters.

    An empty name would make MLflow fall back to its default experiment (and its artifacts
    to ``./mlruns``), so it is refused rather than guessed at."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"experiment name cannot be empty, got {value!r}; e.g. -e iris")
    if len(value) > MAX_EXPERIMENT_NAME:
        raise UsageError(
            f"experiment name is {len(value)} characters; MLflow allows at most "
            f"{MAX_EXPERIMENT_NAME}"
        )
    if "\x00" in value:
        raise UsageError("experiment name cannot contain a NUL character")
    return value


def tag_key(key: str) -> str:
    """A user's tag key: not blank, not reserved (``mlops.*``, ``mlflow.*``), MLflow's length."""
    if not key.strip():
        raise UsageError("a tag key cannot be empty; e.g. --tag team=ds")
    if key.lower().startswith(RESERVED_TAG_PREFIXES):
        prefixes = ", ".join(f"{p}*" for p in RESERVED_TAG_PREFIXES)
        raise UsageError(
            f"tag {key!r} is reserved ({prefixes} are written by jupyter-mlops and MLflow); "
            "choose another key"
        )
    if len(key) > MAX_TAG_KEY:
        raise UsageError(f"tag key is {len(key)} characters; MLflow allows at most {MAX_TAG_KEY}")
    return key


def user_tags(tags: Mapping[str, Any] | None) -> dict[str, str]:
    """``tags`` with every key checked by :func:`tag_key`, values as strings."""
    return {tag_key(str(k)): str(v) for k, v in (tags or {}).items()}


def out_folder(value: str | os.PathLike[str], what: str = "--out") -> Path:
    """A folder to write into: absent, or an existing folder (never an existing file)."""
    path = Path(value)
    if not str(value).strip():
        raise UsageError(f"{what} needs a folder path")
    if path.exists() and not path.is_dir():
        raise UsageError(f"{what} {str(value)!r} is an existing file; give a folder path")
    return path


def notebook_file(value: str | os.PathLike[str]) -> str:
    """A notebook to execute: an existing ``.ipynb`` file (a CSV is refused by name)."""
    path = Path(value)
    if path.suffix.lower() != ".ipynb":
        raise UsageError(f"{str(value)!r} is not a notebook (.ipynb); e.g. execute train.ipynb")
    if not path.is_file():
        raise UsageError(f"no notebook file {str(value)!r}")
    return str(value)
