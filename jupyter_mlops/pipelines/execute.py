"""Execute a notebook with papermill so that its ``%%track`` cells know where they ran.

The kernel gets its working directory and extra environment through its own launch (a
kernel manager that passes ``cwd`` and ``env`` to the kernel process), not by changing this
process's ``os.environ`` or working directory, so several notebooks can execute at once
from threads of one process (a Dask worker, the ``threads`` executor).
"""

from __future__ import annotations

import ast
import functools
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops import values
from jupyter_mlops.errors import MlopsError
from jupyter_mlops.tracking.environment import NOTEBOOK_ENV

# Run at kernel start (before any cell): re-arms MLFLOW_RUN_ID before every cell, so that
# each %%track cell of a pipeline step logs into the step's run (see pipelines/context.py).
_ATTACH_LINE = "__import__('jupyter_mlops.pipelines.context', fromlist=['attach']).attach()"

# Settings of this interpreter a kernel of another one must not inherit: its packages
# would shadow the other environment's (a reproduction's fresh environment).
_INTERPRETER_VARS = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "CONDA_PREFIX")


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
        name = key.strip()
        if not sep or not all(part.isidentifier() for part in name.split(".")):
            raise MlopsError(f"Parameter must look like name=value, got {item!r}")
        try:
            params[name] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[name] = raw
    return params


@functools.cache
def _kernel_manager_class() -> type[Any]:
    from jupyter_client.manager import AsyncKernelManager

    class StepKernelManager(AsyncKernelManager):
        """Starts the kernel with the step's own working directory and environment."""

        launch_env: Mapping[str, str] = {}
        launch_cwd: str | None = None
        isolated: bool = False  # another interpreter: this one's import paths stay out

        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            inherited = dict(os.environ)
            if self.isolated:
                for key in _INTERPRETER_VARS:
                    inherited.pop(key, None)
            kw["env"] = {**inherited, **self.launch_env}
            if self.isolated:
                # Another interpreter's kernel (a reproduction's cached environment) writes
                # its bytecode: without it, every kernel there imports mlflow and friends
                # from source again (2-3x slower) where this variable is set.
                kw["env"].pop("PYTHONDONTWRITEBYTECODE", None)
            if self.launch_cwd:
                kw["cwd"] = self.launch_cwd
            await super().start_kernel(**kw)

    return StepKernelManager


@functools.cache
def _is_ipykernel(kernel_name: str) -> bool:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except NoSuchKernel:
        return False
    return any("ipykernel" in part for part in argv)


