"""``jupyter-mlops retrain``: on drift, run the pipeline, gate the challenger, promote it.

Command line only: it is meant for cron, CI or a long-lived ``--watch``; in a notebook the
same decision is ``jupyter_mlops.pipelines.retrain`` or an alert action
(``%monitor DEPLOYMENT --alert RULE --action pipeline:FILE``).
"""

from __future__ import annotations

import argparse
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context


class Retrain(Command):
    name = "retrain"
    help = "retrain on drift: pipeline, challenger, gate, promote"

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("--model", required=True, help="registered model name")
        add("--pipeline", required=True, help="pipeline.yaml")
        add("--when", help='trigger over monitoring figures, e.g. "drift_share > 0.3"')
        add("--deployment", help="deployment whose figures to read (default: model)")
        add("--force", action="store_true", help="retrain whatever the figures say")
        add("--canary", type=float, metavar="PERCENT", help="canary the winner first")
        add("--metric", help="holdout metric to compare (default: pipeline's)")
        add("-p", "--param", action="append", metavar="NAME=VALUE")
        add("--last", default="1h", help="monitoring window (default 1h)")
        add("--executor", help="local (default), threads or dask")
        add("--scheduler", help="Dask scheduler address")
        add("--watch", type=float, metavar="SECONDS", help="check every SECONDS")
        add("--max-checks", type=int, help="with --watch: stop after N checks")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.pipelines import PipelineError, parse_overrides, retrain, watch

        params, swept = parse_overrides(args.param or [])
        if swept:
            raise PipelineError("retrain runs the pipeline once: one value per parameter")
        options = {
            "model": args.model,
            "pipeline": args.pipeline,
            "when": args.when,
            "deployment": args.deployment,
            "force": args.force,
            "canary_weight": args.canary,
            "metric": args.metric,
            "params": params,
            "last": args.last,
            "executor": args.executor,
            "scheduler": args.scheduler,
        }
        if args.watch:
            watch(args.watch, max_checks=args.max_checks, on_decision=context.say, **options)
            return None
        return retrain(**options)

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        failed = result is not None and result.action in ("pipeline-failed", "no-model")
        return 1 if failed else 0
