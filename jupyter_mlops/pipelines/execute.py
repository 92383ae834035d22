"""Execute a notebook with papermill so that its ``%%track`` cells know where they ran."""

from __future__ import annotations

import ast
import contextlib
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import MlopsError
from jupyter_mlops.tracking.environment import NOTEBOOK_ENV


class NotebookExecutionError(MlopsError):
    """A cell of an executed notebook raised; the executed copy is kept for inspection."""

    def __init__(self, message: str, output: Path) -> None:
        super().__init__(message)
        self.output = output


def parse_parameters(items: Iterable[str]) -> dict[str, Any]:
    """``["n=100", "name=iris"]`` -> ``{"n": 100, "name": "iris"}`` (Python literals or text)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise MlopsError(f"Parameter must look like name=value, got {item!r}")
        try:
            params[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key.strip()] = raw
    return params


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value  # kernels started by papermill inherit the environment
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def execute_notebook(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
) -> Path:
    """Run ``notebook`` top to bottom with papermill and return the executed copy's path.

    Runs tracked inside record ``notebook`` as their source. Raises
    ``NotebookExecutionError`` naming the failing cell when a cell raises.
    """
    import papermill  # ~0.6 s to import: only when a notebook is executed

    src = Path(notebook).resolve()
    if not src.is_file():
        raise MlopsError(f"Notebook {notebook} does not exist")
    out = Path(output) if output else src.with_name(f"{src.stem}.out.ipynb")
    workdir = Path(cwd) if cwd else src.parent
    with _env(NOTEBOOK_ENV, str(src)):
        try:
            papermill.execute_notebook(
                str(src),
                str(out),
                parameters=dict(parameters or {}),
                cwd=str(workdir),
                kernel_name=kernel_name,
                progress_bar=False,
                execution_timeout=timeout,
            )
        except papermill.PapermillExecutionError as exc:
            raise NotebookExecutionError(
                f"{src.name}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue} "
                f"(executed copy: {out})",
                out,
            ) from None
    return out