def _kernel_name(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    import nbformat

    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return str(nb.metadata.get("kernelspec", {}).get("name") or "python3")


def execute_notebook(
    notebook: str | os.PathLike[str],
    output: str | os.PathLike[str] | None = None,
    *,
    parameters: Mapping[str, Any] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    kernel_name: str | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
    python: str | None = None,
) -> Path:
    """Run ``notebook`` top to bottom with papermill and return the executed copy's path.

    Runs tracked inside record ``notebook`` as their source. ``env`` is added to the
    kernel's environment; ``cwd`` is its working directory (default: the notebook's
    folder). ``python``: run an ipykernel of that interpreter instead of the notebook's
    kernel (a reproduction's environment; it must have ipykernel). Raises
    ``NotebookExecutionError`` naming the failing cell when a cell raises,
    or saying the kernel died; the executed copy is kept either way.
    """
    import papermill  # ~0.6 s to import: only when a notebook is executed

    src = Path(values.notebook_file(notebook)).resolve()  # an existing .ipynb, not a CSV
    out = Path(output).resolve() if output else src.with_name(f"{src.stem}.out.ipynb")
    out.parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(cwd).resolve() if cwd else src.parent
    specs = _interpreter_kernel(python) if python else None
    if specs is not None:
        name, ipykernel = _PYTHON_KERNEL, True
        km = _kernel_manager_class()(kernel_name=name, kernel_spec_manager=specs)
        km.isolated = True
    else:
        name = _kernel_name(src, kernel_name)
        ipykernel = _is_ipykernel(name)
        km = _kernel_manager_class()(kernel_name=name)
    km.launch_env = {**(env or {}), NOTEBOOK_ENV: str(src)}
    km.launch_cwd = str(workdir)
    extra = [f"--IPKernelApp.exec_lines={_ATTACH_LINE}"] if ipykernel else []
    sockets = _use_ipc(km) if ipykernel else None
    try:
        papermill.execute_notebook(
            str(src),
            str(out),
            parameters=dict(parameters or {}),
            kernel_name=name,
            progress_bar=False,
            execution_timeout=timeout,
            km=km,
            extra_arguments=extra,
            # the spec above is not among the installed kernels papermill would ask
            language="python" if specs is not None else None,
        )
    except papermill.PapermillExecutionError as exc:
        raise NotebookExecutionError(
            f"{src.name}: cell {exc.exec_count} raised {exc.ename}: {exc.evalue} "
            f"(executed copy: {out})",
            out,
        ) from None
    except Exception as exc:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        if isinstance(exc, DeadKernelError):
            what = "the kernel died"
        elif isinstance(exc, CellTimeoutError):
            what = f"a cell ran longer than the timeout of {timeout} s"
        elif isinstance(exc, RuntimeError) and "kernel" in str(exc).lower():
            what = f"the kernel failed: {exc}"
        else:
            raise
        raise NotebookExecutionError(f"{src.name}: {what} (executed copy: {out})", out) from None
    finally:
        _shutdown_kernel(km)
        import shutil

        for folder in (sockets, specs.kernel_dirs[0] if specs is not None else None):
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
    return out


_PYTHON_KERNEL = "mlops-python"


def _interpreter_kernel(python: str) -> Any:
    """A kernel spec manager that knows one kernel: an ipykernel of ``python`` (made on
    the fly in a temporary folder, removed after the execution)."""
    import json
    import tempfile

    from jupyter_client.kernelspec import KernelSpecManager

    if not Path(python).exists():
        raise MlopsError(f"No Python interpreter at {python}")
    folder = Path(tempfile.mkdtemp(prefix="mlops-spec-"))
    spec = {
        "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": f"Python ({python})",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (folder / _PYTHON_KERNEL).mkdir()
    (folder / _PYTHON_KERNEL / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    return KernelSpecManager(kernel_dirs=[str(folder)], ensure_native_kernel=False)


def _use_ipc(km: Any) -> str | None:
    """Talk to an ipykernel over Unix sockets in a private folder instead of TCP ports.

    TCP ports are picked free and only bound later by the kernel, so two kernels started
    at once (a sweep, parallel tests) can race for one port and a kernel dies with
    "Address already in use"; IPC files cannot collide, and the kernel no longer prints
    its "running over TCP without encryption" warning into every step's output.
    """
    if os.name != "posix":
        return None
    import tempfile

    folder = tempfile.mkdtemp(prefix="mlops-k")  # short: a socket path has ~100 bytes
    km.transport = "ipc"
    km.ip = str(Path(folder) / "k")
    return folder


def _shutdown_kernel(km: Any) -> None:
    """Stop the kernel ``km`` started: nbclient only shuts down kernels of managers it
    created itself, so without this every execution leaves its kernel running until this
    process exits (a sweep in a notebook left a dozen behind)."""
    import contextlib

    from jupyter_core.utils import run_sync

    async def stop() -> None:
        if await km.is_alive():
            await km.shutdown_kernel(now=False)

    with contextlib.suppress(Exception):
        run_sync(stop)()


@dataclass(frozen=True)
class StepTask:
    """One notebook execution, as sent to an executor (plain data: picklable)."""

    key: str  # "<pipeline run id>/<step>"
    notebook: str
    output: str
    parameters: dict[str, Any] = field(default_factory=dict)
    cwd: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    kernel_name: str | None = None
    timeout: float | None = None
    python: str | None = None  # another interpreter's ipykernel (a reproduction's env)


@dataclass(frozen=True)
class StepOutcome:
    """How a :class:`StepTask` went: never raises across the executor boundary."""

    key: str
    ok: bool
    output: str
    seconds: float
    error: str | None = None


def run_step_task(task: StepTask) -> StepOutcome:
    """Execute one step's notebook; errors become the outcome's message."""
    started = time.perf_counter()
    error = None
    try:
        execute_notebook(
            task.notebook,
            task.output,
            parameters=task.parameters,
            cwd=task.cwd,
            kernel_name=task.kernel_name,
            timeout=task.timeout,
            env=task.env,
            python=task.python,
        )
    except MlopsError as exc:
        error = str(exc)
    except Exception as exc:  # whatever papermill or the kernel raised: the step failed
        error = f"{Path(task.notebook).name}: {type(exc).__name__}: {exc}"
    return StepOutcome(
        key=task.key,
        ok=error is None,
        output=task.output,
        seconds=time.perf_counter() - started,
        error=error,
    )
