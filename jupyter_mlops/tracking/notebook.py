"""Which notebook a kernel runs, however it was started, and what a run records about it.

A kernel is not told which notebook it serves (MLflow then records ``ipykernel_launcher.py``,
mlflow/mlflow#3695). ``find_notebook`` asks, in this order, and the first answer wins:

1. ``JUPYTER_MLOPS_NOTEBOOK`` in the environment (set by ``jupyter-mlops execute`` and
   pipelines; set it yourself for any other launcher);
2. papermill's ``PAPERMILL_INPUT_PATH``/``PAPERMILL_OUTPUT_PATH``: papermill passes them
   (with ``--inject-paths``) as variables of its ``injected-parameters`` cell, read from the
   kernel's namespace (or the environment, if a launcher exports them);
3. the command line of the process that started the kernel (or of one of its next two
   ancestors, for a kernel started through a wrapper): ``papermill IN OUT``,
   ``jupyter nbconvert --execute X.ipynb``, ``jupyter execute X.ipynb``; relative paths are
   resolved against that process's launch folder (its working folder, less papermill's
   ``--cwd``; its ``PWD`` last);
4. VS Code's ``__vsc_ipynb_file__``;
5. ``JPY_SESSION_NAME`` (JupyterLab / Jupyter Server; ipykernel's ``__session__``).

A run then records the notebook as ``mlflow.source.name`` (type NOTEBOOK), a copy of it
under ``mlops/notebook/``, and the tags ``mlops.notebook.input``, ``mlops.notebook.output``
(when the launcher writes one), ``mlops.notebook.via`` (papermill, nbconvert,
jupyter-execute, vscode, lab, env), and for papermill the parameters it injected as params,
named in ``mlops.papermill.parameters``. See docs/papermill.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NOTEBOOK_ENV = "JUPYTER_MLOPS_NOTEBOOK"
PAPERMILL_INPUT = "PAPERMILL_INPUT_PATH"
PAPERMILL_OUTPUT = "PAPERMILL_OUTPUT_PATH"
TAG_INPUT = "mlops.notebook.input"
TAG_OUTPUT = "mlops.notebook.output"
TAG_VIA = "mlops.notebook.via"
TAG_PAPERMILL_PARAMETERS = "mlops.papermill.parameters"
ANCESTORS = 3  # the launcher, and two wrappers above the kernel at most


@dataclass(frozen=True)
class NotebookSource:
    """The notebook a kernel runs: its path (absolute when local, or the URL papermill
    read), how it was started, where the executed copy goes, and papermill's parameters
    (names in injection order, values as the command line gave them)."""

    path: str
    via: str
    output: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)

    @property
    def local(self) -> Path | None:
        """The notebook file, if it is one on this machine."""
        return None if "://" in self.path else Path(self.path)

    def relative(self, root: Path) -> str:
        """The notebook's path relative to ``root`` when inside it (as runs record it)."""
        return _relative(self.path, root)

    def parameter_values(self) -> dict[str, Any]:
        """papermill's parameters as its injected cell set them (papermill's own parsing of
        its command line): the notebook's later cells may rebind those names to anything."""
        return dict(self.parameters)

    def tags(self, root: Path) -> dict[str, str]:
        """The tags a run of this notebook starts with (besides ``mlflow.source.*``)."""
        tags = {TAG_INPUT: self.relative(root), TAG_VIA: self.via}
        if self.output:
            tags[TAG_OUTPUT] = _relative(self.output, root)
        if self.parameters:
            tags[TAG_PAPERMILL_PARAMETERS] = json.dumps(list(self.parameters))
        return tags


def _relative(path: str, root: Path) -> str:
    if "://" in path:
        return path
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def find_notebook(namespace: Mapping[str, Any] | None = None) -> NotebookSource | None:
    """The notebook this kernel runs, by the fallback order of the module docstring."""
    namespace = namespace or {}
    explicit = os.environ.get(NOTEBOOK_ENV)
    if explicit:
        return NotebookSource(str(Path(explicit).resolve()), "env")
    launcher = _launcher()
    papermill_in = _named(PAPERMILL_INPUT, namespace)
    if papermill_in and papermill_in != "-":  # "-": papermill read the notebook from stdin
        if launcher is not None and launcher.via == "papermill":
            return launcher  # the same paths, resolved from papermill's own launch folder
        out = _named(PAPERMILL_OUTPUT, namespace)
        bases = [Path(p) for p in (str(Path.cwd()), os.environ.get("PWD")) if p]
        params: Mapping[str, Any] = {}
        return NotebookSource(
            _resolve(papermill_in, bases),
            "papermill",
            output=_resolve(out, bases) if out and out != "-" else None,
            parameters=params,
        )
    if launcher is not None:
        return launcher
    vscode = namespace.get("__vsc_ipynb_file__")
    if isinstance(vscode, str) and vscode.endswith(".ipynb"):
        return NotebookSource(str(Path(vscode).resolve()), "vscode")
    for session in (namespace.get("__session__"), os.environ.get("JPY_SESSION_NAME")):
        if isinstance(session, str) and session.endswith(".ipynb"):
            return NotebookSource(str(Path(session).resolve()), "lab")
    return None


