"""Option values parsed once for every face: comma lists, KEY=VALUE pairs, drift thresholds.

Each parser raises :class:`jupyter_mlops.errors.UsageError`, which the magics show as a
one-line usage error and the command line as exit status 2.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import UsageError

if TYPE_CHECKING:
    from jupyter_mlops.commands.base import Arguments


def comma_list(values: Iterable[str] | None) -> list[str]:
    """``--features a,b --features c`` -> ["a", "b", "c"] (blanks dropped)."""
    return [v.strip() for value in values or [] for v in value.split(",") if v.strip()]


def variable_names(values: Iterable[str] | None) -> list[str]:
    """``--params a,b --params c`` -> ["a", "b", "c"], each a Python variable name."""
    out = comma_list(values)
    for name in out:
        if not name.isidentifier():
            raise UsageError(f"{name!r} is not a variable name")
    return out


def tags(values: Iterable[str] | None) -> dict[str, str]:
    """``--tag team=ds --tag stage=dev`` -> {"team": "ds", "stage": "dev"}."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def thresholds(values: Iterable[str] | None) -> dict[str, int | float]:
    """``--threshold share=0.3 --threshold bins=20`` -> drift threshold overrides.

    Names are those of :class:`jupyter_mlops.monitoring.DriftThresholds`; each value is a
    number of that field's type (``bins`` and ``min_samples`` are whole numbers).
    """
    items = list(values or [])
    if not items:
        return {}
    from dataclasses import fields

    from jupyter_mlops.monitoring import DriftThresholds

    defaults = DriftThresholds()
    known = {f.name: type(getattr(defaults, f.name)) for f in fields(defaults)}
    out: dict[str, int | float] = {}
    for item in items:
        key, sep, value = (part.strip() for part in item.partition("="))
        if key not in known and sep:
            raise UsageError(
                f"Unknown drift threshold {key!r} in --threshold; known: {sorted(known)}"
            )
        try:
            number = int(value) if known.get(key) is int else float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--threshold expects NAME=NUMBER, got {item!r}")
        out[key] = number
    return out


def json_option(parser: Arguments, help: str = "print as JSON") -> None:
    """``--json`` of a listing, on the command line only (scripts read it; the magic shows a
    table, and its data in Python). Its keys are those of ``commands/output.py``."""
    if not parser.magic:
        parser.add_argument("--json", action="store_true", help=f"{help} (keys: docs/commands.md)")


def unquote(value: Any) -> Any:
    """IPython splits magic lines without removing quotes: '"a >= 1"' -> 'a >= 1'."""
    if isinstance(value, list):
        return [unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value
