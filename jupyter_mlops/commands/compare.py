"""``%compare``: runs side by side in a widget (a magic only: the widget needs a notebook;
the command line's ``runs`` lists the latest runs as text)."""

from __future__ import annotations

import argparse
from typing import Any

from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.commands.options import comma_list


class Compare(Command):
    name = "compare"
    magic = "compare"
    cli = False
    doc = """Compare runs side by side: sortable table, plots, differences, register button.

        Examples::

            %compare                                  # the current notebook's experiment
            %compare -e Iris_Classification --metric accuracy --top 20
            %compare 3f2a 9c1d 77be                   # given runs
            %compare -e Iris --where "params.n_estimators >= 100 and metrics.accuracy > 0.9"
        """

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("runs", nargs="*", help="runs to compare: ids, id prefixes or run names")
        add("-e", "--experiment", action="append", help="experiment (repeatable)")
        add("--metric", help="metric to rank, colour and plot by")
        add("--top", type=int, help="only the best N runs by --metric")
        add("--where", help='filter, e.g. "params.n_estimators >= 100 and metrics.acc > 0.9"')
        add("--params", action="append", metavar="NAMES", help="params for the plot axes")
        add("--ascending", action="store_true", default=None, help="smaller --metric is better")
        add("--page-size", type=int, default=50, help="table rows per page")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.widgets import compare

        experiments = args.experiment or []
        return compare(
            experiments[0] if len(experiments) == 1 else args.experiment,
            run_ids=args.runs,
            where=args.where,
            metric=args.metric,
            top=args.top,
            ascending=args.ascending,
            params=comma_list(args.params) or None,
            notebook=context.notebook,
            page_size=args.page_size,
        )