def _named(name: str, namespace: Mapping[str, Any]) -> str | None:
    value = namespace.get(name, os.environ.get(name))
    return value if isinstance(value, str) and value else None


def _resolve(path: str, bases: Sequence[Path]) -> str:
    """``path`` made absolute against the first base folder where it exists."""
    if "://" in path or Path(path).is_absolute():
        return path
    for base in bases:
        if (base / path).exists():
            return str((base / path).resolve())
    return str((bases[0] / path).resolve()) if bases else path


@functools.cache
def _launcher() -> NotebookSource | None:
    """The notebook named on the command line of the process that started this kernel
    (the parent never changes, so once per process)."""
    try:
        import psutil  # ipykernel's own dependency
    except ImportError:  # pragma: no cover - ipykernel requires it
        return None
    try:
        proc = psutil.Process(os.getpid()).parent()
        for _ in range(ANCESTORS):
            if proc is None:
                return None
            found = from_command_line(proc.cmdline(), _launch_folders(proc))
            if found is not None:
                return found
            proc = proc.parent()
    except (psutil.Error, OSError):
        return None
    return None


def _launch_folders(proc: Any) -> list[Path]:
    """Where a relative path on ``proc``'s command line may start, surest first.

    papermill ``--cwd X`` moves the process into ``X`` while it runs: for a relative ``X``
    the launch folder is its working folder with ``X`` taken off. ``PWD`` comes last: a
    shell sets it, but a process started with another working folder (``subprocess`` with
    ``cwd=``) inherits its parent's, which may hold a notebook of the same name."""
    folders: list[Path] = []
    with contextlib.suppress(Exception):  # another user's process, or no /proc/<pid>/cwd
        cwd = Path(proc.cwd())
        moved = _option(proc.cmdline(), "--cwd")
        if moved is None:
            folders.append(cwd)
        elif not Path(moved).is_absolute():
            depth = len(Path(os.path.normpath(moved)).parts)
            if ".." not in Path(moved).parts and 0 < depth <= len(cwd.parents):
                start = cwd.parents[depth - 1] if moved != "." else cwd
                if (start / moved).resolve() == cwd.resolve():
                    folders.append(start)
    with contextlib.suppress(Exception):
        pwd = proc.environ().get("PWD")
        if pwd:
            folders.append(Path(pwd))
    return folders


def from_command_line(argv: Sequence[str], bases: Sequence[Path]) -> NotebookSource | None:
    """The notebook a papermill, nbconvert or ``jupyter execute`` command line executes."""
    for i, token in enumerate(argv):
        name = Path(token).name
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if name == "papermill" or (token == "-m" and nxt == "papermill"):
            return _papermill(argv[i + 1 + (token == "-m") :], bases)
        if name == "jupyter-nbconvert" or (name in ("jupyter", "-m") and nxt == "nbconvert"):
            return _nbconvert(argv[i + 1 + (name != "jupyter-nbconvert") :], bases)
        if name == "jupyter-execute" or (name == "jupyter" and nxt == "execute"):
            return _execute(argv[i + 1 + (name == "jupyter") :], bases)
    return None


# papermill's command-line options (papermill 2.x ``cli.py``) by how many values they take;
# the others are flags. Read here rather than with papermill's own click parser: importing
# ``papermill.cli`` imports nbformat and jsonschema's format checkers, seconds in a kernel.
_PAPERMILL_PAIRS = {"-p": "p", "--parameters": "p", "-r": "r", "--parameters_raw": "r"}
_PAPERMILL_VALUED = {
    **{flag: "f" for flag in ("-f", "--parameters_file")},
    **{flag: "y" for flag in ("-y", "--parameters_yaml")},
    **{flag: "b" for flag in ("-b", "--parameters_base64")},
    **{
        flag: ""
        for flag in (
            "--engine",
            "--autosave-cell-every",
            "-k",
            "--kernel",
            "-l",
            "--language",
            "--cwd",
            "--stdout-file",
            "--stderr-file",
            "--log-level",
            "--start-timeout",
            "--start_timeout",
            "--execution-timeout",
        )
    },
}


def _papermill(args: Sequence[str], bases: Sequence[Path]) -> NotebookSource | None:
    positional: list[str] = []
    given: list[tuple[str, Any]] = []  # (kind, value) in command-line order
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            positional.extend(rest)
            break
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        if flag in _PAPERMILL_PAIRS and len(rest) >= 2:
            given.append((_PAPERMILL_PAIRS[flag], (rest.pop(0), rest.pop(0))))
        elif flag in _PAPERMILL_VALUED and (eq or rest):
            given.append((_PAPERMILL_VALUED[flag], inline if eq else rest.pop(0)))
        elif not arg.startswith("-") or arg == "-":
            positional.append(arg)
    if not positional or positional[0] == "-":
        return None
    output = positional[1] if len(positional) > 1 else None
    return NotebookSource(
        _resolve(positional[0], bases),
        "papermill",
        output=_resolve(output, bases) if output and output != "-" else None,
        parameters=_papermill_parameters(given, bases),
    )


