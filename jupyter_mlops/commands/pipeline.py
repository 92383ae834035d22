"""Notebooks as papermill pipelines: parameterize, write, run, sweep, look back.

The magic takes the action as its first word (``%pipeline run pipeline.yaml``) and marks
each option with the action it belongs to; the command line has one subcommand per action.
``pipeline step`` and ``pipeline export`` exist on the command line only: ``step`` is the
command of an exported DVC stage, ``export`` writes those stages.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from jupyter_mlops._util.records import attributes
from jupyter_mlops.commands.base import Arguments, Context, Face, ModalCommand
from jupyter_mlops.commands.options import HISTORY_LIMIT, WORKERS, json_option
from jupyter_mlops.errors import UsageError

_PARAM_HELP = "override (NAME or STEP.NAME, repeatable); a,b,c sweeps over the values"


def _param(parser: Arguments, scope: str | None = None, help: str | None = _PARAM_HELP) -> None:
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        scope=scope,
        help=help,
    )


def _run_options(parser: Arguments) -> None:
    scope = "run" if parser.magic else None
    add = parser.add_argument
    _param(parser, scope)
    add("--grid", metavar="FILE", scope=scope, help="sweep over a YAML/JSON grid file")
    add("--executor", scope=scope, help="local (default), threads or dask")
    add("--scheduler", scope=scope, help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    add("--workers", type=WORKERS, scope=scope, help="steps at once, 1-256 (default: CPUs)")
    add("--step", action="append", scope=scope, help="only this step (repeatable)")


def _parameterize_options(parser: Arguments) -> None:
    scope = "parameterize" if parser.magic else None
    parser.add_argument(
        "--cell", type=int, scope=scope, help="index of the cell to tag (default: found)"
    )


def _new_options(parser: Arguments) -> None:
    scope = "new" if parser.magic else None
    add = parser.add_argument
    add("-o", "--output", default="pipeline.yaml", scope=scope, help="the file to write")
    add("--name", scope=scope, help="pipeline name (default: the notebook's)")
    add("--overwrite", action="store_true", scope=scope, help="replace an existing file")


def _history_options(parser: Arguments) -> None:
    scope = "history" if parser.magic else None
    add = parser.add_argument
    add("--pipeline", scope=scope, help="runs of this pipeline only")
    add("--model", scope=scope, help="retraining decisions of this model only")
    add(
        "-n",
        "--limit",
        type=HISTORY_LIMIT,
        default=20,
        scope=scope,
        help="how many entries, 1-10000 (default 20)",
    )


def parameterize(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import parameterize

    return parameterize(args.target, cell=args.cell)


def new(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import new_pipeline

    path = new_pipeline(args.target, args.output, name=args.name, overwrite=args.overwrite)
    run = "%pipeline run" if context.face is Face.MAGIC else "jupyter-mlops pipeline run"
    return f"Wrote {path}; edit it, then: {run} {path}"


def run_pipeline(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import launch

    options = attributes(args, "grid", "executor", "scheduler", "workers")
    return launch(args.target, args.param, steps=args.step, **options)


def history(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import history

    found = history(pipeline=args.pipeline, model=args.model, limit=args.limit)
    if getattr(args, "json", False):
        from jupyter_mlops.commands import output

        return output.pipeline_history(found)
    return found


def step(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import run_step

    return run_step(
        args.pipeline, args.step, args.param, params_file=args.params_file, run_dir=args.run_dir
    )


def export(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops.pipelines import export_dvc

    out = export_dvc(args.pipeline, output=args.output, run_dir=args.run_dir)
    return f"Wrote {out} (and params.yaml); run `dvc repro` to execute what changed"


_ACTIONS = {"parameterize": parameterize, "new": new, "run": run_pipeline, "history": history}


class Pipeline(ModalCommand):
    name = "pipeline"
    magic = "pipeline"
    help = "notebooks as papermill pipelines (pipeline.yaml)"
    doc = """Notebooks as papermill pipelines: parameterize, write, run, sweep, look back.

        Examples::

            %pipeline parameterize                      # tag this notebook's parameters cell
            %pipeline parameterize notebooks/train.ipynb
            %pipeline new -o pipeline.yaml              # a starter from this notebook
            %pipeline run pipeline.yaml -p n_estimators=200 -p data=data/new.csv
            %pipeline run pipeline.yaml -p n_estimators=50,100,200 --executor dask \\
                --scheduler tcp://10.0.0.5:8786
            %pipeline history
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--params-file": "command line only (`pipeline step`, the command of a DVC stage)",
        "--run-dir": "command line only (`pipeline step` and `pipeline export`)",
        "--dvc": "command line only (`pipeline export --dvc`)",
        "--json": "command line only (`pipeline history`): JSON for scripts",
    }

    def add_magic_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("action", choices=list(_ACTIONS), help="What to do")
        add(
            "target",
            nargs="?",
            capitalize=False,
            help="notebook (parameterize, new) or pipeline.yaml (run)",
        )
        _run_options(parser)
        _parameterize_options(parser)
        _new_options(parser)
        _history_options(parser)

    def add_subcommands(self, parser: Arguments) -> None:
        q = parser.subcommand(
            "parameterize", "tag a notebook's parameters cell for papermill", parameterize
        )
        q.add_argument("target", metavar="notebook")
        _parameterize_options(q)

        q = parser.subcommand("new", "write a starter pipeline.yaml from a notebook", new)
        q.add_argument("target", metavar="notebook")
        _new_options(q)

        q = parser.subcommand("run", "run a pipeline; comma-separated values sweep", run_pipeline)
        q.add_argument("target", metavar="pipeline", help="pipeline.yaml")
        _run_options(q)

        q = parser.subcommand("step", "run one step (the command of an exported DVC stage)", step)
        q.add_argument("pipeline")
        q.add_argument("step")
        _param(q, help=None)
        q.add_argument("--params-file", help="params.yaml written by the export")
        q.add_argument("--run-dir", help="folder ${run_dir} stands for")

        q = parser.subcommand("export", "write dvc.yaml + params.yaml for `dvc repro`", export)
        q.add_argument("pipeline")
        q.add_argument("--dvc", action="store_true", required=True, help="export to DVC")
        q.add_argument("-o", "--output", help="dvc.yaml to write (default: beside the pipeline)")
        q.add_argument("--run-dir", help="folder for ${run_dir} (default: build/pipelines/NAME)")

        q = parser.subcommand("history", "pipeline runs and retraining decisions", history)
        _history_options(q)
        json_option(q)

    def run_magic(self, args: argparse.Namespace, context: Context) -> Any:
        if args.action in ("parameterize", "new") and args.target is None:
            if not context.notebook:
                raise UsageError(
                    f"%pipeline {args.action}: which notebook? This kernel does not "
                    "know its notebook's path; give it."
                )
            from jupyter_mlops.config import load_config

            args.target = str(load_config().root / context.notebook)
        if args.action == "run" and not args.target:
            raise UsageError("%pipeline run PIPELINE.yaml [-p name=value ...]")
        return _ACTIONS[args.action](args, context)

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        return 0 if args.handler not in (run_pipeline, step) or result.ok else 1
