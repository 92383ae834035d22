"""Where a deployment keeps its files: ``<project>/.mlops/deployments/<name>/``.

The model server writes this layout (``serving.state``) and the prediction-log reader
(``predlog.reader``) reads it: the state file names the store a deployment logs to, and
its journal holds records not yet stored. Both sides take the names from here.

A state file can be damaged (a full disk truncated it, a hand edit mistyped it):
:func:`read_state` then raises :class:`DamagedState`, which says what is wrong and keeps
what can still be read from the text (the server's pid, the prediction log's URL), so a
damaged deployment is listed as such, can still be stopped, and its predictions read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from jupyter_mlops._util.damage import type_problem

STATE_FILE = "state.json"
JOURNAL_DIR = "journal"
# A packaged model's identity (registered name, version, run id): written into the build
# context by ``packaging.docker``, read by ``python -m jupyter_mlops.serving --package``.
PACKAGE_FILE = "package.json"

# The fields every reader relies on, with the types they must have.
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "primary": (dict,),
    "port": (int,),
    "pid": (int, type(None)),
    "status": (str,),
    "generation": (int,),
    "host": (str, type(None)),
    "workers": (int,),
    "started_at": (int, float, type(None)),
    "stopped_at": (int, float, type(None)),
    "canary": (dict, type(None)),
    "canary_weight": (int, float),
    "history": (list,),
    "events": (list,),
    "prediction_log": (str, bool, type(None)),
}
_REQUIRED = ("name", "primary")


class DamagedState(ValueError):
    """A deployment's ``state.json`` exists but cannot be used: not JSON, or a field of
    the wrong type. ``text`` is what the file holds (for :meth:`field`)."""

    def __init__(self, path: Path, problem: str, text: str) -> None:
        super().__init__(f"{path} is damaged: {problem}")
        self.path = path
        self.problem = problem
        self.text = text

    def field(self, key: str) -> Any:
        """A top-level number or string still readable in the damaged text, else None."""
        match = re.search(
            rf'"{re.escape(key)}"\s*:\s*(-?\d+(?:\.\d+)?|"(?:[^"\\]|\\.)*")', self.text
        )
        if not match:
            return None
        try:
            return json.loads(match[1])
        except ValueError:
            return None


def deployments_root(mlops_dir: Path) -> Path:
    """The folder holding one subfolder per deployment."""
    return mlops_dir / "deployments"


def state_problem(state: Any) -> str | None:
    """What makes ``state`` unusable as a deployment's state, or None."""
    return type_problem(state, _TYPES, _REQUIRED)


def read_state(folder: Path) -> dict[str, Any] | None:
    """The deployment's state, or None when the folder holds none; :class:`DamagedState`
    when the file is not a valid state (truncated, not JSON, a field mistyped)."""
    path = folder / STATE_FILE
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return None
    try:
        state = json.loads(text)
    except ValueError as exc:
        what = "it is empty" if not text.strip() else f"it is not valid JSON ({exc})"
        raise DamagedState(path, what, text) from None
    problem = state_problem(state)
    if problem:
        raise DamagedState(path, problem, text)
    result: dict[str, Any] = state
    return result
