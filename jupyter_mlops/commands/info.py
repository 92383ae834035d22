"""The project's state: configuration and store (info), latest runs, buffered runs (retry).

The magic is ``%mlops [info|runs|pending|retry]``; the command line has ``info``, ``runs``
and ``retry [--list]`` (``retry --list`` is ``%mlops pending``).
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import RUNS_LIMIT, json_option
from jupyter_mlops.errors import UsageError
from jupyter_mlops.values import MAX_RUNS_LISTED


def _limit(parser: Arguments) -> None:
    parser.add_argument(
        "-n",
        "--limit",
        type=RUNS_LIMIT,
        default=10,
        help=f"how many runs, 1-{MAX_RUNS_LISTED}" + (" (for `runs`)" if parser.magic else ""),
    )


def info(args: argparse.Namespace, context: Context) -> Any:
    if getattr(args, "json", False):
        from jupyter_mlops.commands import output
        from jupyter_mlops.present import project_state

        return output.info(project_state())
    from jupyter_mlops.present import describe

    return describe()


def runs(args: argparse.Namespace, context: Context) -> Any:
    """The latest runs of this notebook (magic) or of every notebook (command line)."""
    if getattr(args, "json", False):
        from jupyter_mlops.commands import output
        from jupyter_mlops.tracking import latest_runs

        return output.runs(latest_runs(limit=args.limit))
    from jupyter_mlops.present import runs_table

    return runs_table(limit=args.limit, all_notebooks=args.all, namespace=context.namespace)


def pending(args: argparse.Namespace, context: Context) -> Any:
    if getattr(args, "json", False):
        from jupyter_mlops.commands import output
        from jupyter_mlops.tracking.buffer import pending

        damaged: list[Any] = []
        listed = pending(damaged=damaged)
        return output.pending(listed, damaged)
    from jupyter_mlops.present import pending_table

    return pending_table()


def retry(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.present import retry_table

    return retry_table()


def doctor(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.commands.doctor import checkup

    return checkup()


_ACTIONS = {"info": info, "runs": runs, "pending": pending, "retry": retry, "doctor": doctor}


class Mlops(Command):
    """``%mlops``: the magic over the commands of this module."""

    name = "mlops"
    magic = "mlops"
    cli = False
    doc = """Show the active configuration and whether its store is reachable (``%mlops``),
        this notebook's latest runs, or the runs buffered while the store was unreachable
        (``%mlops pending``; ``%mlops retry`` logs them); ``%mlops doctor`` checks the
        project's stores and files and says what is damaged and the fix."""
    face_specific: ClassVar[dict[str, str]] = {
        "--all": "magic only: the command line's `runs` lists every notebook's runs",
        "--list": "command line (`retry --list`); magic: `%mlops pending`",
        "--json": "command line only (`info`, `runs`, `retry --list`, `doctor`): JSON for scripts",
        "--version": "magic; command line: `jupyter-mlops --version`",
    }

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument(
            "action",
            nargs="?",
            default="info",
            choices=list(_ACTIONS),
            capitalize=False,
            help="info (store, reachability), runs, pending (buffered runs), retry (log them), "
            "doctor (check stores and files)",
        )
        _limit(parser)
        parser.add_argument(
            "--all", action="store_true", help="runs of every notebook (for `runs`)"
        )
        parser.add_argument("--version", action="store_true", help="the jupyter-mlops version")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        if args.version:  # as `jupyter-mlops --version` prints it
            from jupyter_mlops._version import __version__
            from jupyter_mlops.commands.output import Text

            return Text(f"jupyter-mlops {__version__}")
        return _ACTIONS[args.action](args, context)


class Info(Command):
    name = "info"
    magic_form = "%mlops"
    help = "show the project, tracking store and DVC state"

    def add_arguments(self, parser: Arguments) -> None:
        json_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        return info(args, context)


class Runs(Command):
    name = "runs"
    magic_form = "%mlops runs"
    help = "list the latest runs"

    def add_arguments(self, parser: Arguments) -> None:
        _limit(parser)
        json_option(parser)

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        args.all = True
        return runs(args, context)


class Retry(Command):
    name = "retry"
    magic_form = "%mlops retry (--list: %mlops pending)"
    help = "log the runs buffered while the tracking store was unreachable"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("--list", action="store_true", help="only list them")
        json_option(parser, "with --list: print them as JSON")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        if args.json and not args.list:
            raise UsageError("--json goes with --list (the buffered runs as JSON)")
        return pending(args, context) if args.list else retry(args, context)


COMMANDS = (Mlops(), Info(), Runs(), Retry())
