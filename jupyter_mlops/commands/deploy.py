"""Deployments: serve registered models as REST APIs, canary, blue-green, batch scoring.

The magic takes a target and a mode flag (``%deploy NAME --canary MODEL``); the command line
has a subcommand per mode (``jupyter-mlops deploy canary NAME MODEL``). Both are built
from the same options and call the same functions of :mod:`jupyter_mlops.serving`.
"""

from __future__ import annotations

import argparse
from typing import Any, ClassVar

from jupyter_mlops import values as checks
from jupyter_mlops._util.records import attributes
from jupyter_mlops.commands.base import Arguments, Context, ModalCommand
from jupyter_mlops.commands.options import PORT, TIMEOUT, WORKERS, converter, json_option
from jupyter_mlops.errors import UsageError

#: The significance level and labels per side of a conditional promotion (the defaults of
#: jupyter_mlops.serving.decision, repeated so that help does not import serving).
DEFAULT_ALPHA, DEFAULT_MIN_LABELS = 0.05, 100


def _alpha(value: str) -> float:
    alpha = checks.between(value, "alpha", 0.0, 1.0, open_low=True)
    if alpha >= 1.0:
        raise UsageError(f"alpha must be below 1, got {value!r}")
    return alpha


#: ``--alpha``: a significance level in (0, 1).
ALPHA = converter(_alpha, "alpha")
#: ``--min-labels``: labelled rows per side, 1 or more.
MIN_LABELS = converter(lambda v: checks.whole(v, "min-labels", 1, 10**9), "min-labels")


