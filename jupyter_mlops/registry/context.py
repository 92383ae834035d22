"""Who changes the registry, when, and from where: recorded with every version and alias move.

The notebook and git commit come from the caller's ``context`` when a face knows them (the
kernel's notebook), else from the project folder.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from jupyter_mlops.config import Config


def utc_now() -> str:
    """The current time as an ISO string in UTC, to the microsecond (sortable)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def current_user() -> str:
    """The login name, or ``unknown`` where there is none."""
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "unknown"


def operation_context(context: Mapping[str, Any] | None, config: Config) -> dict[str, Any]:
    """``context`` completed with the notebook and git commit of the project, when missing."""
    from jupyter_mlops.tracking.environment import git_state, notebook_path

    ctx = dict(context or {})
    ctx.setdefault("notebook", notebook_path(None, config.root))
    if "git_commit" not in ctx:
        git = git_state(config.root)
        ctx["git_commit"] = git.commit if git else None
    return ctx
