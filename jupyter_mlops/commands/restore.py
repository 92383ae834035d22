"""``jupyter-mlops restore``: a run's data snapshot back, byte for byte (command line only;
in a notebook, ``jupyter_mlops.restore_data`` or ``%register --lineage ... --restore``)."""

from __future__ import annotations

import argparse
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context


class Restore(Command):
    name = "restore"
    help = "restore a run's data snapshot byte for byte"

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("run_id")
        add("path", help="the data path as the run recorded it")
        add("dest", help="where to write the restored file or folder")
        add("--overwrite", action="store_true")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.tracking import restore_data

        dest = restore_data(args.run_id, args.path, args.dest, overwrite=args.overwrite)
        return f"Restored {args.path} of run {args.run_id} to {dest}"