def _serve_options(parser: Arguments) -> None:
    add = parser.add_argument
    add("--name", help="deployment name (default: from the model)")
    add("--port", type=PORT, help="port, 1-65535 (default: a free one)")
    add("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    add("--workers", type=WORKERS, default=1, help="server worker processes")
    add("--token", help="bearer token required by every endpoint but /health")
    add(
        "--timeout",
        type=TIMEOUT,
        default=30.0,
        metavar="SECONDS",
        help="answer 504 to a prediction not done this many seconds after it arrived (default 30)",
    )
    add(
        "--predict",
        choices=("label", "proba"),
        default="label",
        help="what /predict answers by default: labels, or probabilities per class "
        "(proba: classifiers only; a request may ask ?predict=)",
    )
    add(
        "--strict-invocations",
        action="store_true",
        help="/invocations validates and answers errors as /predict does (default: exactly "
        "as `mlflow models serve`)",
    )


def _weight(parser: Arguments) -> None:
    parser.add_argument(
        "--weight", type=float, default=10.0, help="canary share in percent (default 10)"
    )


def _decision_options(parser: Arguments) -> None:
    add = parser.add_argument
    add(
        "--if",
        dest="when",
        metavar="EXPR",
        help="promote only if the live outcomes since the canary began show it, e.g. "
        '"challenger.accuracy > primary.accuracy" (each comparison significant at --alpha); '
        "the decision and its evidence go on the deployment's history either way",
    )
    add(
        "--alpha",
        type=ALPHA,
        default=DEFAULT_ALPHA,
        help=f"significance level of --if (default {DEFAULT_ALPHA:g})",
    )
    add(
        "--min-labels",
        type=MIN_LABELS,
        default=DEFAULT_MIN_LABELS,
        metavar="N",
        help=f"labelled rows --if needs per side (default {DEFAULT_MIN_LABELS})",
    )


def _no_log(parser: Arguments) -> None:
    parser.add_argument("--no-log", action="store_true", help="do not keep a prediction log")


def start(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops import serving

    return serving.deploy(
        args.target,
        prediction_log=not args.no_log,
        predict=args.predict,
        strict_invocations=args.strict_invocations,
        request_timeout=args.timeout,
        **attributes(args, "name", "port", "host", "workers", "token"),
    )


def canary(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops import serving

    return serving.canary(args.name, args.canary, args.weight)


def batch(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops import serving

    return serving.batch_predict(args.target, args.batch, args.output)


def on_deployment(args: argparse.Namespace, context: Context) -> Any:
    """promote, rollback, stop or status of the deployment ``args.name``."""
    from jupyter_mlops import serving

    if args.action == "promote" and getattr(args, "when", None):
        return serving.promote(
            args.name, when=args.when, alpha=args.alpha, min_labels=args.min_labels
        )

    action = {
        "promote": serving.promote,
        "rollback": serving.rollback,
        "stop": serving.stop,
        "status": serving.get_deployment,
    }[args.action]
    if getattr(args, "json", False):  # status only
        from jupyter_mlops.commands import output

        return output.deployment(action(args.name))
    return action(args.name)


def deployments(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops import serving

    if getattr(args, "json", False):
        from jupyter_mlops.commands import output

        return output.deployments(serving.list_deployments())
    return serving.list_deployments()


_MODES = ("canary", "promote", "rollback", "stop", "status", "list", "batch")


class Deploy(ModalCommand):
    name = "deploy"
    magic = "deploy"
    help = "serve registered models as REST APIs"
    doc = """Serve registered models as a REST API on 127.0.0.1, with canary and blue-green.

        Examples::

            %deploy iris-rf@champion
            %deploy iris-rf@champion --port 8100 --name iris-prod --workers 2
            %deploy iris-rf@champion --predict proba
            %deploy iris-prod --canary iris-rf@challenger --weight 10
            %deploy iris-prod --promote
            %deploy iris-prod --promote --if "challenger.accuracy > primary.accuracy"
            %deploy iris-prod --rollback
            %deploy --list
            %deploy iris-prod --stop
            %deploy iris-rf@champion --batch data/new.csv --output preds.parquet
        """
    face_specific: ClassVar[dict[str, str]] = {
        f"--{mode}": f"magic mode; command line: `deploy {mode} ...`" for mode in _MODES
    } | {
        "--output": "magic, with --batch; command line: `deploy batch MODEL INPUT OUTPUT`",
        "--json": "command line only (`deploy list`, `deploy status`): JSON for scripts",
    }

    def add_magic_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add(
            "target",
            nargs="?",
            help="model to serve (NAME@ALIAS, NAME/VERSION, a URI) or a deployment's name",
        )
        _serve_options(parser)
        add("--canary", metavar="MODEL", help="send --weight percent of traffic to MODEL")
        _weight(parser)
        add("--promote", action="store_true", help="blue-green: the canary becomes primary")
        _decision_options(parser)
        add("--rollback", action="store_true", help="back to the previous primary")
        add("--stop", action="store_true", help="stop the deployment")
        add("--status", action="store_true", help="the deployment's models, traffic and health")
        add("--list", action="store_true", help="deployments, versions, traffic, health")
        add("--batch", metavar="INPUT", help="score a CSV/Parquet file instead of serving")
        add("--output", metavar="OUTPUT", help="where --batch writes predictions")
        _no_log(parser)

    def add_subcommands(self, parser: Arguments) -> None:
        q = parser.subcommand("start", "serve a model in a detached server on 127.0.0.1", start)
        q.add_argument("target", metavar="MODEL", help="NAME@ALIAS, NAME/VERSION or a URI")
        _serve_options(q)
        _no_log(q)
        q = parser.subcommand(
            "canary", "send WEIGHT percent of a deployment's traffic to MODEL", canary
        )
        q.add_argument("name")
        q.add_argument("canary", metavar="MODEL")
        _weight(q)
        for verb, text in (
            ("promote", "blue-green: the canary becomes primary"),
            ("rollback", "back to the previous primary"),
            ("stop", "stop a deployment"),
            ("status", "one deployment's models, traffic and health"),
        ):
            q = parser.subcommand(verb, text, on_deployment, action=verb)
            q.add_argument("name")
            if verb == "promote":
                _decision_options(q)
            if verb == "status":
                json_option(q)
        q = parser.subcommand(
            "list", "deployments, versions, traffic split, health, uptime", deployments
        )
        json_option(q)
        q = parser.subcommand("batch", "score a CSV/Parquet file with lineage columns", batch)
        q.add_argument("target", metavar="MODEL")
        q.add_argument("batch", metavar="input")
        q.add_argument("output")

    def run_magic(self, args: argparse.Namespace, context: Context) -> Any:
        modes = [getattr(args, mode) for mode in _MODES]
        if sum(bool(m) for m in modes) > 1:
            raise UsageError(
                "Use one of --canary, --promote, --rollback, --stop, --status, --list, --batch"
            )
        if not args.list and not args.target:
            raise UsageError("Say which model (NAME@ALIAS) or deployment; or use --list")
        if args.when and not args.promote:
            raise UsageError("--if decides a promotion: use it with --promote")
        if args.list:
            return deployments(args, context)
        if args.batch:
            if not args.output:
                raise UsageError("--batch needs --output FILE (.csv or .parquet)")
            return batch(args, context)
        if args.canary:
            args.name = args.target
            return canary(args, context)
        for mode in ("promote", "rollback", "stop", "status"):
            if getattr(args, mode):
                args.name, args.action = args.target, mode
                return on_deployment(args, context)
        return start(args, context)
