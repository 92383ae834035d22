"""Monitoring of a deployment: live figures, alert rules, checks for cron and CI.

The magic shows a refreshing widget and takes its actions as flags (``--alert``,
``--check``, ``--figures``, ``--performance``); the command line has
``monitor check|figures|performance|rules``.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, ClassVar

from jupyter_mlops.commands.base import Arguments, Context, ModalCommand
from jupyter_mlops.commands.options import COOLDOWN, INTERVAL, json_option
from jupyter_mlops.errors import EXIT_ERROR, EXIT_OK, EXIT_UNJUDGED


def _deployment(parser: Arguments, help: str | None = None) -> None:
    parser.add_argument("deployment", help=help)


def _last(parser: Arguments) -> None:
    parser.add_argument(
        "--last", default="1h", help="window of the figures: 30m, 1h, 2d... (default 1h)"
    )


def _rule_options(parser: Arguments) -> None:
    """Stored alert rules: added and removed (``--alert`` in the magic, ``--add`` here)."""
    add_flag, remove_flag = ("--alert", "--remove-alert") if parser.magic else ("--add", "--remove")
    parser.add_argument(
        add_flag,
        dest="add",
        action="append",
        metavar="RULE",
        help='alert rule over the figures, e.g. "p99_ms > 50" (repeatable; stored)',
    )
    if not parser.magic:  # each face keeps its order of the options
        _remove(parser, remove_flag)
    added = "new --alert" if parser.magic else "added"
    parser.add_argument("--action", metavar="KIND:ARG", help=f"action of the {added} rules")
    parser.add_argument(
        "--cooldown", type=COOLDOWN, default=0.0, help="seconds between notifications (>= 0)"
    )
    parser.add_argument(
        "--webhook", metavar="URL", help='POST firing alerts to URL ("" removes it)'
    )
    if parser.magic:
        _remove(parser, remove_flag)


def _remove(parser: Arguments, flag: str) -> None:
    parser.add_argument(
        flag, dest="remove", action="append", metavar="RULE", help="remove a stored rule"
    )


def _no_notify(parser: Arguments) -> None:
    scope = "With --check" if parser.magic else None
    parser.add_argument(
        "--no-notify", action="store_true", scope=scope, help="record only: no webhook, no action"
    )


def _no_drift(parser: Arguments) -> None:
    scope = "With --figures" if parser.magic else None
    parser.add_argument(
        "--no-drift", action="store_true", scope=scope, help="skip drift_share/n_drifted"
    )


def _performance_options(parser: Arguments) -> None:
    """The performance view's options (``--performance`` in the magic, a subcommand here)."""
    scope = "With --performance" if parser.magic else None
    parser.add_argument(
        "--every", metavar="WINDOW", scope=scope, help="one row per time window: 10m, 1h..."
    )
    parser.add_argument(
        "--business",
        action="append",
        metavar="METRIC",
        help='business metric "NAME = EXPR" over tp fp tn fn n correct and mean/sum/rate of '
        'outcome fields, e.g. "revenue = 12*tp - 3*fp" (repeatable; stored: alert rules '
        "can use NAME and NAME_per_1k)",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        scope=scope,
        help="also the accuracy estimated from predicted probabilities, before labels arrive",
    )


def performance(args: argparse.Namespace, context: Context) -> Any:
    """Store ``--business`` metrics, then the performance report of the window."""
    from jupyter_mlops import monitoring

    if args.business:
        stored = monitoring.set_business(args.deployment, args.business)
        context.say(f"{len(stored)} business metric(s) for {args.deployment}")
    return monitoring.performance(
        args.deployment, last=args.last, every=args.every, estimate=args.estimate
    )


def update_rules(args: argparse.Namespace) -> Any:
    """Remove and add stored rules as asked; the rules now stored, or None if none added."""
    from jupyter_mlops import monitoring

    if args.remove:
        monitoring.remove_rules(args.deployment, args.remove)
    if not args.add and args.webhook is None:
        return None
    rules = [
        monitoring.AlertRule(r, action=args.action, cooldown_s=args.cooldown)
        for r in args.add or []
    ]
    return monitoring.set_rules(args.deployment, rules, webhook=args.webhook)


def check(args: argparse.Namespace, rules: list[str] | None, webhook: str | None) -> Any:
    from jupyter_mlops import monitoring

    return monitoring.check(
        args.deployment, rules, last=args.last, webhook=webhook, notify=not args.no_notify
    )


def figures(args: argparse.Namespace) -> Any:
    from jupyter_mlops import monitoring

    return monitoring.figures(args.deployment, last=args.last, drift=not args.no_drift)


def _check(args: argparse.Namespace, context: Context) -> Any:
    return check(args, args.rule or None, args.webhook)


def _figures(args: argparse.Namespace, context: Context) -> Any:
    return figures(args)


def _performance(args: argparse.Namespace, context: Context) -> Any:
    return performance(args, context)


def _rules(args: argparse.Namespace, context: Context) -> Any:
    from jupyter_mlops import monitoring
    from jupyter_mlops.present import rules_text

    stored = update_rules(args) or monitoring.get_rules(args.deployment)
    if args.json:
        from jupyter_mlops.commands import output

        return output.alert_rules(args.deployment, stored)
    return rules_text(stored)


