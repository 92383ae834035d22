"""The notebook a run is re-executed as: ``%load_ext``, the cells the run depended on, the
``%%track`` cell as recorded, and a last cell that compares the two runs' models.

The earlier cells are the run's recorded context (``mlops/context.py``); a run recorded
before contexts existed falls back to its notebook copy: the code cells above the one
holding the recorded cell body (best effort, named as a cause when the results differ).
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops.reproduction.result import Cause
from jupyter_mlops.reproduction.source import Recorded

_TRACK_LINE = re.compile(r"^\s*%%track\b[^\n]*\n?")
_LOAD_EXT = re.compile(r"^\s*%load_ext\s+jupyter_mlops\s*$", re.MULTILINE)
_PLAIN_ARG = re.compile(r"[A-Za-z0-9_./:@+=,-]+")
_INKERNEL = "jupyter_mlops.reproduction.inkernel"
CHECK_LINE = f"__import__({_INKERNEL!r}, fromlist=['check']).check(globals(), {{spec!r}})"


@dataclass
class Cellbook:
    """The built notebook and what is known about how faithful its code is."""

    path: Path
    track_line: str
    if_different: list[Cause] = field(default_factory=list)
    causes: list[Cause] = field(default_factory=list)


def track_line(recorded: Recorded, cwd: Path, project: Path) -> str:
    """The ``%%track`` line: as recorded (``mlops.track.args``), or rebuilt from the run's
    experiment and data; always in the original's experiment, under a name of its own."""
    args = recorded.track_args
    if args is None:  # recorded before the line was: rebuild it
        parts = [f"--data {_quote(os.path.relpath(project / s.path, cwd))}" for s in recorded.data]
        args = " ".join(parts)
    args = args.strip()
    # Later options win: the run goes to the original's experiment (not the notebook's
    # default), named after it, so that the original's name stays unambiguous.
    extra = f"-e {_quote(recorded.experiment)}"
    if recorded.run_name:
        extra += f" -n {_quote(recorded.run_name + '-repro')}"
    return f"%%track {args} {extra}".replace("  ", " ").rstrip()


def _quote(text: str) -> str:
    if _PLAIN_ARG.fullmatch(text):
        return text
    return '"' + text.replace('"', '\\"') + '"' if "'" in text else shlex.quote(text)


def context_cells(recorded: Recorded) -> tuple[list[str], list[Cause]]:
    """The code run before the ``%%track`` cell, and a cause to name if results differ."""
    if recorded.context is not None:
        text = recorded.context.strip()
        return ([text] if text else []), []
    if recorded.notebook_copy is None:
        if recorded.track_args is None:  # an old run: nothing says what ran before it
            return [], [
                Cause(
                    "code",
                    "context",
                    "The run recorded neither its earlier cells nor a notebook copy: only the "
                    "tracked cell was re-executed. Track it again to record its context.",
                )
            ]
        return [], []
    return _from_notebook(recorded)


def _from_notebook(recorded: Recorded) -> tuple[list[str], list[Cause]]:
    import nbformat

    name = Path(recorded.notebook or "notebook.ipynb").name
    try:
        nb: Any = nbformat.reads(recorded.notebook_copy or "", as_version=4)  # type: ignore[no-untyped-call]
    except Exception:
        return [], [
            Cause("code", name, f"The run's notebook copy {name} cannot be read: no context.")
        ]
    code = [str(c.source) for c in nb.cells if c.cell_type == "code"]
    body = (recorded.cell or "").strip()
    at = next((i for i, src in enumerate(code) if body and body in src), None)
    if at is not None:
        how = f"the code cells above the tracked cell in the run's copy of {name}"
    else:
        at = next((i for i, src in enumerate(code) if _TRACK_LINE.match(src)), len(code))
        how = (
            f"the code cells above the first %%track cell of the run's copy of {name} (the "
            "tracked cell was not in the saved notebook)"
        )
    cells = [_plain(src) for src in code[:at]]
    cause = Cause(
        "code",
        name,
        f"The run predates recorded contexts: the cells before it were taken from {how}, a "
        "best effort. Track it again to record exactly the cells it depends on.",
    )
    return [c for c in cells if c.strip()], [cause]


def _plain(source: str) -> str:
    """A notebook cell as context: an earlier ``%%track`` cell's body without its magic
    (it must not record a run of its own), and no second ``%load_ext``."""
    return _LOAD_EXT.sub("", _TRACK_LINE.sub("", source, count=1))


def build(recorded: Recorded, *, cwd: Path, project: Path, spec: dict[str, Any]) -> Cellbook:
    """Write the reproduction notebook into ``cwd`` (the original notebook's folder in
    the copy) and the in-kernel check's ``spec`` beside it."""
    import nbformat

    line = track_line(recorded, cwd, project)
    context, fallback = context_cells(recorded)
    stem = f"reproduce-{recorded.run_id[:8]}"
    spec_path = cwd / f".{stem}.json"
    spec_path.write_text(json.dumps(spec))
    first = nbformat.v4.new_code_cell("%load_ext jupyter_mlops")  # type: ignore[no-untyped-call]
    first.metadata["tags"] = ["parameters"]
    cells = [first]
    cells += [nbformat.v4.new_code_cell(src) for src in context]  # type: ignore[no-untyped-call]
    cells.append(nbformat.v4.new_code_cell(f"{line}\n{recorded.cell or ''}"))  # type: ignore[no-untyped-call]
    cells.append(nbformat.v4.new_code_cell(CHECK_LINE.format(spec=os.fspath(spec_path))))  # type: ignore[no-untyped-call]
    nb = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    nb.cells = cells
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = cwd / f"{stem}.ipynb"
    nbformat.write(nb, os.fspath(path))  # type: ignore[no-untyped-call]
    book = Cellbook(path, line)
    if recorded.context is None and recorded.notebook_copy is not None:
        book.if_different += fallback
    else:
        book.causes += fallback
    return book
