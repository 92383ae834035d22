"""Outcomes: the ground truth of logged predictions, joined to them as they arrive.

A prediction's outcome (the class that turned out true, the value that was measured, plus any
business fields such as ``order_value``) often arrives long after the answer: a click within
seconds, a chargeback within weeks. :func:`record_outcomes` (and the server's ``POST
/feedback``) takes them keyed by the request id the prediction answered, looks the prediction
up in the deployment's log (replaying its journal first when the request is not stored yet),
checks that the outcome fits the model's task, and stores it in the *same database* as the
predictions with what the prediction was (version, role, label, probabilities) copied beside
it, so :func:`read_outcomes` reads a million labelled rows without a join.

A batch is all or nothing: an unknown request id (404), a duplicate (409: already recorded, or
twice in the batch), an outcome that does not fit (422) or a malformed record (400) refuses
the whole batch with :class:`~jupyter_mlops.errors.OutcomeError`, and nothing is stored;
``on_error="skip"`` stores the good ones and lists the others. The prediction log keeps every
answered request (it has no retention), so an unknown id was never answered by that
deployment; no outcome is ever "late" for the log, and :attr:`OutcomeReceipt.late` stays
empty until the log gains a retention.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from jupyter_mlops._util.layout import JOURNAL_DIR
from jupyter_mlops.errors import DeploymentNotFoundError, OutcomeError, ServingError
from jupyter_mlops.predlog.base import PredictionStore, loads, open_prediction_store
from jupyter_mlops.predlog.blocks import Labelled, decode_blocks
from jupyter_mlops.predlog.journal import replay_journal
from jupyter_mlops.predlog.labels import Item, Reject, epoch, fit, parse_items
from jupyter_mlops.predlog.reader import log_location

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = [
    "OutcomeReceipt",
    "OutcomeStore",
    "ingest_outcomes",
    "prediction_counts",
    "read_outcomes",
    "record_outcomes",
]

#: What an unknown request id means, in every refusal that names one.
UNKNOWN_MEANS = (
    "the prediction log keeps every answered request (no retention), so this deployment "
    "never answered it"
)


class OutcomeStore(Protocol):
    """A prediction store that also keeps outcomes (both built-in stores do)."""

    def lookup(self, request_ids: Sequence[str]) -> list[tuple[Any, ...]]: ...

    def add_outcomes(
        self, rows: Sequence[Labelled], *, skip_duplicates: bool = False
    ) -> set[tuple[str, int]]: ...

    def outcome_blocks(
        self, deployment: str, since: float | None = None, until: float | None = None
    ) -> list[bytes]: ...

    def prediction_counts(
        self,
        deployment: str,
        since: float | None = None,
        until: float | None = None,
        bucket_s: float | None = None,
    ) -> list[tuple[Any, ...]]: ...


@dataclass
class OutcomeReceipt:
    """What :func:`record_outcomes` did: ``accepted`` labelled rows stored (for the
    ``request_ids`` listed), each refused record in ``rejected`` (``index``, ``request_id``,
    ``code``, ``message``), and ``late`` outcomes (for predictions older than the log's
    retention: none while the log keeps everything)."""

    deployment: str
    accepted: int = 0
    request_ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    late: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "accepted": self.accepted,
            "request_ids": self.request_ids,
            "rejected": self.rejected,
            "late": self.late,
        }


def _outcome_store(store: PredictionStore) -> OutcomeStore:
    if not hasattr(store, "add_outcomes"):
        raise ServingError(
            f"The prediction store {type(store).__name__} keeps no outcomes (the SQLite and "
            "PostgreSQL stores do)."
        )
    return store  # type: ignore[return-value]


def _logged(store: OutcomeStore, ids: list[str], journal: Path | None) -> dict[str, Any]:
    """The logged requests among ``ids``; the journal is replayed first when some are not
    stored yet (a prediction answered a moment ago)."""
    found = {row[0]: row for row in store.lookup(ids)} if ids else {}
    missing = [i for i in ids if i not in found]
    if missing and journal is not None and journal.is_dir():
        replay_journal(journal, store)  # type: ignore[arg-type]
        found.update({row[0]: row for row in store.lookup(missing)})
    return found


def _payload(text: Any) -> Any:
    return loads(text) if isinstance(text, str | bytes) else text


def ingest_outcomes(
    store: PredictionStore,
    deployment: str,
    outcomes: Any,
    *,
    journal: str | os.PathLike[str] | None = None,
    on_error: str = "raise",
    now: float | None = None,
) -> OutcomeReceipt:
    """Check ``outcomes`` against ``deployment``'s log in ``store`` and store them: the work
    of :func:`record_outcomes` on an open store (the server keeps its own open)."""
    if on_error not in ("raise", "skip"):
        raise OutcomeError(f"on_error must be 'raise' or 'skip', not {on_error!r}.")
    outcome_store = _outcome_store(store)
    now = time.time() if now is None else now
    try:
        items, rejected = parse_items(outcomes, now)
    except Reject as exc:
        raise OutcomeError(exc.message, exc.code) from None
    folder = Path(journal) if journal is not None else None
    logged = _logged(outcome_store, list(dict.fromkeys(i.request_id for i in items)), folder)
    rows: list[Labelled] = []
    owners: dict[tuple[str, int], Item] = {}
    for item in items:
        try:
            labelled = _labelled(item, logged.get(item.request_id), deployment)
            for one in labelled:
                if (one.request_id, one.row) in owners:
                    raise Reject("DUPLICATE_OUTCOME", f"{item.request_id}: row {one.row} twice")
        except Reject as exc:
            rejected.append(_refusal(item, exc.code, exc.message))
            continue
        for one in labelled:
            owners[one.request_id, one.row] = item
        rows.extend(labelled)
    rejected.sort(key=lambda r: r["index"])
    if rejected and on_error == "raise":
        raise _error(rejected)
    stored = outcome_store.add_outcomes(rows, skip_duplicates=on_error == "skip")
    if stored:
        refused = {owners[key].position: owners[key] for key in sorted(stored)}
        duplicates = [
            _refusal(item, "DUPLICATE_OUTCOME", f"{item.request_id}: an outcome is already stored")
            for item in refused.values()
        ]
        if on_error == "raise":
            raise _error(duplicates)
        rejected = sorted(rejected + duplicates, key=lambda r: r["index"])
        rows = [r for r in rows if (r.request_id, r.row) not in stored]
    return OutcomeReceipt(
        deployment,
        accepted=len(rows),
        request_ids=list(dict.fromkeys(r.request_id for r in rows)),
        rejected=rejected,
    )


def _refusal(item: Item, code: str, message: str) -> dict[str, Any]:
    return {"index": item.position, "request_id": item.request_id, "code": code, "message": message}


def _error(rejected: list[dict[str, Any]]) -> OutcomeError:
    first = rejected[0]
    more = f" (and {len(rejected) - 1} more refused)" if len(rejected) > 1 else ""
    return OutcomeError(
        f"{first['message']}{more}; nothing was stored.", first["code"], rejected[:100]
    )


def _labelled(item: Item, logged: Any, deployment: str) -> list[Labelled]:
    """``item``'s rows joined to their logged prediction (or :class:`Reject`)."""
    if logged is None:
        raise Reject(
            "UNKNOWN_REQUEST_ID",
            f"request id {item.request_id} is unknown to deployment {deployment!r}: "
            f"{UNKNOWN_MEANS}",
        )
    _, owner, ts, model_name, model_version, run_id, role, n_rows, outputs, proba = logged
    if owner != deployment:
        raise Reject(
            "UNKNOWN_REQUEST_ID",
            f"request id {item.request_id} was answered by deployment {owner!r}, "
            f"not {deployment!r}",
        )
    predictions = _payload(outputs)
    probas = _payload(proba)
    n = int(n_rows or 1)
    if not isinstance(predictions, list):
        predictions = [predictions] * n
    labelled = []
    for row, outcome in item.rows:
        if row >= n:
            raise Reject(
                "UNKNOWN_REQUEST_ID",
                f"request {item.request_id} predicted {n} row(s): there is no row {row}",
            )
        row_proba = probas[row] if isinstance(probas, list) and row < len(probas) else None
        try:
            prediction, value = fit(outcome, predictions[row], row_proba)
        except Reject as exc:
            raise Reject(exc.code, f"{item.request_id} row {row}: {exc.message}") from None
        labelled.append(
            Labelled(  # positional: a NamedTuple made 10,000 times a batch
                item.request_id, row, deployment, item.arrived, value, float(ts), model_name,
                model_version, run_id, role, prediction, row_proba, item.extra,
            )
        )  # fmt: skip
    return labelled


