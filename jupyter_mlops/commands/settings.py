"""Magic settings: defaults of magic options a user sets once, not on every line.

Each :class:`Setting` presets one option of one magic. ``magics.py`` makes each a traitlet
of ``MlopsMagics`` (``config=True``), so IPython's own configuration sets it::

    %config MlopsMagics.quiet = True              # this kernel, from now on
    c.MlopsMagics.runs_limit = 20                 # ipython_config.py, every kernel

Precedence, first found wins: the option on the magic's line, the trait (``%config``, which
IPython applies after ``ipython_config.py``), the key of the same name in the project's
``[tool.jupyter-mlops]`` (``pyproject.toml``), the default. ``experiment`` is the project
setting the core already reads from pyproject, so it is not looked up here a second time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jupyter_mlops import values
from jupyter_mlops.errors import ConfigError, UsageError


@dataclass(frozen=True)
class Setting:
    """A trait ``name`` presetting the option ``option`` (``dest``) of magic ``magic``."""

    name: str
    magic: str
    dest: str
    option: str
    kind: type
    default: Any
    help: str
    #: False: the core reads the pyproject key itself (with a default of its own).
    from_pyproject: bool = True
    cell: bool = False  # a cell magic (%%track)
    #: The option's own check (:mod:`jupyter_mlops.values`), applied to a preset value too.
    check: Callable[[Any], Any] | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "quiet", "track", "quiet", "--quiet", bool, False, "%%track shows no run card", cell=True
    ),
    Setting(
        "experiment",
        "track",
        "experiment",
        "--experiment",
        str,
        None,
        "MLflow experiment of %%track runs (unset: pyproject's `experiment`, else the "
        "notebook's name)",
        from_pyproject=False,
        cell=True,
    ),
    Setting(
        "monitor_interval",
        "monitor",
        "interval",
        "--interval",
        float,
        5.0,
        "seconds between refreshes of the %monitor widget",
        check=lambda v: values.positive(v, "monitor_interval"),
    ),
    Setting(
        "runs_limit",
        "mlops",
        "limit",
        "--limit",
        int,
        10,
        "how many runs `%mlops runs` lists",
        check=lambda v: values.whole(v, "runs_limit", 1, values.MAX_RUNS_LISTED),
    ),
)

#: The keys of ``[tool.jupyter-mlops]`` that preset magic options (config.py accepts them).
PYPROJECT_KEYS = frozenset(s.name for s in SETTINGS if s.from_pyproject)


def settings_of(magic: str) -> list[Setting]:
    """The settings presetting options of ``magic``."""
    return [s for s in SETTINGS if s.magic == magic]


def resolve(setting: Setting, configured: Any) -> Any:
    """The value of ``setting`` when its option is not on the line: ``configured`` (the
    trait, None when unset), else the project's pyproject key, else the default."""
    if configured is not None:
        return _checked(setting, configured)
    if not setting.from_pyproject:
        return setting.default
    from jupyter_mlops.config import find_project_root, read_pyproject

    value = read_pyproject(find_project_root()).get(setting.name)
    if value is None:
        return setting.default
    # TOML has int and float apart; a whole number is a fine float, True is no int.
    ok = isinstance(value, setting.kind) and not (setting.kind is int and isinstance(value, bool))
    if setting.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"[tool.jupyter-mlops] {setting.name} must be a {setting.kind.__name__}, got {value!r}"
        )
    try:
        return _checked(setting, value)
    except UsageError as exc:
        raise ConfigError(f"[tool.jupyter-mlops] {exc}") from None


def _checked(setting: Setting, value: Any) -> Any:
    """``value`` through the setting's check (a UsageError naming the setting)."""
    return value if setting.check is None else setting.check(value)


def settings_table() -> list[str]:
    """docs/commands.md: the magic settings, as Markdown lines."""
    lines = [
        "## Magic settings",
        "",
        "Defaults of magic options, set with `%config MlopsMagics.NAME = VALUE`, "
        "`c.MlopsMagics.NAME = VALUE` in `ipython_config.py`, or `NAME = VALUE` under "
        "`[tool.jupyter-mlops]` in `pyproject.toml`. First found wins: the option on the "
        "magic's line, `%config`, `ipython_config.py`, `pyproject.toml`, the default.",
        "",
        "| setting | type | presets | default | meaning |",
        "| --- | --- | --- | --- | --- |",
    ]
    for s in SETTINGS:
        magic = f"%{'%' if s.cell else ''}{s.magic}"
        default = "unset" if s.default is None else f"`{s.default!r}`"
        lines.append(
            f"| `MlopsMagics.{s.name}` | {s.kind.__name__} | `{magic} {s.option}` | "
            f"{default} | {s.help} |"
        )
    return lines
