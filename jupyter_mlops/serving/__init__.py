"""Model serving: deployments of MLflow models as detached HTTP servers, and batch scoring.

``deploy("iris-rf@champion")`` starts a server on 127.0.0.1 and returns a
:class:`Deployment` (URL, models, curl example); ``canary``, ``promote`` and ``rollback``
change its routing without a restart and without failing a request (``promote(...,
when="challenger.accuracy > primary.accuracy")`` only when the live outcomes show it); ``stop``,
``list_deployments`` and ``get_deployment`` manage it; ``read_predictions`` reads its
prediction log; ``batch_predict`` scores files with lineage columns.

Importing this package stays light (no FastAPI, uvicorn or MLflow): the server itself lives
in :mod:`jupyter_mlops.serving.app`, imported only by the server process
(``python -m jupyter_mlops.serving``), and MLflow loads when a target is resolved.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jupyter_mlops.predlog import (
    PredictionStore,
    SQLitePredictionStore,
    open_prediction_store,
    read_predictions,
    register_prediction_store,
)
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.batch import LINEAGE_COLUMNS, BatchResult, batch_predict
from jupyter_mlops.serving.decision import Decision, PromotionRefused
from jupyter_mlops.serving.deployment import Deployment, DeploymentList
from jupyter_mlops.serving.errors import (
    DeploymentNotFoundError,
    InputError,
    PortInUseError,
    ServingError,
)
from jupyter_mlops.serving.listing import get_deployment, list_deployments
from jupyter_mlops.serving.manager import deploy, stop
from jupyter_mlops.serving.releases import canary, promote, rollback
from jupyter_mlops.serving.targets import model_uri, resolve_target

if TYPE_CHECKING:
    import os

    from fastapi import FastAPI

__all__ = [
    "LINEAGE_COLUMNS",
    "BatchResult",
    "Decision",
    "Deployment",
    "DeploymentList",
    "DeploymentNotFoundError",
    "InputError",
    "ModelRef",
    "PortInUseError",
    "PredictionStore",
    "PromotionRefused",
    "SQLitePredictionStore",
    "ServingError",
    "batch_predict",
    "canary",
    "create_app",
    "deploy",
    "get_deployment",
    "list_deployments",
    "model_uri",
    "open_prediction_store",
    "promote",
    "read_predictions",
    "register_prediction_store",
    "resolve_target",
    "rollback",
    "stop",
]


def create_app(deployment_dir: str | os.PathLike[str]) -> FastAPI:
    """The ASGI app serving ``deployment_dir`` (imports FastAPI: for server processes)."""
    from jupyter_mlops.serving.app import create_app as _create_app

    return _create_app(deployment_dir)
