"""Option values parsed once for every face: comma lists, KEY=VALUE pairs, drift thresholds,
and the typed converters (ports, intervals, versions, experiment names...) options declare.

Each parser raises :class:`jupyter_mlops.errors.UsageError`, which the magics show as a
one-line usage error and the command line as exit status 2. The converters (``PORT``,
``INTERVAL``...) are argparse ``type=`` functions over the checks of
:mod:`jupyter_mlops.values`, which the Python API applies to the same values: an
option declared with one is refused by the parser, before anything runs, in both faces.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from jupyter_mlops import values as checks
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
        out[checks.tag_key(key.strip())] = value.strip()
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
    defaults.replace(**out)  # each value in its range (share in [0, 1], no NaN...)
    return out


def converter(check: Callable[[Any], Any], name: str) -> Callable[[str], Any]:
    """An argparse ``type=`` running ``check`` on the option's text (quotes of a magic line
    removed first); its UsageError becomes argparse's own error, so the command line exits
    2 with ``argument --port: port must be from 1 to 65535, got '70000'`` and the magic
    shows the same line as a UsageError."""

    def convert(text: str) -> Any:
        try:
            return check(unquote(text))
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _threshold(item: str) -> str:
    thresholds([item])  # NAME=NUMBER, a known name, a value in its range
    return item


def _expected(text: str) -> str:
    if text.strip().lower() == "none":
        return "none"
    return checks.version_number(text, "expected version")


#: ``--threshold NAME=NUMBER`` (one item; ``thresholds`` merges them).
THRESHOLD = converter(_threshold, "threshold")
#: ``--port``: 1-65535.
PORT = converter(checks.port, "port")
#: ``--interval`` (seconds between refreshes): finite and above 0.
INTERVAL = converter(lambda v: checks.positive(v, "interval"), "interval")
#: ``--timeout`` of a deployment's requests (seconds): finite and above 0.
TIMEOUT = converter(lambda v: checks.positive(v, "timeout"), "timeout")
#: ``--cooldown`` (seconds between notifications): finite, 0 or more.
COOLDOWN = converter(lambda v: checks.non_negative(v, "cooldown"), "cooldown")
#: ``-n/--limit`` of run listings: 1 to ``checks.MAX_RUNS_LISTED``.
RUNS_LIMIT = converter(checks.runs_limit, "limit")
#: ``--workers``: 1 to ``checks.MAX_WORKERS``.
WORKERS = converter(checks.workers, "workers")
#: ``-n/--limit`` of ``pipeline history``: 1 to ``checks.MAX_HISTORY_LISTED``.
HISTORY_LIMIT = converter(checks.history_limit, "limit")


#: ``--expect``: a model version number, or ``none`` (the alias must be unset).
EXPECT = converter(_expected, "expect")
#: ``package --out`` / ``--package``: a folder path, not an existing file.
OUT_FOLDER = converter(lambda v: str(checks.out_folder(v)), "folder")
#: ``execute NOTEBOOK``: an existing ``.ipynb``.
NOTEBOOK = converter(checks.notebook_file, "notebook")
#: ``-e/--experiment`` of a new run: not empty, within MLflow's length.
EXPERIMENT = converter(checks.experiment_name, "experiment")


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
