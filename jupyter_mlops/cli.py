"""``jupyter-mlops``: the command line, an adapter over :mod:`jupyter_mlops.commands`.

Each subcommand's options come from its command's ``add_arguments``; the result is
printed, and an :class:`~jupyter_mlops.errors.MlopsError` exits with its class's
``exit_code`` (domain errors 1, usage errors 2; checks that fire say 1 or 3).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jupyter_mlops.commands import Arguments, Command, Context, Face, cli_commands
from jupyter_mlops.errors import MlopsError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-mlops", description="Jupyter-native MLOps on MLflow and DVC."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for command in cli_commands():
        p = sub.add_parser(command.name, help=command.help)
        p.set_defaults(spec=command)
        command.add_arguments(Arguments(p, Face.CLI))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    command: Command = args.spec
    try:
        result = command.run(args, Context(Face.CLI))
        shown = command.render(args, result)
        if shown is not None:
            print(shown)
        return command.exit_code(args, result)
    except MlopsError as exc:
        print(f"jupyter-mlops: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
