"""Outcomes: record the ground truth of a deployment's logged predictions from a file (or, in
a notebook, a DataFrame variable), as ``POST /feedback`` and ``record_outcomes`` do."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, ClassVar

from jupyter_mlops.commands.base import Arguments, Command, Context
from jupyter_mlops.errors import UsageError


def read_outcome_file(path: str) -> Any:
    """A CSV, TSV, Parquet or JSON-lines file of outcome records as a DataFrame (a column
    ``outcome`` holding lists in JSON lines labels rows of multi-row requests)."""
    import pandas as pd

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"No file {path}")
    suffix = file.suffix.lower()
    readers = {
        ".csv": lambda: pd.read_csv(file, dtype={"request_id": str}),
        ".tsv": lambda: pd.read_csv(file, sep="\t", dtype={"request_id": str}),
        ".parquet": lambda: pd.read_parquet(file),
        ".pq": lambda: pd.read_parquet(file),
        ".jsonl": lambda: pd.read_json(file, lines=True, dtype={"request_id": str}),
        ".ndjson": lambda: pd.read_json(file, lines=True, dtype={"request_id": str}),
    }
    reader = readers.get(suffix)
    if reader is None:
        raise UsageError(f"{path}: give a .csv, .tsv, .parquet or .jsonl file of outcomes")
    try:
        return reader()
    except Exception as exc:
        raise UsageError(f"Cannot read {path}: {exc}") from None


class Outcomes(Command):
    name = "outcomes"
    magic = "outcomes"
    help = "record outcomes (ground truth) of a deployment's predictions from a file"
    doc = """Record the outcomes of a deployment's logged predictions: a file (CSV, TSV,
        Parquet or JSON lines) or, in a notebook, a DataFrame variable, with columns
        ``request_id`` (the id each prediction answered) and ``outcome``, optional ``row``
        and ``arrived``; other columns are kept as business fields (``order_value``...).
        All or nothing: an unknown id, a duplicate, an outcome that does not fit the model
        or a malformed row refuses the batch, unless ``--skip-bad``.

        Examples::

            %outcomes iris-prod labels.csv
            %outcomes iris-prod labels_df --skip-bad
        """
    face_specific: ClassVar[dict[str, str]] = {
        "--json": "command line only: print the receipt as JSON",
    }

    def add_arguments(self, parser: Arguments) -> None:
        add = parser.add_argument
        add("deployment", help="deployment whose predictions the outcomes label")
        source = "CSV/TSV/Parquet/JSON-lines file" + (
            " or DataFrame variable" if parser.magic else ""
        )
        add("source", metavar="FILE" if not parser.magic else "FILE|VARIABLE", help=source)
        add(
            "--skip-bad",
            action="store_true",
            help="store the good records and list the refused ones (default: all or nothing)",
        )
        if not parser.magic:
            add("--json", action="store_true", help="print the receipt as JSON")

    def run(self, args: argparse.Namespace, context: Context) -> Any:
        from jupyter_mlops.predlog import record_outcomes

        namespace = context.namespace or {}
        if args.source.isidentifier() and args.source in namespace:
            outcomes = namespace[args.source]
        else:
            outcomes = read_outcome_file(args.source)
        on_error = "skip" if args.skip_bad else "raise"
        return record_outcomes(args.deployment, outcomes, on_error=on_error)

    def render(self, args: argparse.Namespace, result: Any) -> Any:
        if getattr(args, "json", False):
            return json.dumps(result.to_dict(), indent=2)
        return _summary(result)


def _summary(receipt: Any) -> str:
    lines = [
        f"{receipt.accepted} outcome(s) recorded for {receipt.deployment} "
        f"({len(receipt.request_ids)} request(s))."
    ]
    for item in receipt.rejected[:20]:
        lines.append(f"  refused #{item['index']} [{item['code']}]: {item['message']}")
    if len(receipt.rejected) > 20:
        lines.append(f"  ... and {len(receipt.rejected) - 20} more refused")
    return "\n".join(lines)
