"""Data drift: a deployment's recent inputs against its model's training data, or two tables.

In a notebook, ``--reference``/``--current`` may also name DataFrame variables of the
kernel, and the report shows as a widget; the command line reads files and prints it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, ClassVar

from jupyter_mlops.commands.base import Arguments, Command, Context, Face
from jupyter_mlops.commands.options import THRESHOLD, comma_list, thresholds
from jupyter_mlops.errors import MonitoringError, UsageError


class Drift(Command):
    name = "drift"
    magic = "drift"
    help = "drift of a deployment's inputs against its training data, or of two files"
    doc = """Data drift: a deployment's recent inputs against its model's training data, or
        any two DataFrames. KS, PSI and Wasserstein per numeric feature, chi-squared and
        PSI per categorical one, the prediction's own shift, and a dataset verdict.

        Examples::

            %drift iris-prod
            %drift iris-prod --last 1h --reference data/iris.csv
            %drift --reference ref_df --current cur_df
            %drift iris-prod --threshold share=0.3 --log
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--json": "command line only: print the report as JSON",
        "--fail-on-drift": "command line only: exit status 1 on dataset drift, for CI",
        "--no-widget": "magic only: return the report instead of its widget",
    }

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        magic = parser.magic
        source, metavar = (" or DataFrame variable", "PATH|VARIABLE") if magic else ("", "PATH")
        add("deployment", nargs="?", help="deployment whose logged inputs to compare")
        add("--last", default="1h", help="window of the deployment's inputs (default 1h)")
        add(
            "--reference",
            metavar=metavar,
            help=f"CSV/Parquet path{source} (default: the model's training data)",
        )
        add("--current", metavar=metavar, help=f"CSV/Parquet path{source} (without a deployment)")
        add(
            "--model",
            default="primary",
            capitalize=False,
            help="primary, canary or a version number",
        )
        add("--features", action="append", metavar="NAMES", help="only these columns")
        add("--categorical", action="append", metavar="NAMES", help="treat as categories")
        tables = "DataFrames" if magic else "files"
        add("--prediction", metavar="COLUMN", help=f"prediction column of the {tables}")
        add(
            "--threshold",
            action="append",
            type=THRESHOLD,
            metavar="NAME=VALUE",
            capitalize=False,
            help="e.g. psi_drift=0.2, ks_alpha=0.01, share=0.3 (repeatable)",
        )
        if not magic:
            add("--json", action="store_true", help="print as JSON")
        add("--html", metavar="OUT", help="also write the report as HTML")
        add("--log", action="store_true", help="also log the report to MLflow")
        if magic:
            add("--no-widget", action="store_true", help="return the report itself")
        else:
            add("--fail-on-drift", action="store_true", help="exit 1 on dataset drift")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops import monitoring

        options: dict[str, Any] = dict(thresholds(args.threshold))
        if args.features:
            options["features"] = comma_list(args.features)
        if args.categorical:
            options["categorical"] = comma_list(args.categorical)
        namespace = context.namespace or {}

        def table(value: str | None) -> Any:
            if value is None or context.namespace is None:
                return value
            if value.isidentifier() and value in namespace:
                return namespace[value]
            if value.isidentifier() and "." not in value:
                raise UsageError(f"No variable or file named {value!r}")
            return value

        try:
            if args.deployment:
                report = monitoring.drift_for_deployment(
                    args.deployment,
                    last=args.last,
                    reference=table(args.reference),
                    model=args.model,
                    **options,
                )
            else:
                if args.reference is None or args.current is None:
                    raise UsageError("Give a deployment, or both --reference and --current")
                ref, cur = table(args.reference), table(args.current)
                ref = monitoring.read_table(ref) if isinstance(ref, str) else ref
                cur = monitoring.read_table(cur) if isinstance(cur, str) else cur
                report = monitoring.drift(ref, cur, prediction=args.prediction, **options)
        except ValueError as exc:  # e.g. a feature the tables do not have
            raise MonitoringError(str(exc)) from None
        if args.html:
            page = f"<html><meta charset='utf-8'><body>{report.to_html()}</body></html>"
            Path(args.html).write_text(page)
        if args.log:
            context.say(f"Drift report logged to MLflow run {report.log_to_mlflow()}")
        if context.face is Face.CLI or args.no_widget:
            return report
        from jupyter_mlops.widgets.drift import DriftWidget

        return DriftWidget(report)

    def render(self, args: argparse.Namespace, result: Any) -> Any:
        return json.dumps(result.to_dict(), indent=2) if args.json else result

    def exit_code(self, args: argparse.Namespace, result: Any) -> int:
        return 1 if args.fail_on_drift and result.dataset_drift else 0
