"""The model registry: tracked models become governed versions in MLflow's Model Registry.

Versions, aliases and tags live in MLflow, so plain MLflow clients and the UI see the same
state. What MLflow lacks, the history of who moved which alias when (and whether a gate
passed), is recorded as registered-model tags, one per event, readable by any client.

Modules: ``refs`` (names and the one ``ModelRef``), ``lookup`` (reading versions and alias
holders), ``gates`` (bars a candidate must clear), ``lock`` (the alias lock), ``aliases``
(promote, rollback, history), ``versions`` (register, list), ``lineage``.
"""

from __future__ import annotations

from jupyter_mlops.errors import RegistryError
from jupyter_mlops.registry.aliases import HISTORY_PREFIX, AliasEvent, history, promote, rollback
from jupyter_mlops.registry.gates import (
    Comparison,
    Gate,
    GateError,
    GateFailed,
    GateResult,
    compare,
)
from jupyter_mlops.registry.lineage import Lineage, lineage
from jupyter_mlops.registry.lock import LOCK_STALE, LOCK_TIMEOUT, PromotionConflict
from jupyter_mlops.registry.lookup import get_version
from jupyter_mlops.registry.refs import (
    LOCK_INFIX,
    ModelRef,
    check_alias,
    check_model_name,
    expectation,
    is_lock_model,
)
from jupyter_mlops.registry.versions import (
    ModelSummary,
    Registration,
    list_models,
    register,
)
from jupyter_mlops.tracking.runs import LOWER_IS_BETTER  # the metric-direction rule, shared

__all__ = [
    "HISTORY_PREFIX",
    "LOCK_INFIX",
    "LOCK_STALE",
    "LOCK_TIMEOUT",
    "LOWER_IS_BETTER",
    "AliasEvent",
    "Comparison",
    "Gate",
    "GateError",
    "GateFailed",
    "GateResult",
    "Lineage",
    "ModelRef",
    "ModelSummary",
    "PromotionConflict",
    "Registration",
    "RegistryError",
    "check_alias",
    "check_model_name",
    "compare",
    "expectation",
    "get_version",
    "history",
    "is_lock_model",
    "lineage",
    "list_models",
    "promote",
    "register",
    "rollback",
]
