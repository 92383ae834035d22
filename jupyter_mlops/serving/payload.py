"""Request bodies -> Python values, refusing what no model can take before any model sees it.

orjson decodes the common body. What it refuses (a lone surrogate such as ``"\\ud800"``,
``NaN``/``Infinity``, a number too large for a double, nesting over 1024 levels) takes the
standard library's decoder, whose result is then checked here: a lone surrogate (in a value or
a name) cannot be written as UTF-8, so it would fail the prediction log and the answer of every
request batched with it; ``Infinity`` and numbers beyond a double's range are no value a model
predicts on; nesting past :data:`MAX_DEPTH` levels exhausts the interpreter's stack. Each is a
400 naming what is wrong. Integers beyond 64 bits become floats, as orjson itself reads them,
so the decoded value does not depend on which decoder read it.

CSV bodies are split with the ``csv`` module without its 128 KiB field limit (the body limit
bounds them), and a row holding more values than the header names is refused.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

import orjson

from jupyter_mlops.serving.errors import InputError

__all__ = [
    "MAX_DEPTH",
    "csv_width_message",
    "json_problem",
    "parse_json",
    "read_csv_rows",
    "split_index_problem",
    "too_deep",
]

#: Deepest nesting of arrays and objects a JSON body may have (tables need 3 or 4 levels).
MAX_DEPTH = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64_LOW, _UINT64_HIGH = -(2**63), 2**64


def parse_json(body: bytes) -> Any:
    """Decode a JSON body; 400 for an empty, malformed or unusable one (see the module)."""
    if not body.strip():
        raise InputError("Empty request body: send JSON records.", status=400, code="EMPTY_BODY")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    value, problem = _slow_loads(body)
    if problem is not None:
        code = "MALFORMED_JSON" if problem.startswith("Malformed") else "BAD_PAYLOAD"
        raise InputError(problem, status=400, code=code)
    return value


def json_problem(body: bytes) -> str | None:
    """What makes a JSON body unusable (see the module), or None when nothing does or the
    body is not JSON at all (its own parser says so then). For a parser other than ours:
    MLflow's scoring code, which would fail on these with a 500 or fail the log."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        _, problem = _slow_loads(body, malformed=False)
        return problem
    return too_deep(value)


def too_deep(value: Any) -> str | None:
    """The refusal of a value nested more than :data:`MAX_DEPTH` levels, or None.

    orjson reads up to 1024 levels; a model without a signature would get such a value
    unchecked, and the prediction log could not write it."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH:
            return _too_deep()
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return None


def _slow_loads(body: bytes, *, malformed: bool = True) -> tuple[Any, str | None]:
    """The standard library's reading of ``body`` (it also reads NaN, Infinity and lone
    surrogates) and the problem with it; ``malformed=False``: no problem for bad JSON."""
    try:
        value = json.loads(body)
    except RecursionError:
        return None, _too_deep()
    except (ValueError, UnicodeDecodeError) as exc:
        return None, (f"Malformed JSON: {exc}" if malformed else None)
    holder = [value]  # so that a body of one big integer is replaced like any other
    problem = _check_tree(holder)
    return holder[0], problem


def _check_tree(holder: list[Any]) -> str | None:
    """The first problem in the decoded JSON value ``holder[0]`` (walked without recursion);
    big integers are replaced by floats in place."""
    stack: list[tuple[Any, int]] = [(holder, -1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth >= MAX_DEPTH:
                return _too_deep()
            pairs = node.items() if isinstance(node, dict) else enumerate(node)
            for key, item in pairs:
                if isinstance(key, str) and _SURROGATE.search(key):
                    return _surrogate("name", key)
                replaced = _number(item)
                if replaced is item:
                    stack.append((item, depth + 1))
                elif isinstance(replaced, str):
                    return replaced
                else:
                    node[key] = replaced  # a value replaced in place: the size stays
        elif isinstance(node, str) and _SURROGATE.search(node):
            return _surrogate("value", node)
    return None


def _number(value: Any) -> Any:
    """``value`` itself; a float for an integer beyond 64 bits; a message (str) for a
    number no model takes. Anything but numbers passes as it is."""
    kind = type(value)
    if kind is float:
        if math.isinf(value):
            return (
                f"The JSON body holds {'' if value > 0 else '-'}Infinity (or a number beyond "
                "a double's range, such as 1e400): send finite numbers, null for a missing value."
            )
        return value
    if kind is int and not _INT64_LOW <= value < _UINT64_HIGH:
        try:
            return float(value)
        except OverflowError:
            digits = len(str(abs(value)))
            return (
                f"The JSON integer of {digits} digits is beyond a double's range: send a "
                "number a model can take."
            )
    return value


def _too_deep() -> str:
    return (
        f"The JSON body is nested more than {MAX_DEPTH} levels deep: send rows of values "
        "(records, or columns of values)."
    )


def _surrogate(where: str, text: str) -> str:
    at = _SURROGATE.search(text)
    position = at.start() if at is not None else 0
    code = f"\\u{ord(text[position]):04x}"
    return (
        f"A {where} in the JSON body holds a lone surrogate ({code} at character "
        f"{position}), which is no Unicode text: encode the text as valid UTF-8 (surrogates "
        "only in pairs)."
    )


def read_csv_rows(text: str) -> list[list[str]]:
    """A CSV text's rows (empty lines left out); 400 when a row has more values than the
    header names (pandas would silently make the extra one the row's index)."""
    limit = max(csv.field_size_limit(), len(text) + 1)
    if limit > csv.field_size_limit():  # only raised: the body limit bounds every field
        csv.field_size_limit(limit)
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if row]
    except csv.Error as exc:
        raise InputError(f"Malformed CSV: {exc}", status=400, code="BAD_PAYLOAD") from exc
    if rows:
        width = len(rows[0])
        for i, row in enumerate(rows[1:], start=1):
            if len(row) > width:
                raise InputError(
                    csv_width_message(i, len(row), width), status=400, code="BAD_PAYLOAD"
                )
    return rows


def csv_width_message(line: int, values: int, width: int) -> str:
    """The refusal of a CSV data row holding more values than its header names."""
    return (
        f"CSV row {line} has {values} values for the {width} columns of the header: send one "
        "value per column (quote values holding commas)."
    )


def split_index_problem(split: Any) -> str | None:
    """Why a ``dataframe_split`` object's ``index`` does not fit its rows, or None. pandas
    (and so MLflow) would repeat a lone row to the index's length."""
    if not isinstance(split, dict):
        return None
    index, rows = split.get("index"), split.get("data")
    if index is None or not isinstance(rows, list):
        return None
    if not isinstance(index, list):
        return "'index' must be a list of row labels, one per row of 'data'."
    if len(index) != len(rows):
        return f"'index' has {len(index)} labels for {len(rows)} rows of 'data': send one per row."
    return None