def _papermill_parameters(
    given: Sequence[tuple[str, Any]], bases: Sequence[Path]
) -> dict[str, Any]:
    """The parameters papermill injects, merged in its own order (``-b``, ``-f``, ``-y``,
    ``-p``, ``-r``) and converted as it does; its path variables are not the run's params."""
    params: dict[str, Any] = {}
    for kind in "bfypr":
        for _, value in (g for g in given if g[0] == kind):
            if kind == "p":
                params[value[0]] = _papermill_value(value[1])
            elif kind == "r":
                params[value[0]] = value[1]
            else:
                with contextlib.suppress(Exception):  # unreadable: papermill refused it too
                    params.update(_yaml_load(_yaml_text(kind, value, bases)) or {})
    return {str(k): v for k, v in params.items() if k not in (PAPERMILL_INPUT, PAPERMILL_OUTPUT)}


def _yaml_text(kind: str, value: str, bases: Sequence[Path]) -> str | bytes:
    """The YAML of a ``-b`` (base64), ``-f`` (a file) or ``-y`` option."""
    import base64

    if kind == "b":
        return base64.b64decode(value)
    if kind == "f":
        return Path(_resolve(value, bases)).read_text()
    return value


def _papermill_value(value: str) -> Any:
    """papermill's ``-p`` conversion: True/False/None, int, float, else the string."""
    if value in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[value]
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            return kind(value)
    return value


def _yaml_load(text: str | bytes) -> Any:
    """YAML as papermill reads parameters: safe, and dates left as strings."""
    import yaml

    class NoDates(yaml.SafeLoader):
        pass

    NoDates.yaml_implicit_resolvers = {
        key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }
    return yaml.load(text, Loader=NoDates)  # a SafeLoader: no objects built


def _notebooks(args: Sequence[str], bases: Sequence[Path]) -> str | None:
    """The one notebook among ``args`` this kernel runs: the only one, or the only one in
    the kernel's working folder (nbconvert and nbclient start a kernel in its folder)."""
    valued = ("--output", "--output-dir", "--to", "--template")
    found = [
        _resolve(a, bases)
        for i, a in enumerate(args)
        if a.endswith(".ipynb") and not a.startswith("-") and not (i and args[i - 1] in valued)
    ]
    if len(found) > 1:
        here = Path.cwd().resolve()
        found = [f for f in found if Path(f).parent == here]
    return found[0] if len(found) == 1 else None


def _option(args: Sequence[str], name: str) -> str | None:
    """The value of ``--name X`` or ``--name=X`` on a traitlets command line."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _nbconvert(args: Sequence[str], bases: Sequence[Path]) -> NotebookSource | None:
    source = _notebooks(args, bases)
    if source is None:
        return None
    return NotebookSource(source, "nbconvert", output=_nbconvert_output(args, source))


def _nbconvert_output(args: Sequence[str], source: str) -> str | None:
    if "--inplace" in args:
        return source
    if "--stdout" in args:
        return None
    folder = Path(_option(args, "--output-dir") or Path(source).parent)
    name = _option(args, "--output")
    if name:
        return str((folder / (name if name.endswith(".ipynb") else name + ".ipynb")).resolve())
    if (_option(args, "--to") or "") == "notebook":
        return str((folder / (Path(source).stem + ".nbconvert.ipynb")).resolve())
    return None


def _execute(args: Sequence[str], bases: Sequence[Path]) -> NotebookSource | None:
    source = _notebooks(args, bases)
    if source is None:
        return None
    output = None
    if "--inplace" in args:
        output = source
    elif name := _option(args, "--output"):
        output = str(Path(source).parent / (name if name.endswith(".ipynb") else f"{name}.ipynb"))
    return NotebookSource(source, "jupyter-execute", output=output)


SOURCE_TAG_PREFIXES = ("mlflow.source.", "mlops.notebook", TAG_PAPERMILL_PARAMETERS)


def tag_logged_models(
    run_id: str, experiment_id: str, run_tags: Mapping[str, str], mlflow_client: Any
) -> None:
    """Give the models a run logged its source tags (MLflow gave them the kernel's
    ``ipykernel_launcher.py``), so the UI's model page names the notebook. Never fails
    the run: the tags are a convenience, the run's own tags stay the record."""
    tags = {k: v for k, v in run_tags.items() if k.startswith(SOURCE_TAG_PREFIXES)}
    if not tags or not experiment_id:
        return
    from jupyter_mlops.client import retry_busy

    try:
        models = retry_busy(
            lambda: mlflow_client.search_logged_models(
                experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run_id}'"
            ),
            what="search logged models",
        )
        for model in models:
            model_id = str(model.model_id)
            retry_busy(
                functools.partial(mlflow_client.set_logged_model_tags, model_id, tags),
                what="tag logged model",
            )
    except Exception:  # an older server without logged models, or a transient error
        return
