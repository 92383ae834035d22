"""Reading the registry: the version a reference names, and which version holds an alias.

Every registry operation reaches MLflow through ``registry_client``, the project's shared
client, so the tracking URI is resolved the same way as for runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jupyter_mlops.client import client as shared_client
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.registry.refs import ModelRef, is_lock_model
from jupyter_mlops.tracking import store

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


def registry_client(config: Config | None) -> MlflowClient:
    """The shared MLflow client of ``config`` (the current project's when None)."""
    return shared_client(config or load_config())


def find_version(client: MlflowClient, ref: ModelRef) -> ModelVersion | None:
    """The version ``ref`` names (its alias, its number, or the newest), None if none."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return store.call(client.get_model_version_by_alias, ref.name, ref.alias)
        if ref.version:
            return store.call(client.get_model_version, ref.name, ref.version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            return None
        raise
    versions = store.call(client.search_model_versions, f"name = '{ref.name}'")
    return max(versions, key=lambda v: int(v.version)) if versions else None


def get_version(ref: str | ModelRef, config: Config | None = None) -> ModelVersion:
    """The model version ``ref`` names (an alias, a number, or the newest)."""
    ref = ModelRef.parse(ref) if isinstance(ref, str) else ref
    client = registry_client(config)
    version = find_version(client, ref)
    if version is None:
        known = [
            m.name for m in store.call(client.search_registered_models) if not is_lock_model(m.name)
        ]
        hint = f"registered models: {', '.join(known)}" if known else "no model is registered yet"
        raise NotFoundError(f"No model version {ref} ({hint})")
    return version


def alias_holder(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version number ``name@alias`` points at, None if the alias is unset."""
    current = find_version(client, ModelRef(name, alias=alias))
    return str(current.version) if current else None
