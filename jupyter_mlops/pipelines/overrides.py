"""Parameters of a run or a sweep: ``-p name=value`` items and grid files.

``-p n_estimators=50,100,200`` (a comma outside brackets and quotes) sweeps a parameter;
a grid file (YAML or JSON) gives ``{name: [values]}`` for every combination, or an
explicit list of variants. Values are Python literals, or text when they are not.
"""

from __future__ import annotations

import ast
import itertools
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jupyter_mlops.errors import PipelineError


def _split_values(raw: str) -> list[str]:
    """Split on commas outside brackets and quotes: ``50,100`` -> two, ``[1,2]`` -> one."""
    parts: list[str] = []
    current: list[str] = []
    depth, quote = 0, ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    parts.append("".join(current))
    return parts


def _literal(raw: str) -> Any:
    try:
        return ast.literal_eval(raw.strip())
    except (ValueError, SyntaxError):
        return raw.strip()


def parse_overrides(items: Iterable[str]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """``-p`` items -> (fixed values, swept values): ``n=50,100,200`` sweeps n over three.

    Values are Python literals or text; ``step.name=value`` targets one step.
    """
    fixed: dict[str, Any] = {}
    swept: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name = key.strip()
        if not sep or not name or not all(p.isidentifier() for p in name.split(".")):
            raise PipelineError(f"Parameter must look like name=value, got {item!r}")
        parts = _split_values(raw)
        if len(parts) > 1 and all(p.strip() for p in parts):
            swept[name] = [_literal(p) for p in parts]
        else:
            fixed[name] = _literal(raw)
    return fixed, swept


def load_grid(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """A grid file (YAML/JSON): ``{name: [values]}`` (all combinations) or a list of dicts."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise PipelineError(f"Grid file {path} does not exist")
    data = yaml.safe_load(file.read_text(encoding="utf-8"))
    return expand_grid(data)


def expand_grid(
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """All combinations of ``{name: [values]}``, or an explicit list of variants as is."""
    if isinstance(grid, Mapping):
        names = list(grid)
        values = []
        for name in names:
            options = grid[name]
            if isinstance(options, str) or not isinstance(options, Sequence) or not options:
                raise PipelineError(f"Grid entry {name!r} must be a non-empty list of values")
            values.append(list(options))
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(grid, Sequence) and grid and all(isinstance(v, Mapping) for v in grid):
        return [dict(v) for v in grid]
    raise PipelineError("A grid is {name: [values, ...]} or a list of {name: value} variants")
