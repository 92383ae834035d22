"""What to serve: turn a deployment target into a pinned model reference.

A target is ``name@alias`` or ``name/version`` (shorthand for ``models:/...``), any
``models:/`` or ``runs:/`` URI, or a local model folder. Aliases are resolved once, at deploy
time, to a version: a deployment keeps serving the version it was given even when the alias
moves later, and reports that version, its run id and where it came from.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from jupyter_mlops.errors import NotFoundError
from jupyter_mlops.registry.refs import ModelRef
from jupyter_mlops.serving.errors import ServingError

if TYPE_CHECKING:
    from jupyter_mlops.config import Config

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:")
# ``name/3``: a registered version (a path of several folders is not one).
_VERSIONED = re.compile(r"^[^/]+/\d+$")


def model_uri(target: str) -> str:
    """The MLflow URI a target stands for (``name@alias`` -> ``models:/name@alias``)."""
    text = target.strip()
    if not text:
        raise ServingError("Empty deployment target: give name@alias, name/version or a URI.")
    if _SCHEME.match(text):
        return text
    path = Path(text).expanduser()
    if (path / "MLmodel").is_file():
        return str(path.resolve())
    if "@" in text or _VERSIONED.match(text):
        return ModelRef.parse(text).uri
    return text  # a bare registered-model name: resolve_target explains what to add


def _local_dir(location: str | None) -> str | None:
    """``location`` as a local folder path when it is one (plain path or file:// URI)."""
    if not location:
        return None
    if location.startswith("file:"):
        location = unquote(urlparse(location).path)
    elif _SCHEME.match(location):
        return None
    path = Path(location)
    return str(path) if (path / "MLmodel").is_file() else None


def _example_record(source: str | None) -> dict[str, Any] | None:
    """One input row for the curl example: the saved input example, else from the signature."""
    if source is None:
        return None
    try:
        from mlflow.models import Model

        model = Model.load(source)
        try:
            example = model.load_input_example(source)
        except Exception:
            example = None
        if example is not None and hasattr(example, "iloc") and len(example):
            return {str(k): _plain(v) for k, v in example.iloc[0].to_dict().items()}
        if isinstance(example, dict) and example:
            return {str(k): _plain(v) for k, v in example.items()}
        schema = model.get_input_schema()  # type: ignore[no-untyped-call]  # MLflow
        if schema is None or not schema.has_input_names():
            return None
        defaults = {"double": 1.0, "float": 1.0, "long": 1, "integer": 1, "boolean": True}
        return {
            str(spec.name): defaults.get(str(getattr(spec.type, "name", spec.type)), "text")
            for spec in schema.inputs
        }
    except Exception:  # the example is a convenience: never fail a deploy over it
        return None


def _has_signature(source: str | None) -> bool | None:
    """Whether the model in ``source`` has a signature (None when it cannot be read)."""
    if source is None:
        return None
    try:
        from mlflow.models import Model

        return Model.load(source).signature is not None
    except Exception:
        return None


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def _registry_not_found(client: Any, name: str, what: str) -> NotFoundError:
    try:
        model = client.get_registered_model(name)
    except Exception:
        return NotFoundError(f"No registered model named {name!r} in this project's registry.")
    aliases = ", ".join(f"{a} (v{v})" for a, v in sorted(model.aliases.items())) or "none"
    versions = [int(mv.version) for mv in client.search_model_versions(f"name='{name}'")]
    latest = max(versions) if versions else "none"
    return NotFoundError(
        f"Registered model {name!r} has no {what}. Aliases: {aliases}; latest version: {latest}."
    )


def resolve_target(target: str, config: Config | None = None) -> ModelRef:
    """Pin ``target`` to a model: registry name, version, run id and local source folder."""
    from mlflow.exceptions import MlflowException

    from jupyter_mlops.client import client
    from jupyter_mlops.tracking.store import call

    uri = model_uri(target)
    if not uri.startswith(("models:/", "runs:/")) and not _SCHEME.match(uri):
        local = _local_dir(uri)
        if local is not None:
            return ModelRef(
                uri=local,
                target=target,
                name=Path(local).name,
                source=local,
                example=_example_record(local),
                signature=_has_signature(local),
            )
    mlflow_client = client(config)
    try:
        if uri.startswith("models:/"):
            return _resolve_models_uri(mlflow_client, target, uri)
        if uri.startswith("runs:/"):
            run_id = uri.removeprefix("runs:/").split("/", 1)[0]
            call(mlflow_client.get_run, run_id)
            artifact = uri.removeprefix(f"runs:/{run_id}").strip("/") or "model"
            return ModelRef(uri=uri, target=target, name=artifact, run_id=run_id)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", "")):
            raise NotFoundError(f"Cannot resolve {target!r}: {exc.message}") from exc
        raise ServingError(f"Cannot resolve {target!r}: {exc.message}") from exc
    if _SCHEME.match(uri):
        return ModelRef(uri=uri, target=target, name=uri.rstrip("/").rsplit("/", 1)[-1])
    # A bare name: say which aliases and versions exist instead of guessing one.
    hint = _registry_not_found(mlflow_client, uri, "version in the target")
    if str(hint).startswith("No registered model"):
        raise NotFoundError(f"{target!r} is neither a registered model nor a model folder.")
    raise ServingError(
        f"{target!r} names a registered model, not a version: deploy {target}@<alias> or "
        f"{target}/<version>. {str(hint).split('. ', 1)[1]}"
    )


def _resolve_models_uri(mlflow_client: Any, target: str, uri: str) -> ModelRef:
    from mlflow.exceptions import MlflowException

    from jupyter_mlops.tracking.store import call

    rest = uri.removeprefix("models:/").strip("/")
    alias = None
    if "@" in rest:
        ref = ModelRef.parse(rest)
        name, alias = ref.name, ref.alias
        try:
            mv = call(mlflow_client.get_model_version_by_alias, name, alias)
        except MlflowException as exc:
            raise _registry_not_found(mlflow_client, name, f"alias {alias!r}") from exc
    elif "/" in rest:
        name, version = rest.rsplit("/", 1)
        if version == "latest":  # MLflow's own spelling of "the newest version"
            versions = call(mlflow_client.search_model_versions, f"name='{name}'")
            if not versions:
                raise _registry_not_found(mlflow_client, name, "versions")
            version = str(max(int(v.version) for v in versions))
        else:
            ref = ModelRef.parse(rest)
            name, version = ref.name, str(ref.version)
        try:
            mv = call(mlflow_client.get_model_version, name, version)
        except MlflowException as exc:
            raise _registry_not_found(mlflow_client, name, f"version {version}") from exc
    else:  # models:/m-<id>: a logged model outside the registry
        logged = call(mlflow_client.get_logged_model, rest)
        source = _local_dir(logged.artifact_location)
        return ModelRef(
            uri=uri,
            target=target,
            name=logged.name,
            run_id=logged.source_run_id,
            source=source,
            example=_example_record(source),
            signature=_has_signature(source),
        )
    name, version = mv.name, str(mv.version)
    try:
        source = _local_dir(call(mlflow_client.get_model_version_download_uri, name, version))
    except MlflowException:
        source = None
    return ModelRef(
        uri=f"models:/{name}/{version}",
        target=target,
        name=name,
        version=version,
        run_id=mv.run_id or None,
        alias=alias,
        source=source,
        example=_example_record(source),
        signature=_has_signature(source),
    )


def load_pyfunc(ref: ModelRef) -> Any:
    """``mlflow.pyfunc.load_model`` of ``ref`` (from its local folder when it has one).

    MLflow's own requirement check scans every installed distribution's file list (about
    0.5 s, a fifth of a server's start); :func:`requirement_mismatches` checks the model's
    few pinned requirements directly and the caller logs what it finds.
    """
    import mlflow.pyfunc

    return mlflow.pyfunc.load_model(ref.source or ref.uri, suppress_warnings=True)


# Distributions that provide another's modules: mlflow-skinny is MLflow without its tracking
# server, UI and SQL stores, all a model server needs (packaged contexts install it).
_PROVIDED_BY = {"mlflow": ("mlflow", "mlflow-skinny")}


def _installed_version(name: str) -> str | None:
    """The installed version of ``name`` or of a distribution standing in for it."""
    from importlib import metadata

    for dist in _PROVIDED_BY.get(name.lower(), (name,)):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def requirement_mismatches(model_dir: str | None) -> list[str]:
    """How this environment differs from the model's ``requirements.txt`` (and Python)."""
    if model_dir is None:
        return []
    import platform

    from packaging.requirements import InvalidRequirement, Requirement

    problems = []
    folder = Path(model_dir)
    try:
        lines = (folder / "requirements.txt").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith(("-", "git+", "http")):
            continue
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        installed = _installed_version(requirement.name)
        if installed is None:
            problems.append(f"{requirement} is required but not installed")
            continue
        if requirement.specifier and not requirement.specifier.contains(installed, True):
            problems.append(f"{requirement} is required but {installed} is installed")
    try:
        import yaml

        flavors = yaml.safe_load((folder / "MLmodel").read_text()).get("flavors", {})
        wanted = str(flavors.get("python_function", {}).get("python_version", ""))
    except Exception:
        wanted = ""
    running = platform.python_version()
    if wanted and wanted.split(".")[:2] != running.split(".")[:2]:
        problems.append(f"the model was saved with Python {wanted}, this is Python {running}")
    return problems
