"""The ``--where`` language: a safe filter over runs, e.g.
``params.n_estimators >= 100 and metrics.accuracy > 0.9``.

Parsed with ``ast`` against a whitelist and evaluated column by column with numpy over a
runs frame (never as Python), with the part MLflow understands handed to its
``filter_string`` so a tracking server sends fewer runs.
"""

from __future__ import annotations

import ast
import io
import operator
import re
import tokenize
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import QueryError
from jupyter_mlops.tracking.runs.values import as_number, numbers_of

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

ATTRIBUTES = (
    "run_id",
    "run_name",
    "experiment",
    "experiment_id",
    "status",
    "start_time",
    "end_time",
    "duration",
    "user",
    "artifact_uri",
)
_TIME_COLUMNS = ("start_time", "end_time")
_PREFIXES = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
}


@dataclass(frozen=True)
class _Col:
    name: str  # a column of the runs frame: "params.lr", "status", ...


@dataclass(frozen=True)
class _Const:
    value: float | str


@dataclass(frozen=True)
class _Cmp:
    left: _Col | _Const
    op: str
    right: _Col | _Const


@dataclass(frozen=True)
class _In:
    item: _Col
    values: tuple[_Const, ...]
    negate: bool


@dataclass(frozen=True)
class _Bool:
    op: str  # "and" | "or"
    items: tuple[_Node, ...]


@dataclass(frozen=True)
class _Not:
    item: _Node


_Node = _Cmp | _In | _Bool | _Not
_CMP_OPS: dict[type[ast.cmpop], str] = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
}
_PY_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_MIRROR = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_KEYWORDS = {"AND": "and", "OR": "or", "NOT": "not", "IN": "in"}
_HELP = (
    'Write comparisons such as "params.n_estimators >= 100 and metrics.accuracy > 0.9" '
    "over params.X, metrics.X, tags.X (`backticks` for names with other characters) and "
    f"the attributes {', '.join(ATTRIBUTES)}, joined by and/or/not; `in [...]` tests "
    "membership"
)


