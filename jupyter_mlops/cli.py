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


def _register(args: argparse.Namespace) -> int:
    from jupyter_mlops import registry

    print(
        registry.register(
            args.run,
            name=args.name,
            aliases=args.alias or [],
            gate=args.gate,
            against=args.against,
            metric=args.metric,
            min_delta=args.min_delta,
            model=args.model,
        )
    )
    return 0


def _models(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import models_table

    print(models_table())
    return 0


def _promote(args: argparse.Namespace) -> int:
    from jupyter_mlops import registry
    from jupyter_mlops.status import event_text

    print(event_text(registry.promote(args.version, args.alias, gate=args.gate)))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from jupyter_mlops import registry
    from jupyter_mlops.status import event_text

    print(event_text(registry.rollback(args.name, args.alias)))
    return 0


def _history(args: argparse.Namespace) -> int:
    from jupyter_mlops.status import history_table

    print(history_table(args.name))
    return 0


def _lineage(args: argparse.Namespace) -> int:
    import json

    from jupyter_mlops import registry

    lin = registry.lineage(args.model)
    print(json.dumps(lin.to_dict(), indent=2, default=str) if args.json else lin)
    if args.restore:
        print(f"Restored training data to {lin.restore_data(args.path, args.restore)}")
    return 0


def _package(args: argparse.Namespace) -> int:
    from jupyter_mlops.packaging import package

    print(package(args.model, args.out, overwrite=args.overwrite))
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

    p = sub.add_parser("register", help="register a tracked run's model as a new version")
    p.add_argument("run", nargs="?", default="last", help="run id or prefix (default: last)")
    p.add_argument("-n", "--name", required=True, help="registered model name")
    p.add_argument("--alias", action="append", help="alias to set (repeatable)")
    p.add_argument("--gate", help='bar over the run\'s metrics, e.g. "accuracy >= 0.9"')
    p.add_argument("--against", metavar="ALIAS", help="register only if it beats this alias")
    p.add_argument("--metric", help="metric for --against")
    p.add_argument("--min-delta", type=float, default=0.0)
    p.add_argument("--model", help="which model of the run, if it logged several")
    p.set_defaults(func=_register)

    p = sub.add_parser("models", help="registered models, versions, aliases, metrics")
    p.set_defaults(func=_models)

    p = sub.add_parser("promote", help="point an alias at a version: promote NAME/VERSION ALIAS")
    p.add_argument("version", metavar="NAME/VERSION")
    p.add_argument("alias")
    p.add_argument("--gate")
    p.set_defaults(func=_promote)

    p = sub.add_parser("rollback", help="move an alias back to its previous holder")
    p.add_argument("name")
    p.add_argument("alias")
    p.set_defaults(func=_rollback)

    p = sub.add_parser("history", help="alias history of a registered model")
    p.add_argument("name")
    p.set_defaults(func=_history)

    p = sub.add_parser("lineage", help="trace a model version to its run, code and data")
    p.add_argument("model", metavar="NAME@ALIAS|NAME/VERSION")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--restore", metavar="DEST", help="restore the training data to DEST")
    p.add_argument("--path", help="which data path to restore (if the run read several)")
    p.set_defaults(func=_lineage)

    p = sub.add_parser("package", help="write a Docker build context serving a model version")
    p.add_argument("model", metavar="MODEL", help="models:/NAME@ALIAS, NAME@ALIAS or NAME/VERSION")
    p.add_argument("--out", required=True, help="folder to write the build context into")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.set_defaults(func=_package)

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
