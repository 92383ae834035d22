"""Make a notebook a papermill step: find its cell of parameters and tag it ``parameters``.

papermill injects the values it is given right after the cell tagged ``parameters``, so
the notebook's own defaults stay as documentation and are overridden at run time. The
cell is the one the user marked (a first line ``# parameters``, or ``cell=N``) or the
first code cell made only of literal assignments (``n_estimators = 100``).
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_mlops._util.reprs import shown_as_text
from jupyter_mlops.errors import MlopsError, NotFoundError
from jupyter_mlops.tracking.capture import analyse_cell

PARAMETERS_TAG = "parameters"
_MARKERS = ("# parameters", "#parameters", "# papermill: parameters")


class ParameterError(MlopsError):
    """A notebook has no usable parameters cell, or is asked for unknown parameters."""


@shown_as_text
@dataclass
class Parameterized:
    """What :func:`parameterize` found: the cell and the parameters it declares."""

    notebook: Path
    cell: int  # index among all cells
    parameters: dict[str, Any] = field(default_factory=dict)  # name -> default (literal)
    computed: list[str] = field(default_factory=list)  # assigned with a non-literal value
    changed: bool = False  # False when the cell was tagged already

    def __str__(self) -> str:
        verb = "Tagged" if self.changed else "Already tagged"
        lines = [f"{verb} cell {self.cell} of {self.notebook.name} as 'parameters':"]
        lines += [f"  {name} = {value!r}" for name, value in self.parameters.items()]
        lines += [f"  {name} = <computed>" for name in self.computed]
        return "\n".join(lines)


def _python(source: str) -> str | None:
    """The cell as plain Python, or None for cells that are magics, shell or invalid code."""
    lines = [ln for ln in source.splitlines() if ln.strip()]
    if any(ln.lstrip().startswith(("%", "!")) for ln in lines):
        return None
    try:
        ast.parse(source)
    except SyntaxError:
        return None
    return source


def _is_literal_cell(source: str) -> bool:
    """Every statement assigns a literal to plain names (and there is at least one)."""
    code = _python(source)
    if code is None:
        return False
    body = ast.parse(code).body
    if not body:
        return False
    for node in body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            return False
        if not all(isinstance(t, ast.Name) for t in targets):
            return False
        try:
            ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            return False
    return True


def _marked(source: str) -> bool:
    first = source.lstrip().splitlines()[0].strip().lower() if source.strip() else ""
    return first in _MARKERS


def _declared(source: str) -> tuple[dict[str, Any], list[str]]:
    code = _python(source)
    if code is None:
        return {}, []
    facts = analyse_cell(code)
    literals = {n: facts.literals[n] for n in facts.assigned if n in facts.literals}
    computed = [n for n in facts.assigned if n not in facts.literals]
    return literals, computed


def _read(notebook: str | os.PathLike[str]) -> tuple[Path, Any]:
    import nbformat

    path = Path(notebook)
    if not path.is_file():
        raise NotFoundError(f"Notebook {notebook} does not exist")
    try:
        return path, nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    except Exception as exc:  # nbformat raises several unrelated types for bad files
        raise ParameterError(f"Cannot read notebook {notebook}: {exc}") from exc


def _tagged(nb: Any) -> int | None:
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and PARAMETERS_TAG in cell.get("metadata", {}).get("tags", []):
            return index
    return None


def notebook_parameters(notebook: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Names and defaults of the parameters a notebook declares; None if no cell is tagged.

    Names assigned a computed value are included with the default ``None``.
    """
    _, nb = _read(notebook)
    index = _tagged(nb)
    if index is None:
        return None
    literals, computed = _declared(nb.cells[index].source)
    return {**literals, **dict.fromkeys(computed)}


def parameterize(
    notebook: str | os.PathLike[str], *, cell: int | None = None, write: bool = True
) -> Parameterized:
    """Tag the notebook's parameters cell ``parameters`` (idempotent) and say what it holds.

    Which cell: ``cell`` (an index among all cells) if given; else one already tagged; else
    a code cell whose first line is ``# parameters``; else the first code cell made only of
    literal assignments. Raises :class:`ParameterError` when there is none.
    """
    import nbformat

    path, nb = _read(notebook)
    tagged = _tagged(nb)
    if cell is not None:
        if not 0 <= cell < len(nb.cells) or nb.cells[cell].cell_type != "code":
            raise ParameterError(f"{path.name}: cell {cell} is not a code cell")
        index = cell
    elif tagged is not None:
        index = tagged
    else:
        code_cells = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code"]
        found = next((i for i, c in code_cells if _marked(c.source)), None)
        if found is None:
            found = next((i for i, c in code_cells if _is_literal_cell(c.source)), None)
        if found is None:
            raise ParameterError(
                f"{path.name}: no parameters cell: no code cell is made only of literal "
                "assignments (n_estimators = 100, data = 'data/iris.csv'). Put the "
                "parameters in a cell of their own, or mark one with a first line "
                "'# parameters' (or pass cell=N)."
            )
        index = found
    literals, computed = _declared(nb.cells[index].source)
    if not literals and not computed:
        raise ParameterError(f"{path.name}: cell {index} assigns no variables")
    changed = tagged != index
    if changed:
        for other in nb.cells:  # one parameters cell: papermill injects after the first
            tags = other.get("metadata", {}).get("tags", [])
            if PARAMETERS_TAG in tags:
                tags.remove(PARAMETERS_TAG)
        tags = nb.cells[index].setdefault("metadata", {}).setdefault("tags", [])
        tags.append(PARAMETERS_TAG)
        if write:
            nbformat.write(nb, path)  # type: ignore[no-untyped-call]
    return Parameterized(path, index, literals, computed, changed)
