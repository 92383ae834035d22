"""``jupyter-mlops execute``: run a notebook with papermill, its ``%%track`` cells recording
runs (command line only: it is what ``%%track`` is from outside a kernel)."""

from __future__ import annotations

import argparse
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import NOTEBOOK


class Execute(Command):
    name = "execute"
    help = "execute a notebook with papermill, tracking its cells"

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("notebook", type=NOTEBOOK, help="the .ipynb file to execute")
        add("output", nargs="?", help="executed copy (default: <name>.out.ipynb)")
        add("-p", "--param", action="append", metavar="NAME=VALUE")
        add("--cwd", help="working directory of the kernel (default: notebook's folder)")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.pipelines.execute import execute_notebook, parse_parameters

        out = execute_notebook(
            args.notebook,
            args.output,
            parameters=parse_parameters(args.param or []),
            cwd=args.cwd,
        )
        return f"Executed {args.notebook} -> {out}"
