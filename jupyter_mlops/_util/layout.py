"""Where a deployment keeps its files: ``<project>/.mlops/deployments/<name>/``.

The model server writes this layout (``serving.state``) and the prediction-log reader
(``predlog.reader``) reads it: the state file names the store a deployment logs to, and
its journal holds records not yet stored. Both sides take the names from here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_FILE = "state.json"
JOURNAL_DIR = "journal"
# A packaged model's identity (registered name, version, run id): written into the build
# context by ``packaging.docker``, read by ``python -m jupyter_mlops.serving --package``.
PACKAGE_FILE = "package.json"


def deployments_root(mlops_dir: Path) -> Path:
    """The folder holding one subfolder per deployment."""
    return mlops_dir / "deployments"


def read_state(folder: Path) -> dict[str, Any] | None:
    """The deployment's state, or None when the folder holds none."""
    try:
        state: dict[str, Any] = json.loads((folder / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    return state
