"""Reading a deployment's prediction log as a table: what monitoring and notebooks read.

:func:`read_predictions` replays the deployment's journal into its store first (segments of a
killed server included, live ones read but kept), so the table holds every answered request,
then turns each stored request into one row per input row.
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops._util.layout import JOURNAL_DIR, DamagedState, deployments_root, read_state
from jupyter_mlops.errors import DeploymentNotFoundError
from jupyter_mlops.predlog.base import default_store_url, loads, open_prediction_store
from jupyter_mlops.predlog.journal import replay_journal

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = ["REQUEST_COLUMNS", "is_output_column", "log_location", "read_predictions"]

#: Columns of a :func:`read_predictions` frame that describe requests, not model inputs or
#: outputs; the input columns follow them, then ``prediction`` (or ``prediction_<name>``).
REQUEST_COLUMNS = (
    "request_id", "row", "timestamp", "deployment", "model_name", "model_version", "run_id",
    "role", "endpoint", "latency_ms",
)  # fmt: skip


def is_output_column(name: str) -> bool:
    """Whether a :func:`read_predictions` column holds what the model answered
    (``prediction``, ``prediction_<name>``, ``proba_<class>``), not a request field or an
    input (inputs named so are read as ``input_<name>``)."""
    return name == "prediction" or name.startswith(("prediction_", "proba_"))


def _epoch(value: float | str | dt.datetime | None) -> float | None:
    if value is None or isinstance(value, int | float):
        return value
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if hasattr(moment, "to_pydatetime"):  # a pandas Timestamp
        moment = moment.to_pydatetime()
    if moment.tzinfo is None:  # naive datetimes are taken as local time, like time.time()
        return time.mktime(moment.timetuple()) + moment.microsecond / 1e6
    return moment.timestamp()


def log_location(deployment: str, config: Config | None = None) -> tuple[str, Path, Config]:
    """Where ``deployment`` logs: its store's URL, its folder (the journal is under it),
    and the project's configuration."""
    from jupyter_mlops.config import load_config

    config = config or load_config()
    folder = deployments_root(config.mlops_dir) / deployment
    try:
        logged_to = (read_state(folder) or {}).get("prediction_log")
    except DamagedState as exc:  # the predictions are not in state.json: read them anyway
        logged_to = exc.field("prediction_log")
    url = logged_to or config.prediction_log or default_store_url(config.mlops_dir)
    return str(url), folder, config


def read_predictions(
    deployment: str,
    *,
    since: float | str | dt.datetime | None = None,
    until: float | str | dt.datetime | None = None,
    limit: int | None = None,
    config: Config | None = None,
) -> pd.DataFrame:
    """The logged predictions of ``deployment``: one row per input row, oldest first.

    Columns: ``request_id``, ``row`` (position in its request), ``timestamp`` (UTC),
    ``deployment``, ``model_name``, ``model_version``, ``run_id``, ``role`` (primary or
    canary), ``endpoint``, ``latency_ms``, then the input columns (``input_<name>`` for one
    named like these), then ``prediction`` (or ``prediction_<name>`` for models answering
    several columns) and, for models with ``predict_proba``, ``proba_<class>`` per class.
    ``since``/``until`` take datetimes, ISO strings or epoch seconds; ``limit`` keeps the
    latest that many requests. Journal records not yet stored (a running or killed server)
    are included.
    """
    url, folder, config = log_location(deployment, config)
    store = open_prediction_store(url)
    try:
        replay_journal(folder / JOURNAL_DIR, store)
        rows = store.read(deployment, since=_epoch(since), until=_epoch(until), limit=limit)
    finally:
        store.close()
    if not rows and not folder.is_dir():
        raise DeploymentNotFoundError(f"No deployment named {deployment!r} in {config.root}.")
    return _explode(rows)


def _explode(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Stored requests as one frame row per input row (inputs and outputs unpacked)."""
    import pandas as pd

    meta: dict[str, list[Any]] = {c: [] for c in REQUEST_COLUMNS}
    inputs: dict[str, list[Any]] = {}
    outputs: dict[str, list[Any]] = {}
    total = 0
    for rec in rows:
        data = loads(rec["inputs"]) if rec["inputs"] else {}
        preds = loads(rec["outputs"]) if rec["outputs"] else []
        if not isinstance(data, dict):  # tensor input: one cell per request
            data = {"input": [data]}
        n = max((len(v) for v in data.values() if isinstance(v, list)), default=1)
        if not isinstance(preds, list) or len(preds) != n:
            preds = [preds] * n if n == 1 else [None] * n
        for key, values in data.items():
            if key in meta or is_output_column(key):
                key = f"input_{key}"  # an input named like a log column keeps both
            column = inputs.setdefault(key, [None] * total)
            column.extend(values if isinstance(values, list) else [values] * n)
        for i in range(n):
            pred = preds[i]
            keys = pred.items() if isinstance(pred, dict) else [(None, pred)]
            for key, value in keys:
                name = "prediction" if key is None else f"prediction_{key}"
                column = outputs.setdefault(name, [None] * total)
                column.extend([None] * (total + i - len(column)))
                column.append(value)
        probas = loads(rec["proba"]) if rec.get("proba") else None
        if isinstance(probas, list) and len(probas) == n:
            for i, row_proba in enumerate(probas):
                for key, value in (row_proba or {}).items():
                    column = outputs.setdefault(f"proba_{key}", [None] * total)
                    column.extend([None] * (total + i - len(column)))
                    column.append(value)
        for key in REQUEST_COLUMNS:
            if key == "row":
                meta[key].extend(range(n))
            elif key == "timestamp":
                meta[key].extend([rec["ts"]] * n)
            else:
                meta[key].extend([rec[key]] * n)
        total += n
        for column in (*inputs.values(), *outputs.values()):
            column.extend([None] * (total - len(column)))
    frame = pd.DataFrame({**meta, **inputs, **outputs})
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], unit="s", utc=True)
    return frame
