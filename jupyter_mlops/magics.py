"""IPython magics: parse arguments, call the public API, display the result."""

from __future__ import annotations

import ast
import sys
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

from jupyter_mlops._util.urls import redact
from jupyter_mlops.errors import MlopsError


def _names(values: list[str] | None) -> list[str]:
    """``--params a,b --params c`` -> ["a", "b", "c"]."""
    out: list[str] = []
    for value in values or []:
        out.extend(v.strip() for v in value.split(",") if v.strip())
    for name in out:
        if not name.isidentifier():
            raise UsageError(f"{name!r} is not a variable name")
    return out


def _tags(values: list[str] | None) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--tag expects key=value, got {item!r}")
        tags[key.strip()] = value.strip()
    return tags


def _unquote(value: Any) -> Any:
    """IPython splits magic lines without removing quotes: '"a >= 1"' -> 'a >= 1'."""
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _names_any(values: list[str]) -> list[str]:
    """``--features a,b --features c`` -> ["a", "b", "c"] (column names need not be
    identifiers, unlike magics._names)."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


_ = _names  # the existing helper is for variable names only


def _parse(magic: Any, line: str) -> Any:
    try:
        args = parse_argstring(magic, line)
    except UsageError:
        raise
    except SystemExit as exc:  # argparse exits on --help or bad input in some versions
        raise UsageError(f"Invalid arguments: {line!r}") from exc
    for key, value in vars(args).items():
        setattr(args, key, _unquote(value))
    return args


@magics_class
class MlopsMagics(Magics):
    """%%track, %mlops."""

    @magic_arguments()
    @argument("-e", "--experiment", help="MLflow experiment (default: the notebook's)")
    @argument("-n", "--name", help="Run name (default: MLflow picks one)")
    @argument(
        "--data",
        action="append",
        metavar="PATH",
        help="File or folder the cell reads; snapshotted with DVC (repeatable)",
    )
    @argument("--params", action="append", metavar="NAMES", help="Extra variables to log as params")
    @argument(
        "--metrics", action="append", metavar="NAMES", help="Extra variables to log as metrics"
    )
    @argument("--model", metavar="NAME", help="Log only this variable as the model")
    @argument("--tag", action="append", metavar="KEY=VALUE", help="Run tag (repeatable)")
    @argument("--no-model", action="store_true", help="Do not log models")
    @argument("--quiet", action="store_true", help="Do not show the run card")
    @cell_magic
    def track(self, line: str, cell: str) -> Any:
        """Run the cell and record it as an MLflow run.

        Params are the cell's literal assignments and the fitted models' hyperparameters;
        metrics are numeric results with metric-like names (acc, f1, rmse, val_*, ...);
        fitted scikit-learn models are logged in MLflow's format. Example::

            %%track --experiment iris --data data/iris.csv
            model = RandomForestClassifier(n_estimators=100).fit(X_train, y_train)
            acc = accuracy_score(y_test, model.predict(X_test))
        """
        args = _parse(self.track, line)
        if args.no_model and args.model:
            raise UsageError("--model and --no-model contradict each other")
        params, metrics, tags = _names(args.params), _names(args.metrics), _tags(args.tag)
        from jupyter_mlops.tracking import track_code

        shell = self.shell
        assert shell is not None
        source = shell.transform_cell(cell)
        started = False

        def execute() -> Any:
            nonlocal started
            started = True
            return self._execute(source)

        def show(run: Any) -> None:
            if run.status == "BUFFERED":  # said even with --quiet: the run is not in MLflow
                print(
                    f"jupyter-mlops: the tracking store {redact(run.config.tracking_uri)} is "
                    f"unreachable ({run.offline}). The cell ran; its run is buffered as "
                    f"{run.pending_id}. Run `%mlops retry` when the store is back.",
                    file=sys.stderr,
                )
            if not args.quiet:
                display(run.card())

        try:
            result = track_code(
                source,
                shell.user_ns,
                execute,
                experiment=args.experiment,
                name=args.name,
                data=args.data or [],
                params=params,
                metrics=metrics,
                model=args.model,
                log_models=not args.no_model,
                tags=tags,
                raw_source=cell,
                on_run=show,
            )
        except MlopsError as exc:
            if not started:  # nothing ran: report like any usage problem
                raise UsageError(str(exc)) from None
            raise
        return result.value

    def _execute(self, source: str) -> Any:
        """Execute transformed cell code in the user namespace, like IPython would.

        The last expression's value is returned so it shows as the cell's output.
        """
        shell = self.shell
        assert shell is not None
        tree = shell.compile.ast_parse(source)
        tree = shell.transform_ast(tree)
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        # Registering the source lets tracebacks show the cell's lines.
        filename = shell.compile.cache(source, shell.execution_count, raw_code=source)
        exec(shell.compile(tree, filename, "exec"), shell.user_global_ns, shell.user_ns)
        if last is None:
            return None
        return eval(shell.compile(last, filename, "eval"), shell.user_global_ns, shell.user_ns)

    @magic_arguments()
    @argument("run", nargs="?", default="last", help="Run id or prefix (default: last)")
    @argument("-n", "--name", help="Registered model name")
    @argument("--alias", action="append", default=[], help="Alias to set (repeatable)")
    @argument("--gate", help='Bar over the run\'s metrics, e.g. "accuracy >= 0.9"')
    @argument("--against", metavar="ALIAS", help="Register only if it beats this alias")
    @argument("--metric", help="Metric for --against")
    @argument("--min-delta", type=float, default=0.0, help="Margin required by --against")
    @argument("--lower-is-better", action="store_true", default=None, help="For --against")
    @argument("--model", help="Which model of the run, if it logged several")
    @argument("--promote", metavar="NAME/VERSION", help="Point --alias at this version")
    @argument("--rollback", metavar="NAME", help="Move --alias back to its previous holder")
    @argument(
        "--expect",
        metavar="VERSION",
        help="With --promote: refuse unless --alias still points at VERSION ('none': unset)",
    )
    @argument("--force", action="store_true", help="With --promote: overwrite a newer holder")
    @argument("--history", metavar="NAME", help="Alias history of a model")
    @argument("--list", action="store_true", help="Registered models, versions, aliases")
    @argument("--lineage", metavar="NAME@ALIAS", help="Trace a version to code and data")
    @argument(
        "--package",
        metavar="DIR",
        help="Write a Docker build context serving the version (with --name NAME@ALIAS|/N)",
    )
    @line_magic
    def register(self, line: str) -> Any:
        """Register a tracked run's model in MLflow's registry, with gates and aliases.

        Examples::

            %register --name iris-rf --alias challenger --gate "accuracy >= 0.9"
            %register --name iris-rf --against champion --metric accuracy --alias champion
            %register --promote iris-rf/4 --alias champion
            %register --rollback iris-rf --alias champion
            %register --history iris-rf
            %register --list
            %register --lineage iris-rf@champion
            %register --name iris-rf@champion --package build/iris-rf
        """
        args = _parse(self.register, line)
        import jupyter_mlops.registry as registry
        from jupyter_mlops import status

        context = self._context()
        try:
            if args.list:
                return status.models_table()
            if args.history:
                return status.history_table(args.history)
            if args.lineage:
                return registry.lineage(args.lineage)
            if args.package:
                from jupyter_mlops.packaging import package

                if not args.name:
                    raise UsageError("--package needs --name NAME@ALIAS or NAME/VERSION")
                return package(args.name, args.package)
            if args.promote or args.rollback:
                if len(args.alias) != 1:
                    raise UsageError("--promote and --rollback need exactly one --alias")
                if args.promote:
                    event = registry.promote(
                        args.promote,
                        args.alias[0],
                        gate=args.gate,
                        context=context,
                        force=args.force,
                        **registry.expectation(args.expect),
                    )
                else:
                    event = registry.rollback(args.rollback, args.alias[0], context=context)
                return status.event_text(event)
            if not args.name:
                raise UsageError("Say which model to register into: --name NAME")
            return registry.register(
                args.run,
                name=args.name,
                aliases=args.alias,
                gate=args.gate,
                against=args.against,
                metric=args.metric,
                min_delta=args.min_delta,
                lower_is_better=args.lower_is_better,
                model=args.model,
                context=context,
            )
        except MlopsError as exc:
            raise UsageError(str(exc)) from None

    def _context(self) -> dict[str, Any]:
        """Where a registry action was taken from: the notebook and the cell."""
        from jupyter_mlops.config import load_config
        from jupyter_mlops.tracking.environment import notebook_path

        namespace = self.shell.user_ns if self.shell else {}
        return {"notebook": notebook_path(namespace, load_config().root)}

    @magic_arguments()
    @argument("deployment", help="Deployment to monitor")
    @argument("--last", default="1h", help="Window of the figures: 30m, 1h, 2d... (default 1h)")
    @argument("--interval", type=float, default=5.0, help="Seconds between refreshes")
    @argument(
        "--alert",
        action="append",
        metavar="RULE",
        help='Alert rule over the figures, e.g. "p99_ms > 50" (repeatable; stored)',
    )
    @argument("--action", metavar="KIND:ARG", help="Action of the new --alert rules")
    @argument("--cooldown", type=float, default=0.0, help="Seconds between notifications")
    @argument("--webhook", metavar="URL", help='POST firing alerts to URL ("" removes it)')
    @argument("--remove-alert", action="append", metavar="RULE", help="Remove a stored rule")
    @argument("--check", action="store_true", help="Evaluate the stored rules now, no widget")
    @argument("--figures", action="store_true", help="Show the figures once, no widget")
    @line_magic
    def monitor(self, line: str) -> Any:
        """Live monitoring of a deployment, and its alert rules.

        Requests/s, p50/p95/p99 latency and error rate per model version (primary and
        canary side by side), the prediction distribution and each feature's drift status,
        refreshing while shown. ``--alert`` rules are stored under .mlops/ and evaluated
        by ``jupyter-mlops monitor check`` too. Examples::

            %monitor iris-prod
            %monitor iris-prod --alert "drift_share > 0.3" --alert "p99_ms > 50"
            %monitor iris-prod --alert "drift_share > 0.3" --action pipeline:retrain.yaml
            %monitor iris-prod --webhook https://hooks.example.com/mlops --check
        """
        args = _parse(self.monitor, line)
        from jupyter_mlops import monitoring

        try:
            if args.remove_alert:
                monitoring.remove_rules(args.deployment, args.remove_alert)
            if args.alert or args.webhook is not None:
                rules = [
                    monitoring.AlertRule(r, action=args.action, cooldown_s=args.cooldown)
                    for r in args.alert or []
                ]
                stored = monitoring.set_rules(args.deployment, rules, webhook=args.webhook)
                hook = f"; webhook {stored.webhook}" if stored.webhook else ""
                display(f"{len(stored.rules)} alert rule(s) for {args.deployment}{hook}")
            if args.check:
                return monitoring.check(args.deployment, last=args.last)
            if args.figures:
                return monitoring.figures(args.deployment, last=args.last)
            from jupyter_mlops.widgets.monitor import monitor

            return monitor(args.deployment, last=args.last, interval=args.interval)
        except MlopsError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("deployment", nargs="?", help="Deployment whose logged inputs to compare")
    @argument("--last", default="1h", help="Window of the deployment's inputs (default 1h)")
    @argument(
        "--reference",
        metavar="PATH|VARIABLE",
        help="CSV/Parquet path or DataFrame variable (default: the model's training data)",
    )
    @argument("--current", metavar="PATH|VARIABLE", help="DataFrame variable or file")
    @argument("--model", default="primary", help="primary, canary or a version number")
    @argument("--features", action="append", metavar="NAMES", help="Only these columns")
    @argument("--categorical", action="append", metavar="NAMES", help="Treat as categories")
    @argument("--prediction", metavar="COLUMN", help="Prediction column of the DataFrames")
    @argument(
        "--threshold",
        action="append",
        metavar="NAME=VALUE",
        help="e.g. psi_drift=0.2, ks_alpha=0.01, share=0.3 (repeatable)",
    )
    @argument("--log", action="store_true", help="Also log the report to MLflow")
    @argument("--no-widget", action="store_true", help="Return the report itself")
    @line_magic
    def drift(self, line: str) -> Any:
        """Data drift: a deployment's recent inputs against its model's training data, or
        any two DataFrames. KS, PSI and Wasserstein per numeric feature, chi-squared and
        PSI per categorical one, the prediction's own shift, and a dataset verdict.

        Examples::

            %drift iris-prod
            %drift iris-prod --last 1h --reference data/iris.csv
            %drift --reference ref_df --current cur_df
            %drift iris-prod --threshold share=0.3 --log
        """
        args = _parse(self.drift, line)
        from jupyter_mlops import monitoring

        namespace = self.shell.user_ns if self.shell else {}

        def table(value: str | None) -> Any:
            if value is None:
                return None
            if value.isidentifier() and value in namespace:
                return namespace[value]
            if value.isidentifier() and "." not in value:
                raise UsageError(f"No variable or file named {value!r}")
            return value

        options: dict[str, Any] = {}
        for item in args.threshold or []:
            key, sep, value = item.partition("=")
            try:
                number = int if key.strip() in ("bins", "min_samples") else float
                options[key.strip()] = number(value)
            except ValueError:
                sep = ""
            if not sep:
                raise UsageError(f"--threshold expects NAME=NUMBER, got {item!r}")
        if args.features:
            options["features"] = _names_any(args.features)
        if args.categorical:
            options["categorical"] = _names_any(args.categorical)
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
            if args.log:
                display(f"Drift report logged to MLflow run {report.log_to_mlflow()}")
            if args.no_widget:
                return report
            from jupyter_mlops.widgets.drift import DriftWidget

            return DriftWidget(report)
        except (MlopsError, ValueError) as exc:
            raise UsageError(str(exc)) from None

    # ---- to here ------------------------------------------------------------------------

    @magic_arguments()
    @argument("action", choices=["parameterize", "new", "run", "history"], help="What to do")
    @argument("target", nargs="?", help="notebook (parameterize, new) or pipeline.yaml (run)")
    @argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="run: override (NAME or STEP.NAME, repeatable); a,b,c sweeps over the values",
    )
    @argument("--grid", metavar="FILE", help="run: sweep over a YAML/JSON grid file")
    @argument("--executor", help="run: local (default), threads or dask")
    @argument("--scheduler", help="run: Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    @argument("--workers", type=int, help="run: steps at once (default: CPUs)")
    @argument("--step", action="append", help="run: only this step (repeatable)")
    @argument("--cell", type=int, help="parameterize: index of the cell to tag")
    @argument("-o", "--output", default="pipeline.yaml", help="new: the file to write")
    @argument("--overwrite", action="store_true", help="new: replace an existing file")
    @argument("--model", help="history: retraining decisions of this model only")
    @argument("-n", "--limit", type=int, default=20, help="history: how many entries")
    @line_magic
    def pipeline(self, line: str) -> Any:
        """Notebooks as papermill pipelines: parameterize, write, run, sweep, look back.

        Examples::

            %pipeline parameterize                      # tag this notebook's parameters cell
            %pipeline parameterize notebooks/train.ipynb
            %pipeline new -o pipeline.yaml              # a starter from this notebook
            %pipeline run pipeline.yaml -p n_estimators=200 -p data=data/new.csv
            %pipeline run pipeline.yaml -p n_estimators=50,100,200 --executor dask \\
                --scheduler tcp://10.0.0.5:8786
            %pipeline history
        """
        args = _parse(self.pipeline, line)
        from jupyter_mlops import pipelines

        try:
            if args.action in ("parameterize", "new"):
                notebook = args.target
                if notebook is None:
                    from jupyter_mlops.config import load_config

                    current = self._context()["notebook"]
                    if not current:
                        raise UsageError(
                            f"%pipeline {args.action}: which notebook? This kernel does not "
                            "know its notebook's path; give it."
                        )
                    notebook = str(load_config().root / current)
                if args.action == "parameterize":
                    return pipelines.parameterize(notebook, cell=args.cell)
                path = pipelines.new_pipeline(notebook, args.output, overwrite=args.overwrite)
                return f"Wrote {path}; edit it, then: %pipeline run {path}"
            if args.action == "run":
                if not args.target:
                    raise UsageError("%pipeline run PIPELINE.yaml [-p name=value ...]")
                return pipelines.launch(
                    args.target,
                    args.param,
                    grid=args.grid,
                    executor=args.executor,
                    scheduler=args.scheduler,
                    workers=args.workers,
                    steps=args.step,
                )
            return pipelines.history(model=args.model, limit=args.limit)
        except MlopsError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument(
        "target",
        nargs="?",
        help="Model to serve (NAME@ALIAS, NAME/VERSION, a URI) or a deployment's name",
    )
    @argument("--name", help="Deployment name (default: from the model)")
    @argument("--port", type=int, help="Port (default: a free one)")
    @argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1)")
    @argument("--workers", type=int, default=1, help="Server worker processes")
    @argument("--token", help="Bearer token required by every endpoint but /health")
    @argument("--canary", metavar="MODEL", help="Send --weight percent of traffic to MODEL")
    @argument("--weight", type=float, default=10.0, help="Canary share in percent (default 10)")
    @argument("--promote", action="store_true", help="Blue-green: the canary becomes primary")
    @argument("--rollback", action="store_true", help="Back to the previous primary")
    @argument("--stop", action="store_true", help="Stop the deployment")
    @argument("--list", action="store_true", help="Deployments, versions, traffic, health")
    @argument("--batch", metavar="INPUT", help="Score a CSV/Parquet file instead of serving")
    @argument("--output", metavar="OUTPUT", help="Where --batch writes predictions")
    @argument("--no-log", action="store_true", help="Do not keep a prediction log")
    @line_magic
    def deploy(self, line: str) -> Any:
        """Serve registered models as a REST API on 127.0.0.1, with canary and blue-green.

        Examples::

            %deploy iris-rf@champion
            %deploy iris-rf@champion --port 8100 --name iris-prod --workers 2
            %deploy iris-prod --canary iris-rf@challenger --weight 10
            %deploy iris-prod --promote
            %deploy iris-prod --rollback
            %deploy --list
            %deploy iris-prod --stop
            %deploy iris-rf@champion --batch data/new.csv --output preds.parquet
        """
        args = _parse(self.deploy, line)
        from jupyter_mlops import serving

        actions = [args.canary, args.promote, args.rollback, args.stop, args.list, args.batch]
        if sum(bool(a) for a in actions) > 1:
            raise UsageError("Use one of --canary, --promote, --rollback, --stop, --list, --batch")
        if not args.list and not args.target:
            raise UsageError("Say which model (NAME@ALIAS) or deployment; or use --list")
        try:
            if args.list:
                return serving.list_deployments()
            if args.batch:
                if not args.output:
                    raise UsageError("--batch needs --output FILE (.csv or .parquet)")
                return serving.batch_predict(args.target, args.batch, args.output)
            if args.canary:
                return serving.canary(args.target, args.canary, args.weight)
            if args.promote:
                return serving.promote(args.target)
            if args.rollback:
                return serving.rollback(args.target)
            if args.stop:
                return serving.stop(args.target)
            return serving.deploy(
                args.target,
                name=args.name,
                port=args.port,
                host=args.host,
                workers=args.workers,
                token=args.token,
                prediction_log=not args.no_log,
            )
        except MlopsError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument(
        "action",
        nargs="?",
        default="info",
        choices=["info", "runs", "pending", "retry"],
        help="info (store, reachability), runs, pending (buffered runs), retry (log them)",
    )
    @argument("-n", "--limit", type=int, default=10, help="How many runs (for `runs`)")
    @argument("--all", action="store_true", help="Runs of every notebook (for `runs`)")
    @line_magic
    def mlops(self, line: str) -> Any:
        """Show the active configuration and whether its store is reachable (``%mlops``),
        this notebook's latest runs, or the runs buffered while the store was unreachable
        (``%mlops pending``; ``%mlops retry`` logs them)."""
        args = _parse(self.mlops, line)
        from jupyter_mlops import status

        try:
            if args.action == "pending":
                return status.pending_table()
            if args.action == "retry":
                return status.retry_table()
            if args.action == "runs":
                namespace = self.shell.user_ns if self.shell else {}
                return status.runs_table(
                    limit=args.limit, all_notebooks=args.all, namespace=namespace
                )
            return status.describe()
        except MlopsError as exc:
            raise UsageError(str(exc)) from None

    @magic_arguments()
    @argument("runs", nargs="*", help="Runs to compare: ids, id prefixes or run names")
    @argument("-e", "--experiment", action="append", help="Experiment (repeatable)")
    @argument("--metric", help="Metric to rank, colour and plot by")
    @argument("--top", type=int, help="Only the best N runs by --metric")
    @argument("--where", help='Filter, e.g. "params.n_estimators >= 100 and metrics.acc > 0.9"')
    @argument("--params", action="append", metavar="NAMES", help="Params for the plot axes")
    @argument("--ascending", action="store_true", default=None, help="Smaller --metric is better")
    @argument("--page-size", type=int, default=50, help="Table rows per page")
    @line_magic
    def compare(self, line: str) -> Any:
        """Compare runs side by side: sortable table, plots, differences, register button.

        Examples::

            %compare                                  # the current notebook's experiment
            %compare -e Iris_Classification --metric accuracy --top 20
            %compare 3f2a 9c1d 77be                   # given runs
            %compare -e Iris --where "params.n_estimators >= 100 and metrics.accuracy > 0.9"
        """
        args = _parse(self.compare, line)
        from jupyter_mlops.widgets import compare

        params = [p.strip() for v in args.params or [] for p in v.split(",") if p.strip()]
        experiment = args.experiment[0] if args.experiment and len(args.experiment) == 1 else None
        try:
            return compare(
                experiment or args.experiment,
                run_ids=args.runs,
                where=args.where,
                metric=args.metric,
                top=args.top,
                ascending=args.ascending,
                params=params or None,
                notebook=self._context()["notebook"],
                page_size=args.page_size,
            )
        except MlopsError as exc:
            raise UsageError(str(exc)) from None
