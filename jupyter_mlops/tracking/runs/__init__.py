"""Reading runs back: the ``--where`` language (``where``), the store readers (``readers``:
SQLite read directly, anything else through MLflow's client), the runs table (``table``),
diffs (``diff``), MLflow UI links (``urls``), the one run-reference resolver (``refs``)
and the sidebar's cached, paged view of a store (``catalog``)."""

from jupyter_mlops.errors import QueryError
from jupyter_mlops.tracking.runs.diff import RunDiff, diff_runs, run_source
from jupyter_mlops.tracking.runs.readers import Reader
from jupyter_mlops.tracking.runs.refs import (
    LAST,
    find_run,
    get_run,
    is_id_prefix,
    match_run_ref,
    names_run,
    resolve_run_ref,
)
from jupyter_mlops.tracking.runs.sqlite_reader import sqlite_path
from jupyter_mlops.tracking.runs.table import (
    LOWER_IS_BETTER,
    data_summary,
    lower_is_better,
    metric_columns,
    metric_history,
    model_names,
    param_columns,
    runs,
    sort_runs,
    stepped_metrics,
    varying,
)
from jupyter_mlops.tracking.runs.urls import mlflow_ui_url, run_url
from jupyter_mlops.tracking.runs.values import as_number, numbers_of
from jupyter_mlops.tracking.runs.where import ATTRIBUTES, Where

__all__ = [
    "ATTRIBUTES",
    "LAST",
    "LOWER_IS_BETTER",
    "QueryError",
    "Reader",
    "RunDiff",
    "Where",
    "as_number",
    "data_summary",
    "diff_runs",
    "find_run",
    "get_run",
    "is_id_prefix",
    "lower_is_better",
    "match_run_ref",
    "metric_columns",
    "metric_history",
    "mlflow_ui_url",
    "model_names",
    "names_run",
    "numbers_of",
    "param_columns",
    "resolve_run_ref",
    "run_source",
    "run_url",
    "runs",
    "sort_runs",
    "sqlite_path",
    "stepped_metrics",
    "varying",
]
