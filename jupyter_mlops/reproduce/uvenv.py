"""Fresh virtual environments built with uv from a run's pinned packages (cached)."""

from __future__ import annotations

from collections.abc import Mapping

from jupyter_mlops.errors import MlopsError


def fresh_environment(
    pins: Mapping[str, str], python_version: str | None = None
) -> tuple[str, list[str], bool, float]:
    """(python path, unavailable pins, reused from the cache, seconds) of a fresh env."""
    raise MlopsError("Fresh environments are not available yet: use --env current")
