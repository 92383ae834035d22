"""Reproduce a tracked run: environment rebuilt, data restored, code re-executed, compared.

Sits above ``pipelines`` (it executes notebooks) and ``registry`` (a model reference names
its version's run); what a run records for it is written by ``tracking``.
"""

from __future__ import annotations

from jupyter_mlops.reproduction.result import (
    DIFFERENT,
    FAILED,
    REPRODUCED,
    Cause,
    Difference,
    EnvironmentReport,
    PackageChange,
    Reproduction,
)
from jupyter_mlops.reproduction.runner import reproduce

__all__ = [
    "DIFFERENT",
    "FAILED",
    "REPRODUCED",
    "Cause",
    "Difference",
    "EnvironmentReport",
    "PackageChange",
    "Reproduction",
    "reproduce",
]
