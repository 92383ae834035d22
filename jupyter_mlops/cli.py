"""``jupyter-mlops``: the command line, an adapter over :mod:`jupyter_mlops.commands`.

Each subcommand's options come from its command's ``add_arguments``; the result is
printed, and an :class:`~jupyter_mlops.errors.MlopsError` exits with its class's
``exit_code``. The exit statuses (``errors.EXIT_CODES``) are listed in ``--help`` and in
docs/commands.md: 0 done, 1 could not be done (or a check fired), 2 usage error, 3 a check
that could not judge.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import traceback
from collections.abc import Sequence

from jupyter_mlops._util.urls import redact_text
from jupyter_mlops._version import __version__
from jupyter_mlops.commands import Arguments, Command, Context, Face, cli_commands
from jupyter_mlops.errors import EXIT_CODES, EXIT_ERROR, EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    epilog = "exit status:\n" + "\n".join(
        textwrap.fill(
            meaning.replace("`", ""), 88, initial_indent=f"  {code}  ", subsequent_indent=" " * 5
        )
        for code, meaning in EXIT_CODES.items()
    )
    parser = argparse.ArgumentParser(
        prog="jupyter-mlops",
        description="Jupyter-native MLOps on MLflow and DVC.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"jupyter-mlops {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in cli_commands():
        p = sub.add_parser(command.name, help=command.help)
        p.set_defaults(spec=command)
        command.add_arguments(Arguments(p, Face.CLI))
    return parser


def _parse(argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The parsed command line, or the status argparse exits with (0 after ``--help`` or
    ``--version``, 2 on a usage error), so ``main`` returns it like any other status."""
    try:
        return build_parser().parse_args(argv)
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if isinstance(args, int):
        return args
    command: Command = args.spec
    try:
        result = command.run(args, Context(Face.CLI))
        shown = command.render(args, result)
        if shown is not None:
            print(shown)
        return command.exit_code(args, result)
    except Exception as exc:
        from jupyter_mlops.tracking.store import user_error

        error = user_error(exc)  # damaged or unreachable store: one line, not a traceback
        if error is not None:  # (MLflow's would quote the URL, password included)
            print(f"jupyter-mlops: error: {redact_text(str(error))}", file=sys.stderr)
            return error.exit_code
        # A bug: its traceback as Python prints it, minus the secrets it may quote.
        sys.stderr.write(redact_text("".join(traceback.format_exception(exc))))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
