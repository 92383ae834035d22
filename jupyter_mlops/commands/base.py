"""The command spec both text faces adapt: options once, one run function, one result.

A :class:`Command` adds its options to an :class:`Arguments` (argparse underneath) and
runs on the parsed namespace with a :class:`Context` saying where it was called from.
``magics.py`` builds an IPython ``MagicArgumentParser`` from the same ``add_arguments``
that ``cli.py`` turns into argparse subcommands, so an option exists in both faces unless
the command declares it face-specific (``face_specific``, checked by the test suite).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from functools import cached_property
from typing import Any, ClassVar, Protocol


class Face(Enum):
    """Which adapter a command is running under."""

    MAGIC = "magic"
    CLI = "cli"


class Arguments:
    """A face's argument parser, with that face's house style for help texts.

    Help is written once, in the command line's lower case; the magics' help starts with a
    capital letter, as IPython's own magics do. ``scope`` names the action of a multi-action
    magic that an option belongs to ("run: ..."): the magic shows it as a prefix, the command
    line (where each action is its own subcommand) does not need it.
    """

    def __init__(self, parser: argparse.ArgumentParser, face: Face) -> None:
        self.parser = parser
        self.face = face
        self._subparsers: Any = None

    @property
    def magic(self) -> bool:
        return self.face is Face.MAGIC

    def add_argument(
        self,
        *flags: str,
        help: str | None = None,
        scope: str | None = None,
        capitalize: bool = True,
        **kwargs: Any,
    ) -> argparse.Action:
        """``parser.add_argument``; ``capitalize=False`` keeps a help that starts with a
        value's own spelling (a file name, say) as written."""
        if help is not None and self.magic:
            if scope:
                help = f"{scope}: {help}"
            elif capitalize:
                help = help[:1].upper() + help[1:]
        return self.parser.add_argument(*flags, help=help, **kwargs)

    def subcommand(
        self, name: str, help: str, run: RunFunction | None = None, **defaults: Any
    ) -> Arguments:
        """A command-line subcommand (``deploy start``); ``run`` handles it when given."""
        if self._subparsers is None:
            dest = f"{self.parser.prog.split()[-1]}_command"
            self._subparsers = self.parser.add_subparsers(dest=dest, required=True)
        sub = self._subparsers.add_parser(name, help=help)
        if run is not None:
            sub.set_defaults(handler=run)
        if defaults:
            sub.set_defaults(**defaults)
        return Arguments(sub, self.face)

    def set_defaults(self, **defaults: Any) -> None:
        self.parser.set_defaults(**defaults)


class CellRunner(Protocol):
    """How the kernel runs a cell's code (only ``%%track`` needs one).

    ``execute`` applies ``transform`` to the code's AST after the kernel's own transforms;
    ``show_live`` shows an object under the running cell and returns its in-place updater.
    """

    def transform(self, cell: str) -> str: ...

    def execute(self, source: str, transform: Callable[[Any], Any] | None = None) -> Any: ...

    def show_live(self, obj: Any) -> Callable[[Any], None]: ...


@dataclass
class Context:
    """Where a command runs: the face, the kernel's namespace (magics only), the output.

    ``say`` shows a message while a command runs (``print`` on the command line, IPython's
    ``display`` in a notebook). ``cell_error`` is what the user's cell raised, if it did, so
    an adapter can let the user's own exception through unchanged.
    """

    face: Face
    namespace: Mapping[str, Any] | None = None
    say: Callable[[Any], None] = print
    cells: CellRunner | None = None
    cell_error: BaseException | None = field(default=None, repr=False)

    @cached_property
    def notebook(self) -> str | None:
        """The notebook this kernel serves, relative to the project root (kernel only).

        The project is the notebook's own when a project marks its folder (a kernel that
        papermill ``--cwd`` or nbconvert started elsewhere), else the working folder's."""
        if self.namespace is None:
            return None
        from jupyter_mlops.config import load_config, notebook_project_start
        from jupyter_mlops.tracking.notebook import find_notebook

        source = find_notebook(self.namespace)
        if source is None:
            return None
        return source.relative(load_config(notebook_project_start(source.local)).root)

    def origin(self) -> dict[str, Any] | None:
        """Where a registry action was taken from, as the registry records it."""
        return None if self.namespace is None else {"notebook": self.notebook}


RunFunction = Callable[[argparse.Namespace, Context], Any]


class Command:
    """One command: its options, what it does, and how each face names it.

    ``name`` is the command-line subcommand; ``magic`` the magic's name (None: command line
    only); ``cli`` False for a magic-only command. ``help`` is the command line's one-line
    help, ``doc`` the magic's docstring (IPython puts the usage above it). ``face_specific``
    maps each option that exists in one face only to why, or to its form in the other face.
    ``magic_form`` is the magic's spelling of a command-line subcommand (``%register --list``).
    """

    name: ClassVar[str]
    help: ClassVar[str] = ""
    doc: ClassVar[str] = ""
    magic: ClassVar[str | None] = None
    cell: ClassVar[bool] = False
    cli: ClassVar[bool] = True
    face_specific: ClassVar[Mapping[str, str]] = {}
    #: For a command-line subcommand that is a mode of a magic: that mode's form.
    magic_form: ClassVar[str] = ""

    def add_arguments(self, parser: Arguments) -> None:
        """Add this command's options to ``parser`` (both faces, unless face-specific)."""

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        """Do the command; the result is shown by the magic, printed by the command line."""
        handler: RunFunction | None = getattr(args, "handler", None)
        if handler is None:
            raise NotImplementedError(self.name)
        return handler(args, context)

    def render(self, args: argparse.Namespace, result: Any) -> Any:
        """What the command line prints for a result (e.g. JSON with ``--json``)."""
        return result

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        """The command line's exit status for a result (checks that fire say 1 or 3)."""
        return 0


class ModalCommand(Command):
    """A magic with modes (``%deploy NAME --promote``) that the command line spells as
    subcommands (``deploy promote NAME``), each with its own run function: the faces share
    the option helpers but not the parser, so each has its own builder and dispatch."""

    def add_arguments(self, parser: Arguments) -> None:
        if parser.magic:
            self.add_magic_arguments(parser)
        else:
            self.add_subcommands(parser)

    def add_magic_arguments(self, parser: Arguments) -> None:
        """The magic's options: a mode flag or action word and the options of every mode."""

    def add_subcommands(self, parser: Arguments) -> None:
        """The command line's subcommands, each given its run function."""

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        if context.face is Face.CLI:  # each mode is a subcommand with its own function
            return super().run(args, context)
        return self.run_magic(args, context)

    def run_magic(self, args: argparse.Namespace, context: Context) -> Any:
        """The magic: pick the mode from the flags and run it."""
        raise NotImplementedError(self.name)