def _open(deployment: str, config: Config | None) -> tuple[PredictionStore, Path]:
    url, folder, _ = log_location(deployment, config)
    return open_prediction_store(url), folder


def _known(folder: Path, deployment: str, empty: bool) -> None:
    if empty and not folder.is_dir():
        raise DeploymentNotFoundError(f"No deployment named {deployment!r}.")


def record_outcomes(
    deployment: str,
    outcomes: Any,
    *,
    on_error: str = "raise",
    config: Config | None = None,
) -> OutcomeReceipt:
    """Record the outcomes of ``deployment``'s logged predictions.

    ``outcomes``: a DataFrame, a list of dicts or one dict, each with ``request_id`` (the id
    the prediction answered) and ``outcome``; optional ``row`` (default 0; a list
    ``outcome`` labels rows 0..n-1 of a multi-row request) and ``arrived`` (when the
    outcome became known; default now); other fields are kept as extra columns (business
    figures such as ``order_value``). All or nothing unless ``on_error="skip"``: see
    :class:`~jupyter_mlops.errors.OutcomeError` for the refusals.
    """
    store, folder = _open(deployment, config)
    try:
        if not folder.is_dir():
            raise DeploymentNotFoundError(f"No deployment named {deployment!r}.")
        return ingest_outcomes(
            store, deployment, outcomes, journal=folder / JOURNAL_DIR, on_error=on_error
        )
    finally:
        store.close()


