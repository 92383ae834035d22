"""Outcome records as sent, checked: their fields, and whether an outcome fits the prediction.

Pure functions (no store): :func:`parse_items` turns a DataFrame, a list of dicts or one dict
into labelled rows or per-item rejections; :func:`fit` decides whether an outcome fits the
model's task, from what the log holds about the prediction:

- the row's class probabilities were logged (a classifier with ``predict_proba``): the outcome
  must be one of those classes, compared by text (``1``, ``1.0`` and ``"1"`` all name class
  ``1``), and is stored with the prediction's type, so ``outcome == prediction`` compares
  like with like. A prediction answered as probabilities (``?predict=proba``) is stored as its
  most probable class;
- no probabilities, a text or boolean prediction (a classifier without ``predict_proba``):
  the outcome must convert to the prediction's type;
- no probabilities, a numeric prediction (a regressor, or a classifier without
  probabilities: the log cannot tell them apart): the outcome must be a finite number.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["Item", "Reject", "fit", "parse_items"]

#: The fields of an outcome record that are not extra (business) columns.
FIELDS = frozenset(("request_id", "outcome", "row", "arrived"))
_SCALARS = (str, int, float)  # bool is an int


class Reject(Exception):
    """One outcome record refused: its code (see :class:`~jupyter_mlops.errors.OutcomeError`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Item(NamedTuple):
    """One outcome record as sent: its index, request id, ``(row, outcome)`` pairs, arrival
    time (epoch seconds) and extra fields."""

    position: int
    request_id: str
    rows: tuple[tuple[int, Any], ...]
    arrived: float
    extra: dict[str, Any] | None


def _missing(value: Any) -> bool:
    return value is None or (value.__class__ is float and math.isnan(value))


def _plain(value: Any) -> Any:
    """An integer beyond 64 bits as a float (what JSON stores and numpy columns hold)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63:
        return float(value)
    return value


def _scalar(value: Any) -> bool:
    return isinstance(value, _SCALARS)


def epoch(value: Any) -> float:
    """A time (epoch seconds, ISO text, datetime or pandas Timestamp) as epoch seconds;
    naive datetimes are local time, as ``time.time()``."""
    if isinstance(value, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(value, int | float):
        return float(value)
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    if hasattr(moment, "to_pydatetime"):  # a pandas Timestamp
        moment = moment.to_pydatetime()
    if not isinstance(moment, dt.datetime):
        raise ValueError(f"not a time: {value!r}")
    if moment.tzinfo is None:
        return time.mktime(moment.timetuple()) + moment.microsecond / 1e6
    return moment.timestamp()


def _records(outcomes: Any) -> Iterator[Any]:
    if hasattr(outcomes, "to_dict") and hasattr(outcomes, "columns"):  # a DataFrame
        yield from outcomes.to_dict(orient="records")
    elif isinstance(outcomes, Mapping):
        yield outcomes
    elif isinstance(outcomes, list | tuple):
        yield from outcomes
    else:
        raise Reject(
            "BAD_PAYLOAD",
            "Send outcomes as an object, a list of objects or a DataFrame with request_id "
            f"and outcome, not {type(outcomes).__name__}.",
        )


def _item(index: int, rec: Any, now: float) -> Item:
    if not isinstance(rec, Mapping):
        raise Reject("BAD_PAYLOAD", f"item {index} is not an object with request_id and outcome")
    request_id = rec.get("request_id")
    if not isinstance(request_id, str) or not request_id:
        raise Reject(
            "BAD_PAYLOAD",
            f"item {index}: request_id missing (the id a prediction answered, as text)",
        )
    outcome = rec.get("outcome")
    if _missing(outcome):
        raise Reject("BAD_PAYLOAD", f"{request_id}: outcome missing")
    row = rec.get("row")
    if _missing(row):
        row = 0
    if isinstance(row, float) and row.is_integer():
        row = int(row)  # a DataFrame column with gaps holds its ints as floats
    if isinstance(row, bool) or not isinstance(row, int) or row < 0:
        raise Reject("BAD_PAYLOAD", f"{request_id}: row must be an integer >= 0, not {row!r}")
    if isinstance(outcome, list):  # rows row, row+1, ... of a multi-row request
        if not outcome or not all(_scalar(v) and not _missing(v) for v in outcome):
            raise Reject("BAD_PAYLOAD", f"{request_id}: a list outcome holds one value per row")
        rows = tuple((row + k, _plain(v)) for k, v in enumerate(outcome))
    else:
        if not _scalar(outcome):
            raise Reject("BAD_PAYLOAD", f"{request_id}: outcome must be a number, text or bool")
        rows = ((row, _plain(outcome)),)
    arrived = rec.get("arrived")
    try:
        when = now if _missing(arrived) else epoch(arrived)
    except (ValueError, TypeError):
        raise Reject("BAD_PAYLOAD", f"{request_id}: arrived is not a time: {arrived!r}") from None
    extra = {}
    for key, value in rec.items():
        if key in FIELDS or _missing(value):
            continue
        if not _scalar(value):
            raise Reject(
                "BAD_PAYLOAD", f"{request_id}: field {key!r} must be a number, text or bool"
            )
        extra[str(key)] = _plain(value)
    return Item(index, request_id, rows, when, extra or None)


def _frame_items(frame: Any, now: float) -> list[Item] | None:
    """The records of a plain DataFrame, checked column-wise (no per-row dicts): text ids,
    numeric or text outcomes, a non-negative integer ``row``, numeric ``arrived`` (epoch
    seconds) and numeric extra columns. None for any other frame (read row by row)."""
    import pandas as pd

    api = pd.api.types
    if "request_id" not in frame.columns or "outcome" not in frame.columns:
        return None
    if not frame.columns.is_unique or not all(isinstance(c, str) for c in frame.columns):
        return None
    ids = frame["request_id"].tolist()
    outcome = frame["outcome"]
    if not all(i.__class__ is str and i for i in ids) or outcome.isna().any():
        return None
    values = outcome.tolist()
    if not (api.is_numeric_dtype(outcome) or all(v.__class__ is str for v in values)):
        return None
    rows = [0] * len(ids)
    if "row" in frame.columns:
        row = frame["row"]
        if not api.is_integer_dtype(row) or api.is_bool_dtype(row) or (row < 0).any():
            return None
        rows = row.tolist()
    arrived = [now] * len(ids)
    if "arrived" in frame.columns:
        when = frame["arrived"]
        if not api.is_numeric_dtype(when) or api.is_bool_dtype(when):
            return None
        arrived = when.fillna(now).astype(float).tolist()
    names = [c for c in frame.columns if c not in FIELDS]
    if not all(api.is_numeric_dtype(frame[c]) for c in names):
        return None
    extras = [frame[c].tolist() for c in names]
    items = []
    for index, (request_id, row_at, value, came) in enumerate(
        zip(ids, rows, values, arrived, strict=True)
    ):
        extra = {n: _plain(col[index]) for n, col in zip(names, extras, strict=True)
                 if not _missing(col[index])}  # fmt: skip
        items.append(Item(index, request_id, ((row_at, _plain(value)),), came, extra or None))
    return items


def parse_items(outcomes: Any, now: float) -> tuple[list[Item], list[dict[str, Any]]]:
    """The well-formed records of ``outcomes`` and a rejection for each other one."""
    items: list[Item] = []
    rejected: list[dict[str, Any]] = []
    if hasattr(outcomes, "columns") and hasattr(outcomes, "to_dict") and len(outcomes):
        fast = _frame_items(outcomes, now)
        if fast is not None:
            return fast, rejected
    records = list(_records(outcomes))
    if not records:
        raise Reject("BAD_PAYLOAD", "No outcomes sent (an empty list).")
    for index, rec in enumerate(records):
        try:
            items.append(_item(index, rec, now))
        except Reject as exc:
            request_id = rec.get("request_id") if isinstance(rec, Mapping) else None
            rejected.append(
                {
                    "index": index,
                    "request_id": request_id if isinstance(request_id, str) else None,
                    "code": exc.code,
                    "message": exc.message,
                }
            )
    return items, rejected


def _text(value: Any) -> list[str]:
    """The texts a value may name a class by."""
    if isinstance(value, float) and value.is_integer():
        return [str(int(value)), str(value)]
    return [str(value)]


def _like(text: str, example: Any) -> Any:
    """``text`` as a value of ``example``'s type (ValueError when it is not one)."""
    if isinstance(example, bool):
        if text not in ("True", "False", "true", "false", "1", "0"):
            raise ValueError(text)
        return text in ("True", "true", "1")
    if isinstance(example, int):
        return int(float(text)) if float(text).is_integer() else float(text)
    if isinstance(example, float):
        return float(text)
    return text


def fit(outcome: Any, prediction: Any, proba: Mapping[str, Any] | None) -> tuple[Any, Any]:
    """``(prediction, outcome)`` as stored, or :class:`Reject` (``OUTCOME_TYPE``) when the
    outcome does not fit the model's task (see the module's docstring)."""
    kind = prediction.__class__
    if kind is outcome.__class__ and kind in (int, str) and proba and str(outcome) in proba:
        return prediction, outcome  # the common case, decided at once: a known class
    if isinstance(prediction, dict) and proba is not None and list(prediction) == list(proba):
        best = max(proba, key=lambda c: proba[c] if proba[c] is not None else -1.0)
        prediction = _like(best, outcome) if not isinstance(outcome, str) else best
    if isinstance(prediction, dict):
        raise Reject("OUTCOME_TYPE", "the model answers several outputs per row: no outcomes yet")
    if prediction is None:
        raise Reject("OUTCOME_TYPE", "no prediction was logged for this row")
    if proba is not None:
        names = next((t for t in _text(outcome) if t in proba), None)
        if names is None:
            shown = ", ".join(list(proba)[:20])
            raise Reject(
                "OUTCOME_TYPE", f"{outcome!r} is not a class of the model (classes: {shown})"
            )
        try:
            return prediction, _like(names, prediction)
        except ValueError:  # a class whose text is not of the prediction's type
            return prediction, names
    if isinstance(prediction, bool | str):
        try:
            return prediction, _like(str(outcome), prediction)
        except ValueError:
            kind = type(prediction).__name__
            raise Reject(
                "OUTCOME_TYPE", f"{outcome!r} does not fit the model's {kind} labels"
            ) from None
    if (
        isinstance(outcome, bool)
        or not isinstance(outcome, int | float)
        or not math.isfinite(outcome)
    ):
        raise Reject(
            "OUTCOME_TYPE",
            f"{outcome!r} is not a number, and the model predicts numbers (a regressor)",
        )
    return prediction, outcome
