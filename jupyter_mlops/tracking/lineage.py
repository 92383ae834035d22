"""Reading back what a run recorded about its data, and restoring that data."""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.tracking.run import TAG_DATA

if TYPE_CHECKING:
    from jupyter_mlops.data import DataSnapshot


def run_data(run_id: str, config: Config | None = None) -> list[DataSnapshot]:
    """The DVC snapshots a run recorded with ``--data``."""
    from jupyter_mlops.data import DataSnapshot
    from jupyter_mlops.tracking.runs.refs import get_run  # the runs package is not light

    run = get_run(run_id, config)
    raw = run.data.tags.get(TAG_DATA)
    return [DataSnapshot.from_dict(d) for d in json.loads(raw)] if raw else []


def restore_data(
    run_id: str,
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    config: Config | None = None,
) -> Path:
    """Put back, at ``dest``, the exact content ``path`` had when run ``run_id`` read it.

    The bytes come from the project's DVC cache; what it lacks (e.g. in a fresh clone, or on
    another machine than the one that ran) is fetched by hash from the project's DVC remote
    (``dvc_remote``, or DVC's default remote) first. See :func:`jupyter_mlops.data.restore`.
    """
    import jupyter_mlops.data as data

    config = config or load_config()
    snaps = run_data(run_id, config)
    wanted = Path(path)
    # As recorded (relative to the project root), or as given to --data (relative to the
    # working directory): the two differ when the notebook is not at the project root.
    keys = []
    for candidate in [wanted] if wanted.is_absolute() else [wanted, Path.cwd() / wanted]:
        if candidate.is_absolute():
            if not candidate.resolve().is_relative_to(config.root):
                continue
            candidate = candidate.resolve().relative_to(config.root)
        keys.append(PurePosixPath(candidate.as_posix()).as_posix())
    keys = keys or [wanted.as_posix()]
    for candidate_key in keys:
        for snap in snaps:
            if snap.path == candidate_key:
                return data.restore(snap, dest, config.root, overwrite=overwrite)
    key = keys[0]
    known = ", ".join(s.path for s in snaps) or "none"
    raise NotFoundError(f"Run {run_id} has no data snapshot of {key!r} (it has: {known})")