def _bound(value: float | str | dt.datetime | None) -> float | None:
    return None if value is None else epoch(value)


def read_outcomes(
    deployment: str,
    *,
    since: float | str | dt.datetime | None = None,
    until: float | str | dt.datetime | None = None,
    config: Config | None = None,
) -> pd.DataFrame:
    """The labelled predictions of ``deployment``: one row per labelled prediction row with
    ``since <= prediction time < until``, oldest prediction first.

    Columns: ``request_id, row, timestamp`` (prediction time, UTC), ``arrived`` (UTC),
    ``delay_s``, ``deployment, model_name, model_version, run_id, role, prediction,
    outcome``, then ``proba_<class>`` per class (NaN where not logged), then the extra fields.
    """
    store, folder = _open(deployment, config)
    try:
        blobs = _outcome_store(store).outcome_blocks(deployment, _bound(since), _bound(until))
    finally:
        store.close()
    _known(folder, deployment, empty=not blobs)
    return decode_blocks(blobs, _bound(since), _bound(until))


def prediction_counts(
    deployment: str,
    *,
    since: float | str | dt.datetime | None = None,
    until: float | str | dt.datetime | None = None,
    bucket_s: float | None = None,
    config: Config | None = None,
) -> pd.DataFrame:
    """Predicted rows of ``deployment`` per ``model_version`` and ``role`` (and per
    ``bucket``, the UTC start of each ``bucket_s``-second window of prediction time), in
    ``n_predictions``: the denominator of label coverage. The journal is counted too."""
    import pandas as pd

    store, folder = _open(deployment, config)
    try:
        replay_journal(folder / JOURNAL_DIR, store)
        counted = _outcome_store(store).prediction_counts(
            deployment, _bound(since), _bound(until), bucket_s
        )
    finally:
        store.close()
    _known(folder, deployment, empty=not counted)
    names = ["model_version", "role", *(["bucket"] if bucket_s else []), "n_predictions"]
    frame = pd.DataFrame([tuple(r) for r in counted], columns=names)
    frame["n_predictions"] = frame["n_predictions"].astype("int64")
    if bucket_s:
        frame["bucket"] = pd.to_datetime(frame["bucket"].astype(float), unit="s", utc=True)
    return frame
