"""``jupyter-mlops init``: make a folder a project (command line only: a notebook's project
is found from its folder, and ``.mlops/`` is made on first use)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context


class Init(Command):
    name = "init"
    help = "make a folder a jupyter-mlops project (creates .mlops/)"

    def add_arguments(self, parser: Arguments) -> None:
        parser.add_argument("dir", nargs="?", default=".")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops._util.urls import redact
        from jupyter_mlops.config import load_config

        folder = Path(args.dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / ".mlops").mkdir(exist_ok=True)
        config = load_config(folder)
        config.ensure_dirs()
        return f"Project initialised at {config.root} (tracking: {redact(config.tracking_uri)})"