class Monitor(ModalCommand):
    name = "monitor"
    magic = "monitor"
    help = "monitored figures and alert rules of a deployment"
    doc = """Live monitoring of a deployment, and its alert rules.

        Requests/s, p50/p95/p99 latency and error rate per model version (primary and
        canary side by side), the prediction distribution and each feature's drift status,
        refreshing while shown. ``--alert`` rules are stored under .mlops/ and evaluated
        by ``jupyter-mlops monitor check`` too. Examples::

            %monitor iris-prod
            %monitor iris-prod --alert "drift_share > 0.3" --alert "p99_ms > 50"
            %monitor iris-prod --alert "drift_share > 0.3" --action pipeline:retrain.yaml
            %monitor iris-prod --webhook https://hooks.example.com/mlops --check
            %monitor iris-prod --performance --every 10m
            %monitor iris-prod --business "revenue = 12*tp - 3*fp" --alert "revenue_per_1k < 500"

        ``--performance`` joins the logged predictions to their outcomes (``POST /feedback``,
        ``record_outcomes``): accuracy, F1, ROC AUC, log loss (or RMSE, MAE, R2), label
        coverage and delay per model version and window, and the business metrics.
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--interval": "magic only: how often the widget refreshes",
        "--check": "magic mode; command line: `monitor check`",
        "--figures": "magic mode; command line: `monitor figures`",
        "--performance": "magic mode; command line: `monitor performance`",
        "--alert": "magic; command line: `monitor rules --add`",
        "--remove-alert": "magic; command line: `monitor rules --remove`",
        "--add": "command line (`monitor rules --add`); magic: `--alert`",
        "--remove": "command line (`monitor rules --remove`); magic: `--remove-alert`",
        "--rule": "command line only: check these rules instead of the stored ones",
        "--strict": "command line only: exit status 3 when a rule is unknown",
        "--json": "command line only: print as JSON",
    }

    def add_magic_arguments(self, parser: Arguments) -> None:
        _deployment(parser, "deployment to monitor")
        _last(parser)
        add = parser.add_argument
        add("--interval", type=INTERVAL, default=5.0, help="seconds between refreshes (> 0)")
        _rule_options(parser)
        add("--check", action="store_true", help="evaluate the stored rules now, no widget")
        _no_notify(parser)
        add("--figures", action="store_true", help="show the figures once, no widget")
        _no_drift(parser)
        add(
            "--performance",
            action="store_true",
            help="model quality from outcomes per version and window, no widget",
        )
        _performance_options(parser)

    def add_subcommands(self, parser: Arguments) -> None:
        c = parser.subcommand(
            "check", "evaluate the alert rules (exit 1 if one fires): for cron and CI", _check
        )
        _deployment(c)
        _last(c)
        c.add_argument("--rule", action="append", help="rule to check instead of the stored ones")
        c.add_argument("--webhook", help="POST firing alerts here instead of the stored URL")
        _no_notify(c)
        c.add_argument("--strict", action="store_true", help="exit 3 when a rule is unknown")
        c.add_argument("--json", action="store_true", help="print as JSON")

        c = parser.subcommand("figures", "print the monitored figures", _figures)
        _deployment(c)
        _last(c)
        _no_drift(c)
        c.add_argument("--json", action="store_true")

        c = parser.subcommand(
            "performance",
            "model quality from outcomes per version and window, and business metrics",
            _performance,
        )
        _deployment(c)
        _last(c)
        _performance_options(c)
        c.add_argument("--json", action="store_true", help="print the report as JSON")

        c = parser.subcommand("rules", "list, add or remove the stored alert rules", _rules)
        _deployment(c)
        _rule_options(c)
        json_option(c, "print the rules now stored as JSON")

    def run_magic(self, args: argparse.Namespace, context: Context) -> Any:
        stored = update_rules(args)
        if stored is not None:
            hook = f"; webhook {stored.webhook}" if stored.webhook else ""
            context.say(f"{len(stored.rules)} alert rule(s) for {args.deployment}{hook}")
        if args.check:
            return check(args, None, None)
        if args.figures:
            return figures(args)
        if args.performance or args.business or args.estimate:
            from jupyter_mlops.widgets.performance import performance_view

            # per version over time, the estimate beside the realised value; .report holds
            # the numbers (rows, totals, figures())
            return performance_view(performance(args, context))
        from jupyter_mlops.serving import get_deployment
        from jupyter_mlops.widgets.monitor import monitor

        get_deployment(args.deployment)  # an unknown one is an error, not a widget showing it
        return monitor(args.deployment, last=args.last, interval=args.interval)

    def render(self, args: argparse.Namespace, result: Any) -> Any:
        if args.handler is _performance:
            if args.json:
                return json.dumps(result.to_dict(), indent=2, default=str)
            from jupyter_mlops.present import performance_text

            return performance_text(result)
        if not getattr(args, "json", False) or args.handler is _rules:
            return result
        if args.handler is _check:
            return json.dumps(result.to_dict(), indent=2, default=str)
        return json.dumps({"figures": dict(result), "notes": result.notes}, indent=2)

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        if args.handler is not _check:
            return 0
        if result.firing:
            return EXIT_ERROR
        return EXIT_UNJUDGED if args.strict and result.unknown else EXIT_OK
