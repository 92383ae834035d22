"""``jupyter-mlops demo``: the quickstart in a fresh project (command line only: ``make demo``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context


class Demo(Command):
    name = "demo"
    help = "run the quickstart notebook in a fresh demo project"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("--dir", default="build/demo", help="demo project folder")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.demo import run_demo

        run_demo(Path(args.dir))
        return None
