"""``jupyter-mlops``: the command line over the same API the magics use."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from jupyter_mlops.errors import MlopsError


def _info(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import describe

    print(describe())
    return 0


def _runs(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import runs_table

    print(runs_table(limit=args.limit, all_notebooks=True))
    return 0


def _restore(args: argparse.Namespace) -> int:
    from jupyter_mlops.tracking import restore_data

    dest = restore_data(args.run_id, args.path, args.dest, overwrite=args.overwrite)
    print(f"Restored {args.path} of run {args.run_id} to {dest}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from jupyter_mlops.config import load_config

    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".mlops").mkdir(exist_ok=True)
    config = load_config(folder)
    config.ensure_dirs()
    print(f"Project initialised at {config.root} (tracking: {config.tracking_uri})")
    return 0


def _execute(args: argparse.Namespace) -> int:
    from jupyter_mlops.pipelines.execute import execute_notebook, parse_parameters

    out = execute_notebook(
        args.notebook,
        args.output,
        parameters=parse_parameters(args.param or []),
        cwd=args.cwd,
    )
    print(f"Executed {args.notebook} -> {out}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from jupyter_mlops.demo import run_demo

    run_demo(Path(args.dir))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter-mlops", description="Jupyter-native MLOps on MLflow and DVC."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("info", help="show the project, tracking store and DVC state")
    p.set_defaults(func=_info)

    p = sub.add_parser("runs", help="list the latest runs")
    p.add_argument("-n", "--limit", type=int, default=10)
    p.set_defaults(func=_runs)

    p = sub.add_parser("restore", help="restore a run's data snapshot byte for byte")
    p.add_argument("run_id")
    p.add_argument("path", help="the data path as the run recorded it")
    p.add_argument("dest", help="where to write the restored file or folder")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_restore)

    p = sub.add_parser("init", help="make a folder a jupyter-mlops project (creates .mlops/)")
    p.add_argument("dir", nargs="?", default=".")
    p.set_defaults(func=_init)

    p = sub.add_parser("execute", help="execute a notebook with papermill, tracking its cells")
    p.add_argument("notebook")
    p.add_argument("output", nargs="?", help="executed copy (default: <name>.out.ipynb)")
    p.add_argument("-p", "--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--cwd", help="working directory of the kernel (default: notebook's folder)")
    p.set_defaults(func=_execute)

    p = sub.add_parser("demo", help="run the quickstart notebook in a fresh demo project")
    p.add_argument("--dir", default="build/demo", help="demo project folder")
    p.set_defaults(func=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MlopsError as exc:
        print(f"jupyter-mlops: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
