"""Reading runs back: the ``--where`` language, the store readers, the runs table, diffs,
MLflow UI links and the one run-reference resolver."""

from jupyter_mlops.errors import QueryError
from jupyter_mlops.tracking.runs.refs import (
    LAST,
    find_run,
    get_run,
    is_id_prefix,
    match_run_ref,
    names_run,
    resolve_run_ref,
)

__all__ = [
    "LAST",
    "QueryError",
    "find_run",
    "get_run",
    "is_id_prefix",
    "match_run_ref",
    "names_run",
    "resolve_run_ref",
]
