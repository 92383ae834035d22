"""The prediction log: what each deployment answered, durable before the answer leaves.

A shared store that serving writes and monitoring reads. Two layers keep the request path
cheap and still lose nothing a client saw: a per-process **journal** written before each
response is released (:mod:`~jupyter_mlops.predlog.journal`), and a **store** (SQLite by
default, PostgreSQL for a team; more through :func:`register_prediction_store`) that a
background thread of the server fills from closed journal segments
(:mod:`~jupyter_mlops.predlog.writer`). :func:`read_predictions` reads both. Outcomes (the
ground truth that arrives later) are stored beside the predictions they label
(:mod:`~jupyter_mlops.predlog.outcomes`).

Importing this package stays light: pandas and database drivers load when used.
"""

from __future__ import annotations

from jupyter_mlops.predlog.base import (
    COLUMNS,
    PredictionStore,
    default_store_url,
    open_prediction_store,
    register_prediction_store,
)
from jupyter_mlops.predlog.journal import Journal, replay_journal
from jupyter_mlops.predlog.outcomes import (
    OutcomeReceipt,
    prediction_counts,
    read_outcomes,
    record_outcomes,
)
from jupyter_mlops.predlog.reader import REQUEST_COLUMNS, read_predictions
from jupyter_mlops.predlog.sqlite import SQLitePredictionStore
from jupyter_mlops.predlog.writer import LogWriter

__all__ = [
    "COLUMNS",
    "REQUEST_COLUMNS",
    "Journal",
    "LogWriter",
    "OutcomeReceipt",
    "PredictionStore",
    "SQLitePredictionStore",
    "default_store_url",
    "open_prediction_store",
    "prediction_counts",
    "read_outcomes",
    "read_predictions",
    "record_outcomes",
    "register_prediction_store",
    "replay_journal",
]
