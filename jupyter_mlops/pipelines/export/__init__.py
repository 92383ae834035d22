"""The same ``pipeline.yaml`` for existing engines: a registry of exporters by name.

An exporter takes a pipeline (a path or a loaded :class:`~.spec.Pipeline`) and keyword
options, writes the engine's own files, and returns the path of the main one. ``dvc``
writes ``dvc.yaml`` + ``params.yaml`` (:mod:`.dvc`); each further engine is one module
here registered with :func:`register_exporter`, importing its engine only when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import PipelineError
from jupyter_mlops.pipelines.export.dvc import export_dvc, params_from_file
from jupyter_mlops.pipelines.spec import Pipeline

Exporter = Callable[..., Path]
_EXPORTERS: dict[str, Exporter] = {}


def register_exporter(name: str, exporter: Exporter) -> None:
    """Make ``export_pipeline(pipeline, name)`` call ``exporter(pipeline, **options)``."""
    _EXPORTERS[name] = exporter


def known_exporters() -> list[str]:
    """Engines a pipeline can be exported to."""
    return sorted(_EXPORTERS)


def export_pipeline(
    pipeline: str | os.PathLike[str] | Pipeline, engine: str, **options: Any
) -> Path:
    """Export ``pipeline`` for ``engine``; returns the path of the main file written."""
    if engine not in _EXPORTERS:
        raise PipelineError(f"Unknown exporter {engine!r} (known: {', '.join(known_exporters())})")
    return _EXPORTERS[engine](pipeline, **options)


register_exporter("dvc", export_dvc)

__all__ = [
    "Exporter",
    "export_dvc",
    "export_pipeline",
    "known_exporters",
    "params_from_file",
    "register_exporter",
]