class Where:
    """A filter over runs, e.g. ``params.n_estimators >= 100 and metrics.accuracy > 0.9``.

    The expression is parsed with ``ast`` and walked against a whitelist (comparisons,
    ``in``/``not in`` lists, and/or/not, names of params/metrics/tags/attributes, numbers
    and strings), never evaluated as Python. MLflow's own syntax (``=``, ``AND``,
    backquoted names) is accepted too. Params and tags are strings in MLflow: two values
    that both read as numbers compare as numbers (so ``params.n_estimators >= 100``
    works), others as text. A run lacking a value never satisfies a comparison.
    """

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        if not self.expression:
            raise QueryError(f"Empty filter. {_HELP}")
        source, self._quoted = _normalise(self.expression)
        try:
            tree = ast.parse(source, mode="eval").body
            self._node = self._build(tree)
        except SyntaxError as exc:
            raise QueryError(
                f"Filter {self.expression!r} is not valid: {exc.msg}. {_HELP}"
            ) from None
        except (RecursionError, MemoryError, ValueError):  # absurdly nested, NUL bytes
            raise QueryError(f"Filter {self.expression[:80]!r}... is not valid. {_HELP}") from None
        self.columns = sorted(_columns(self._node))

    def __repr__(self) -> str:
        return f"Where({self.expression!r})"

    # -- building ----------------------------------------------------------------------
    def _fail(self, what: str) -> QueryError:
        return QueryError(f"Filter {self.expression!r}: {what}. {_HELP}")

    def _build(self, node: ast.expr) -> _Node:
        if isinstance(node, ast.BoolOp):
            joiner = "and" if isinstance(node.op, ast.And) else "or"
            return _Bool(joiner, tuple(self._build(v) for v in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return _Not(self._build(node.operand))
        if isinstance(node, ast.Compare):
            parts: list[_Node] = []
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                parts.append(self._compare(left, op, right))
                left = right
            return parts[0] if len(parts) == 1 else _Bool("and", tuple(parts))
        raise self._fail(f"{_text(node)!r} is not a comparison")

    def _compare(self, left: ast.expr, op: ast.cmpop, right: ast.expr) -> _Node:
        if isinstance(op, ast.In | ast.NotIn):
            item = self._operand(left)
            if not isinstance(item, _Col):
                raise self._fail(f"the left side of 'in' must be a name, not {_text(left)!r}")
            if not isinstance(right, ast.List | ast.Tuple | ast.Set):
                raise self._fail(f"'in' needs a list such as ['a', 'b'], not {_text(right)!r}")
            values = tuple(self._operand(v) for v in right.elts)
            if not all(isinstance(v, _Const) for v in values):
                raise self._fail("the list after 'in' may only hold numbers and strings")
            return _In(item, values, isinstance(op, ast.NotIn))  # type: ignore[arg-type]
        if type(op) not in _CMP_OPS:
            raise self._fail(f"operator {type(op).__name__!r} is not allowed")
        lhs, rhs = self._operand(left), self._operand(right)
        if isinstance(lhs, _Const) and isinstance(rhs, _Const):
            raise self._fail(f"{_text(left)!r} and {_text(right)!r} are both constants")
        return _Cmp(lhs, _CMP_OPS[type(op)], rhs)

    def _operand(self, node: ast.expr) -> _Col | _Const:
        if isinstance(node, ast.Constant):
            value = node.value
            if isinstance(value, bool):  # MLflow stores Python booleans as "True"/"False"
                return _Const(str(value))
            if isinstance(value, int | float | str):
                return _Const(value)
            raise self._fail(f"{_text(node)!r} is neither a number nor a string")
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self._operand(node.operand)
            if not isinstance(inner, _Const) or isinstance(inner.value, str):
                raise self._fail(f"{_text(node)!r} is not a number")
            return _Const(-inner.value if isinstance(node.op, ast.USub) else inner.value)
        if isinstance(node, ast.Name):
            name = self._quoted.get(node.id, node.id)
            if name in ATTRIBUTES:
                return _Col(name)
            raise self._fail(
                f"unknown name {name!r} (write metrics.{name}, params.{name} or tags.{name})"
            )
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            index = node.slice
            if isinstance(index, ast.Constant) and isinstance(index.value, str):
                return self._column(node.value.id, index.value)
            raise self._fail(f"{_text(node)!r}: use a quoted name inside [...]")
        if isinstance(node, ast.Attribute):
            chain: list[str] = []
            current: ast.expr = node
            while isinstance(current, ast.Attribute):
                chain.append(current.attr)
                current = current.value
            if isinstance(current, ast.Name):
                chain.append(current.id)
                chain.reverse()
                key = ".".join(self._quoted.get(part, part) for part in chain[1:])
                return self._column(chain[0], key)
        raise self._fail(f"{_text(node)!r} is neither a name, a number nor a string")

    def _column(self, prefix: str, key: str) -> _Col:
        kind = _PREFIXES.get(prefix)
        if kind is None:
            raise self._fail(f"{prefix!r} is not one of params, metrics, tags or attributes")
        if kind == "attributes":
            if key not in ATTRIBUTES:
                raise self._fail(f"unknown attribute {key!r}")
            return _Col(key)
        return _Col(f"{kind}.{key}")

    # -- using -------------------------------------------------------------------------
    def mask(self, frame: pd.DataFrame) -> np.ndarray:
        """Which rows of a ``runs()`` frame satisfy the filter (a boolean array)."""
        return _eval(self._node, frame, {})

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` that satisfy the filter."""
        return frame[self.mask(frame)]

    def missing_columns(self, frame: pd.DataFrame) -> list[str]:
        """Names the filter uses that no run has (a likely typo when nothing matches)."""
        return [c for c in self.columns if c not in frame.columns]

    def mlflow_filter(self) -> str:
        """The part of the filter MLflow's ``filter_string`` can evaluate itself.

        Only top-level ``and`` terms that mean the same in both languages are passed on
        (metrics against numbers; params, tags, status and run name equal to text that is
        not a number); the whole filter is then applied to what MLflow returns, so this
        only saves transfer.
        """
        terms = self._node.items if isinstance(self._node, _Bool) else (self._node,)
        if isinstance(self._node, _Bool) and self._node.op != "and":
            return ""
        out = [t for t in (_mlflow_term(term) for term in terms) if t]
        return " and ".join(out)


def _normalise(expression: str) -> tuple[str, dict[str, str]]:
    """MLflow spellings to Python ones: `quoted names`, ``=``, AND/OR/NOT/IN."""
    quoted: dict[str, str] = {}

    def keep(match: re.Match[str]) -> str:
        name = f"_q{len(quoted)}_"
        quoted[name] = match.group(1)
        return name

    text = re.sub(r"`([^`]*)`", keep, expression)
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise QueryError(f"Filter {expression!r} is not valid: {exc}. {_HELP}") from None
    out: list[tuple[int, str]] = []
    previous = ""
    for tok in tokens:
        string = tok.string
        if tok.type == tokenize.OP and string == "=":
            string = "=="
        elif tok.type == tokenize.NAME and string in _KEYWORDS and previous != ".":
            string = _KEYWORDS[string]
        out.append((tok.type, string))
        previous = tok.string
    return tokenize.untokenize(out), quoted


def _text(node: ast.expr) -> str:
    try:
        return ast.unparse(node)
    except Exception:
        return type(node).__name__


def _columns(node: _Node) -> set[str]:
    if isinstance(node, _Bool):
        return set().union(*(_columns(i) for i in node.items))
    if isinstance(node, _Not):
        return _columns(node.item)
    if isinstance(node, _In):
        return {node.item.name}
    return {o.name for o in (node.left, node.right) if isinstance(o, _Col)}


def _mlflow_term(node: _Node) -> str | None:
    if not isinstance(node, _Cmp):
        return None
    col, const, op = node.left, node.right, node.op
    if isinstance(col, _Const):
        col, const, op = node.right, node.left, _MIRROR[op]
    if not isinstance(col, _Col) or not isinstance(const, _Const):
        return None
    value = const.value
    kind, _, key = col.name.partition(".")
    if kind == "metrics" and isinstance(value, int | float):
        return f"metrics.`{key}` {'=' if op == '==' else op} {float(value)!r}"
    textual = isinstance(value, str) and as_number(value) is None and "'" not in value
    if not textual or op not in ("==", "!="):
        return None
    sql_op = "=" if op == "==" else "!="
    if kind in ("params", "tags") and "`" not in key:
        return f"{kind}.`{key}` {sql_op} '{value}'"
    if col.name in ("status", "run_name"):
        return f"attributes.{col.name} {sql_op} '{value}'"
    return None


@dataclass
class _Side:
    text: Any  # object ndarray (or a str for a constant)
    number: Any  # float ndarray (or a float/None for a constant)
    missing: Any  # bool ndarray (or False)


def _side(operand: _Col | _Const, frame: pd.DataFrame, cache: dict[str, _Side]) -> _Side:
    import numpy as np
    import pandas as pd

    if isinstance(operand, _Const):
        value = operand.value
        return _Side(str(value), as_number(value), False)
    if operand.name in cache:
        return cache[operand.name]
    n = len(frame)
    if operand.name not in frame.columns:
        side = _Side(np.full(n, "", dtype=object), np.full(n, np.nan), np.ones(n, dtype=bool))
    else:
        series = frame[operand.name]
        missing = series.isna().to_numpy()
        if operand.name in _TIME_COLUMNS:
            number = ((series - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)).to_numpy(
                dtype=float, na_value=np.nan
            )
            text = series.astype(object).where(~missing, "").astype(str).to_numpy(dtype=object)
        elif pd.api.types.is_numeric_dtype(series.dtype):
            number = series.to_numpy(dtype=float, na_value=np.nan)
            text = np.full(n, "", dtype=object)  # never compared as text: numbers or missing
        else:
            text = series.astype(object).where(~missing, "").to_numpy(dtype=object)
            number = numbers_of(series)
        side = _Side(text, number, missing)
    cache[operand.name] = side
    return side


def _time_const(value: float | str, expression_column: str) -> float:
    import pandas as pd

    number = as_number(value)
    if number is not None:
        return number  # milliseconds since the epoch, as MLflow stores times
    try:
        stamp = pd.Timestamp(str(value))
    except (ValueError, TypeError):
        raise QueryError(
            f"{value!r} is not a time for {expression_column} "
            "(use an ISO date such as '2026-01-31 12:00' or milliseconds since 1970)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.tz_localize("UTC")
    return (stamp - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(milliseconds=1)


def _compare(node: _Cmp, frame: pd.DataFrame, cache: dict[str, _Side]) -> np.ndarray:
    import numpy as np

    left, right = node.left, node.right
    for col, other in ((left, right), (right, left)):
        if isinstance(col, _Col) and col.name in _TIME_COLUMNS and isinstance(other, _Const):
            converted = _Const(_time_const(other.value, col.name))
            left, right = (left, converted) if other is right else (converted, right)
    a, b = _side(left, frame, cache), _side(right, frame, cache)
    fn = _PY_OPS[node.op]
    n = len(frame)
    missing = np.asarray(a.missing, dtype=bool) | np.asarray(b.missing, dtype=bool)
    a_num = np.broadcast_to(np.asarray(a.number if a.number is not None else np.nan, float), n)
    b_num = np.broadcast_to(np.asarray(b.number if b.number is not None else np.nan, float), n)
    a_isnum, b_isnum = ~np.isnan(a_num), ~np.isnan(b_num)
    both = a_isnum & b_isnum
    with np.errstate(invalid="ignore"):
        result = np.where(both, fn(a_num, b_num), False)
    neither = ~a_isnum & ~b_isnum & ~missing
    if neither.any():
        a_text = np.broadcast_to(np.asarray(a.text, dtype=object), n)
        b_text = np.broadcast_to(np.asarray(b.text, dtype=object), n)
        idx = np.flatnonzero(neither)
        result[idx] = [bool(fn(x, y)) for x, y in zip(a_text[idx], b_text[idx], strict=True)]
    if node.op == "!=":  # a number and a text differ; ordering them means nothing
        result |= a_isnum ^ b_isnum
    result &= ~missing
    return np.asarray(result, dtype=bool)


def _eval(node: _Node, frame: pd.DataFrame, cache: dict[str, _Side]) -> np.ndarray:
    import numpy as np

    if isinstance(node, _Bool):
        masks = [_eval(i, frame, cache) for i in node.items]
        combine = np.logical_and if node.op == "and" else np.logical_or
        out = masks[0]
        for m in masks[1:]:
            out = combine(out, m)
        return out
    if isinstance(node, _Not):
        return ~_eval(node.item, frame, cache)
    if isinstance(node, _In):
        out = np.zeros(len(frame), dtype=bool)
        for value in node.values:
            out |= _compare(_Cmp(node.item, "==", value), frame, cache)
        if node.negate:
            present = ~np.asarray(_side(node.item, frame, cache).missing, dtype=bool)
            return np.asarray(~out & present, dtype=bool)
        return out
    return _compare(node, frame, cache)
