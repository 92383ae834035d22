"""IPython magics: parse arguments, call the public API, display the result."""

from __future__ import annotations

import ast
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display

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
        from jupyter_mlops import registry, status

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
                        args.promote, args.alias[0], gate=args.gate, context=context
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
    @argument("action", nargs="?", default="info", choices=["info", "runs"], help="What to show")
    @argument("-n", "--limit", type=int, default=10, help="How many runs (for `runs`)")
    @argument("--all", action="store_true", help="Runs of every notebook (for `runs`)")
    @line_magic
    def mlops(self, line: str) -> Any:
        """Show the active configuration (``%mlops``) or this notebook's latest runs."""
        args = _parse(self.mlops, line)
        from jupyter_mlops import status

        try:
            if args.action == "runs":
                namespace = self.shell.user_ns if self.shell else {}
                return status.runs_table(
                    limit=args.limit, all_notebooks=args.all, namespace=namespace
                )
            return status.describe()
        except MlopsError as exc:
            raise UsageError(str(exc)) from None
