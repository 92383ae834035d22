"""IPython magics: adapters over :mod:`jupyter_mlops.commands`.

Each magic's parser is built from its command's ``add_arguments`` (as IPython's
``magic_arguments`` would build it from decorators), so its ``?`` help is the usage followed
by the command's docstring; a cell magic's usage reads ``%%track``, as it is typed. Every
:class:`~jupyter_mlops.errors.MlopsError` is shown as a one-line ``UsageError``; an exception
raised by the user's own cell propagates unchanged.

Settings (:mod:`jupyter_mlops.commands.settings`) are traitlets of :class:`MlopsMagics`, so
``%config MlopsMagics.quiet = True`` and ``ipython_config.py`` preset magic options.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Callable
from typing import Any

from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import MagicArgumentParser
from IPython.display import display
from traitlets import Bool, Float, Int, TraitType, Unicode

from jupyter_mlops._util.urls import redact_text
from jupyter_mlops.commands import Arguments, Command, Context, Face, magic_commands
from jupyter_mlops.commands.options import unquote
from jupyter_mlops.commands.settings import SETTINGS, resolve, settings_of


class ShellCells:
    """Runs a cell's code in the user namespace, like IPython would (for ``%%track``)."""

    def __init__(self, shell: InteractiveShell) -> None:
        self.shell: Any = shell  # IPython's compile and transform methods are untyped

    def transform(self, cell: str) -> str:
        return str(self.shell.transform_cell(cell))

    def execute(
        self, source: str, transform: Callable[[ast.Module], ast.Module] | None = None
    ) -> Any:
        """Execute transformed cell code; the last expression's value is returned so it
        shows as the cell's output. ``transform`` rewrites the tree after IPython's own
        AST transformers (``%%track`` instruments the cell with it)."""
        shell = self.shell
        tree = shell.compile.ast_parse(source)
        tree = shell.transform_ast(tree)
        if transform is not None:
            tree = transform(tree)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        # Registering the source lets tracebacks show the cell's lines.
        filename = shell.compile.cache(source, shell.execution_count, raw_code=source)
        exec(shell.compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)
        if last is None:
            return None
        return eval(shell.compile(last, filename, "eval"), shell.user_global_ns, shell.user_ns)

    def show_live(self, obj: Any) -> Callable[[Any], None]:
        """Show ``obj`` under the running cell; returns a function that replaces it in
        place (a display id), for output that changes while the cell runs."""
        handle = display(obj, display_id=True)  # type: ignore[no-untyped-call]
        return handle.update if handle is not None else (lambda _obj: None)


def _earlier_inputs(shell: InteractiveShell) -> list[str]:
    """The kernel's earlier cells as typed, ``[In[1], In[2], ...]`` up to the running one
    (which IPython stores before running it; a cell run without history is not there)."""
    manager = shell.history_manager
    if manager is None:  # a shell without history: the run records no context
        return []
    return list(manager.input_hist_raw[1 : shell.execution_count])


def _parse(parser: MagicArgumentParser, line: str) -> argparse.Namespace:
    try:
        args: argparse.Namespace = parser.parse_argstring(line)  # type: ignore[no-untyped-call]
    except UsageError:
        raise
    except SystemExit as exc:  # argparse exits on --help or bad input in some versions
        raise UsageError(f"Invalid arguments: {line!r}") from exc
    for key, value in vars(args).items():
        setattr(args, key, unquote(value))
    return args


def _magic(command: Command) -> Callable[..., Any]:
    """The magic method of ``command``, with its parser and help."""
    assert command.magic is not None
    # IPython prefixes one "%" to the usage line; a cell magic's name carries the second.
    prog = f"%{command.magic}" if command.cell else command.magic
    parser = MagicArgumentParser(prog, description=command.doc)  # type: ignore[no-untyped-call]
    command.add_arguments(Arguments(parser, Face.MAGIC))
    presets = settings_of(command.magic)
    for setting in presets:  # unset on the line: the setting decides (see run)
        parser.set_defaults(**{setting.dest: None})
        (action,) = (a for a in parser._actions if a.dest == setting.dest)
        action.help = f"{action.help}; preset by MlopsMagics.{setting.name}"

    def run(self: MlopsMagics, line: str, cell: str | None = None) -> Any:
        args = _parse(parser, line)
        shell = self.shell
        context = Context(Face.MAGIC, namespace=shell.user_ns if shell else {}, say=display)
        if cell is not None:
            assert shell is not None
            args.cell, context.cells = cell, ShellCells(shell)
            # As typed (after IPython's $var expansion): what a reproduction replays.
            args.line = line
            args.history = _earlier_inputs(shell)
        try:
            for setting in presets:
                if getattr(args, setting.dest) is None:
                    setattr(args, setting.dest, self.setting(setting.name))
            return command.run(args, context)
        except Exception as exc:
            if exc is context.cell_error:  # the user's cell raised it: theirs to see
                raise
            from jupyter_mlops.tracking.store import user_error

            # A damaged or unreachable store: one line, not a traceback.
            error = user_error(exc)
            if error is None:
                raise
            raise UsageError(redact_text(str(error))) from None  # it may quote the store's URL

    if command.cell:

        def magic(self: MlopsMagics, line: str, cell: str) -> Any:
            return run(self, line, cell)

    else:

        def magic(self: MlopsMagics, line: str) -> Any:  # type: ignore[misc]
            return run(self, line)

    magic.__name__ = magic.__qualname__ = command.magic
    magic.__doc__ = parser.format_help()
    magic.parser = parser  # type: ignore[attr-defined]
    return magic


def _with_commands(cls: type[Magics]) -> type[Magics]:
    """Add a magic method per command, then register them as IPython's ``magics_class``."""
    for command in magic_commands():
        method = _magic(command)
        setattr(cls, method.__name__, method)
        (cell_magic if command.cell else line_magic)(method)
    return magics_class(cls)


def _trait(name: str) -> TraitType[Any, Any]:
    """The configurable trait of setting ``name``; None means unset (pyproject or default)."""
    (setting,) = (s for s in SETTINGS if s.name == name)
    kind = {bool: Bool, str: Unicode, float: Float, int: Int}[setting.kind]
    help = setting.help
    if setting.from_pyproject:
        help += f" (None: pyproject's {name}, else {setting.default!r})"
    trait: TraitType[Any, Any] = kind(None, allow_none=True, help=help)
    return trait.tag(config=True)


@_with_commands
class MlopsMagics(Magics):
    """%%track, %register, %deploy, %monitor, %drift, %pipeline, %compare, %mlops.

    Its traits are the magic settings (``%config MlopsMagics``): each presets one option
    of one magic when the line does not give it; docs/commands.md lists them.
    """

    quiet = _trait("quiet")
    experiment = _trait("experiment")
    monitor_interval = _trait("monitor_interval")
    runs_limit = _trait("runs_limit")

    def setting(self, name: str) -> Any:
        """The value setting ``name`` gives an option absent from the line: this trait's
        (``%config``, ``ipython_config.py``), else the project's pyproject key, else the
        default."""
        (setting,) = (s for s in SETTINGS if s.name == name)
        return resolve(setting, getattr(self, name))
