"""``%%track``: run a cell and record it as an MLflow run (a cell magic only).

The command line's counterpart is ``jupyter-mlops execute``, which runs a whole notebook
whose ``%%track`` cells record themselves.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import EXPERIMENT, tags, variable_names
from jupyter_mlops.errors import UsageError

#: The (kind, subject) of each reproducibility risk this kernel has warned about.
WARNED: set[tuple[str, str]] = set()


def warn_risks(tags: Mapping[str, str]) -> None:
    """One line on stderr per risk the run records that this kernel has not warned about
    yet (the run card lists them all, every time)."""
    from jupyter_mlops.tracking.risks import recorded_risks

    for risk in recorded_risks(tags):
        if (risk.kind, risk.subject) not in WARNED:
            WARNED.add((risk.kind, risk.subject))
            print(f"jupyter-mlops: this run may not reproduce: {risk.message}", file=sys.stderr)


class Track(Command):
    name = "track"
    magic = "track"
    cell = True
    cli = False
    doc = """Run the cell and record it as an MLflow run.

        Params are the cell's literal assignments and the fitted models' hyperparameters;
        metrics are numeric results with metric-like names (acc, f1, rmse, val_*, ...);
        the fitted predictors are logged in MLflow's format, with a signature from the data
        their fit received (transformers fitted on their own are listed as skipped). A
        hyperparameter search logs its best estimator, best params, best CV score and
        mlops/cv_results.csv. Example::

            %%track --experiment iris --data data/iris.csv
            model = RandomForestClassifier(n_estimators=100).fit(X_train, y_train)
            acc = accuracy_score(y_test, model.predict(X_test))
        """

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add(
            "-e",
            "--experiment",
            type=EXPERIMENT,
            help="MLflow experiment (default: the notebook's)",
        )
        add("-n", "--name", help="run name (default: MLflow picks one)")
        add(
            "--data",
            action="append",
            metavar="PATH",
            help="file or folder the cell reads; snapshotted with DVC (repeatable)",
        )
        add("--params", action="append", metavar="NAMES", help="extra variables to log as params")
        add("--metrics", action="append", metavar="NAMES", help="extra variables to log as metrics")
        add("--model", metavar="NAME", help="log only this variable as the model")
        add("--tag", action="append", metavar="KEY=VALUE", help="run tag (repeatable)")
        add("--no-model", action="store_true", help="do not log models")
        add(
            "--search-runs",
            action="store_true",
            help="log one child run per candidate of a hyperparameter search",
        )
        add(
            "--quiet",
            action=argparse.BooleanOptionalAction,
            help="do not show the run card",
        )

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        """Run ``args.cell`` in the kernel inside a tracked run; its last value is returned."""
        if args.no_model and args.model:
            raise UsageError("--model and --no-model contradict each other")
        params, metrics, run_tags = (
            variable_names(args.params),
            variable_names(args.metrics),
            tags(args.tag),
        )
        from jupyter_mlops._util.urls import redact
        from jupyter_mlops.tracking import track_code

        cells = context.cells
        assert cells is not None and context.namespace is not None
        source = cells.transform(args.cell)

        def execute(transform: Any = None) -> Any:
            try:
                return cells.execute(source, transform)
            except BaseException as exc:
                context.cell_error = exc
                raise

        def show(run: Any) -> None:
            if run.status == "BUFFERED":  # said even with --quiet: the run is not in MLflow
                print(
                    f"jupyter-mlops: the tracking store {redact(run.config.tracking_uri)} is "
                    f"unreachable ({run.offline}). The cell ran; its run is buffered as "
                    f"{run.pending_id}. Run `%mlops retry` when the store is back.",
                    file=sys.stderr,
                )
            if not args.quiet:
                context.say(run.card())
            warn_risks(run.tags)

        result = track_code(
            source,
            context.namespace,
            execute,
            experiment=args.experiment,
            name=args.name,
            data=args.data or [],
            params=params,
            metrics=metrics,
            model=args.model,
            log_models=not args.no_model,
            search_runs=args.search_runs,
            tags=run_tags,
            raw_source=args.cell,
            on_run=show,
            live=cells.show_live,
            history=getattr(args, "history", None),
            track_args=getattr(args, "line", None),
        )
        return result.value
