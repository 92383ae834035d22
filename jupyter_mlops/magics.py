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


def _parse(magic: Any, line: str) -> Any:
    try:
        return parse_argstring(magic, line)
    except UsageError:
        raise
    except SystemExit as exc:  # argparse exits on --help or bad input in some versions
        raise UsageError(f"Invalid arguments: {line!r}") from exc


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
