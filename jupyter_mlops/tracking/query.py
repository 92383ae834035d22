"""Runs as a table: ``runs()`` returns a pandas DataFrame of tracked runs, filtered with a
small safe expression language (``where``), for the comparison widgets and one's own analysis.

The frame has MLflow's ``search_runs`` columns (``run_id``, ``experiment_id``, ``status``,
``artifact_uri``, ``start_time``, ``end_time``, ``metrics.*``, ``params.*``, ``tags.*``)
plus ``run_name``, ``experiment``, ``user``, ``duration`` (seconds) and ``data`` (short
hashes of the data the run read: DVC snapshots and fingerprinted training sets).

Why the store is read directly: for the embedded SQLite store (the default), MLflow's
``search_runs`` builds an ORM object and then an entity per run, param, metric and tag; that
costs about 1.1 s per 1,000 runs, far too slow for a widget over 10,000 runs. Here each of
MLflow's tables (runs, params, latest_metrics, tags) is read with one SQL query and pivoted
with numpy, which gives the same values (tests/test_compare.py checks the two agree) in a
fraction of the time and without importing MLflow. Any other tracking URI (a server,
another database), or a SQLite schema that does not look like the one expected, goes
through ``MlflowClient.search_runs`` instead, with what it can evaluate pushed into its
``filter_string``.
"""

from __future__ import annotations

import ast
import io
import json
import logging
import operator
import re
import sqlite3
import tokenize
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from jupyter_mlops._util.urls import redact
from jupyter_mlops.config import Config, load_config
from jupyter_mlops.errors import NotFoundError, QueryError
from jupyter_mlops.tracking.run import TAG_DATA, TAG_MODELS, TAG_NOTEBOOK

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

_log = logging.getLogger(__name__)

Reader = Literal["auto", "sqlite", "mlflow"]
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
_RUN_REF = re.compile(r"[0-9a-fA-F]{1,32}")
_PAGE = 50_000  # MLflow's largest page for search_runs


# -- the --where language ---------------------------------------------------------------
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
            op = "and" if isinstance(node.op, ast.And) else "or"
            return _Bool(op, tuple(self._build(v) for v in node.values))
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
            key = node.slice
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                return self._column(node.value.id, key.value)
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
    textual = isinstance(value, str) and _number(value) is None and "'" not in value
    if not textual or op not in ("==", "!="):
        return None
    sql_op = "=" if op == "==" else "!="
    if kind in ("params", "tags") and "`" not in key:
        return f"{kind}.`{key}` {sql_op} '{value}'"
    if col.name in ("status", "run_name"):
        return f"attributes.{col.name} {sql_op} '{value}'"
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return None if number != number else number  # "nan" is text here


def numbers_of(series: pd.Series) -> np.ndarray:
    """A column's values as floats: NaN where missing or not a number.

    Params and tags are text in MLflow; each distinct text is parsed once (sweeps repeat
    their values), with the same rule as the constants of a filter.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and series.dtype != bool:
        return series.to_numpy(dtype=float, na_value=np.nan)
    codes, uniques = pd.factorize(series)  # -1 for missing values
    parsed = [_number(u) for u in uniques]
    table = np.array([np.nan if v is None else v for v in parsed] + [np.nan], dtype=float)
    return table[codes]


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
        return _Side(str(value), _number(value), False)
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

    number = _number(value)
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
            return ~out & present
        return out
    return _compare(node, frame, cache)


# -- reading runs -----------------------------------------------------------------------
@dataclass
class _Long:
    """What a reader returns: one row per run, and (run, key, value) rows per kind.

    Runs are referred to by an integer (SQLite's rowid, or a counter), in ascending order
    in ``info``: integers are cheaper than 32-character ids to create and to look up, which
    matters with hundreds of thousands of param rows.
    """

    info: list[tuple[Any, ...]] = field(default_factory=list)  # (number, *_INFO_COLUMNS)
    params: list[tuple[int, str, Any]] = field(default_factory=list)
    metrics: list[tuple[int, str, Any]] = field(default_factory=list)  # None for NaN
    tags: list[tuple[int, str, Any]] = field(default_factory=list)
    datasets: list[tuple[int, str, Any]] = field(default_factory=list)  # run, name, hash
    experiments: dict[str, str] = field(default_factory=dict)  # id -> name


_INFO_COLUMNS = (
    "run_id",
    "run_name",
    "experiment_id",
    "status",
    "start_time",
    "end_time",
    "artifact_uri",
    "user",
)
_NEEDED = {
    "experiments": {"experiment_id", "name", "lifecycle_stage"},
    "runs": {
        "run_uuid",
        "name",
        "experiment_id",
        "status",
        "start_time",
        "end_time",
        "artifact_uri",
        "user_id",
        "lifecycle_stage",
    },
    "params": {"run_uuid", "key", "value"},
    "latest_metrics": {"run_uuid", "key", "value", "is_nan"},
    "tags": {"run_uuid", "key", "value"},
}


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for anything else)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    raw = tracking_uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not raw or raw == ":memory:":
        return None
    return Path(unquote(raw))


class _SqliteReader:
    """One SQL query per MLflow table of the embedded store, read-only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)

    def close(self) -> None:
        self.conn.close()

    def usable(self) -> bool:
        """True when MLflow's tables have the columns read here (else use MLflow's client)."""
        for table, needed in _NEEDED.items():
            cols = {row[1] for row in self.conn.execute(f"PRAGMA table_info({table})")}
            if not needed <= cols:
                return False
        cols = {row[1] for row in self.conn.execute("PRAGMA table_info(experiments)")}
        if "workspace" in cols:
            # Experiments in other workspaces are hidden from a default client: let it decide.
            other = self.conn.execute(
                "SELECT 1 FROM experiments WHERE workspace != 'default' LIMIT 1"
            ).fetchone()
            if other:
                return False
        return True

    def experiments(self) -> list[tuple[str, str, str]]:
        rows = self.conn.execute("SELECT experiment_id, name, lifecycle_stage FROM experiments")
        return [(str(i), str(n), str(s)) for i, n, s in rows]

    def notebook_experiment(self, notebook: str) -> str | None:
        row = self.conn.execute(
            "SELECT r.experiment_id FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
            "WHERE t.key = ? AND t.value = ? AND r.lifecycle_stage = 'active' "
            "ORDER BY r.start_time DESC LIMIT 1",
            (TAG_NOTEBOOK, notebook),
        ).fetchone()
        return None if row is None else str(row[0])

    def read(self, experiment_ids: Sequence[str], refs: Sequence[str]) -> _Long:
        where = ["r.lifecycle_stage = 'active'"]
        args: list[Any] = []
        if experiment_ids:
            where.append(f"r.experiment_id IN ({','.join('?' * len(experiment_ids))})")
            args.extend(int(e) for e in experiment_ids)
        if refs:
            alternatives = []
            for ref in refs:
                alternatives.append("r.name = ?")
                args.append(ref)
                if _RUN_REF.fullmatch(ref):
                    alternatives.append("substr(r.run_uuid, 1, ?) = ?")
                    args.extend([len(ref), ref.lower()])
            where.append(f"({' OR '.join(alternatives)})")
        clause = " AND ".join(where)
        long = _Long(experiments={i: n for i, n, _ in self.experiments()})
        long.info = self.conn.execute(
            "SELECT r.rowid, r.run_uuid, r.name, CAST(r.experiment_id AS TEXT), r.status, "
            "r.start_time, r.end_time, r.artifact_uri, r.user_id "
            f"FROM runs r WHERE {clause} ORDER BY r.rowid",
            args,
        ).fetchall()
        if not long.info:
            return long

        def table(sql: str) -> list[Any]:
            return self.conn.execute(
                f"{sql} JOIN runs r ON r.run_uuid = x.run_uuid WHERE {clause}", args
            ).fetchall()

        long.params = table("SELECT r.rowid, x.key, x.value FROM params x")
        long.tags = table("SELECT r.rowid, x.key, x.value FROM tags x")
        # MLflow stores NaN as 0 with is_nan set; NULL becomes NaN in the pivot.
        long.metrics = table(
            "SELECT r.rowid, x.key, CASE WHEN x.is_nan THEN NULL ELSE x.value END "
            "FROM latest_metrics x"
        )
        long.datasets = self._datasets(clause, args)
        return long

    def _datasets(self, clause: str, args: list[Any]) -> list[tuple[int, str, Any]]:
        try:
            return self.conn.execute(
                "SELECT r.rowid, d.name, t.value FROM inputs x "
                "JOIN datasets d ON d.dataset_uuid = x.source_id "
                "LEFT JOIN input_tags t ON t.input_uuid = x.input_uuid "
                "AND t.name = 'mlops.content_hash' "
                "JOIN runs r ON r.run_uuid = x.destination_id "
                f"WHERE x.source_type = 'DATASET' AND x.destination_type = 'RUN' AND {clause}",
                args,
            ).fetchall()
        except sqlite3.Error:  # an older schema without dataset inputs
            return []

    def history(self, run_ids: Sequence[str], keys: Sequence[str] | None) -> list[Any]:
        sql = (
            "SELECT run_uuid, key, step, timestamp, value, is_nan FROM metrics "
            f"WHERE run_uuid IN ({','.join('?' * len(run_ids))})"
        )
        args = list(run_ids)
        if keys:
            sql += f" AND key IN ({','.join('?' * len(keys))})"
            args += list(keys)
        nan = float("nan")
        return [
            (r, k, s, t, nan if bad else v)
            for r, k, s, t, v, bad in self.conn.execute(sql + " ORDER BY step, timestamp", args)
        ]


class _MlflowReader:
    """MLflow's client, for tracking servers and databases other than SQLite."""

    def __init__(self, config: Config) -> None:
        from jupyter_mlops.tracking import store

        self.store = store
        self.client = store.client(config)

    def close(self) -> None:
        pass

    def experiments(self) -> list[tuple[str, str, str]]:
        from mlflow.entities import ViewType

        exps = self.store.call(self.client.search_experiments, view_type=ViewType.ALL)
        return [(str(e.experiment_id), e.name, e.lifecycle_stage) for e in exps]

    def notebook_experiment(self, notebook: str) -> str | None:
        exps = [i for i, _, stage in self.experiments() if stage == "active"]
        if not exps:
            return None
        found = self.store.call(
            self.client.search_runs,
            exps,
            filter_string=f"tags.`{TAG_NOTEBOOK}` = '{notebook}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return str(found[0].info.experiment_id) if found else None

    def read(
        self, experiment_ids: Sequence[str], refs: Sequence[str], filter_string: str = ""
    ) -> _Long:
        long = _Long(experiments={i: n for i, n, _ in self.experiments()})
        ids = list(experiment_ids) or [i for i, n in long.experiments.items()]
        if refs and all(len(r) == 32 and _RUN_REF.fullmatch(r) for r in refs):
            quoted = ", ".join(f"'{r.lower()}'" for r in refs)
            filter_string = " and ".join(
                f for f in (filter_string, f"attributes.run_id IN ({quoted})") if f
            )
        token = None
        while ids:
            page = self.store.call(
                self.client.search_runs,
                ids,
                filter_string=filter_string,
                max_results=_PAGE,
                page_token=token,
            )
            for run in page:
                info, data = run.info, run.data
                if refs and not _matches_ref(info.run_id, info.run_name, refs):
                    continue
                rid = len(long.info)
                long.info.append(
                    (
                        rid,
                        info.run_id,
                        info.run_name,
                        str(info.experiment_id),
                        info.status,
                        info.start_time,
                        info.end_time,
                        info.artifact_uri,
                        info.user_id,
                    )
                )
                long.params += [(rid, k, v) for k, v in data.params.items()]
                long.metrics += [(rid, k, v) for k, v in data.metrics.items()]
                long.tags += [(rid, k, v) for k, v in data.tags.items()]
                for ds in run.inputs.dataset_inputs if run.inputs else []:
                    tags = {t.key: t.value for t in ds.tags}
                    long.datasets.append((rid, ds.dataset.name, tags.get("mlops.content_hash")))
            token = page.token
            if not token:
                break
        return long

    def history(self, run_ids: Sequence[str], keys: Sequence[str] | None) -> list[Any]:
        out = []
        for rid in run_ids:
            run = self.store.call(self.client.get_run, rid)
            for key in keys or list(run.data.metrics):
                if key not in run.data.metrics:
                    continue
                for m in self.store.call(self.client.get_metric_history, rid, key):
                    out.append((rid, key, m.step, m.timestamp, m.value))
        return out


def _matches_ref(run_id: str, run_name: str | None, refs: Sequence[str]) -> bool:
    return any(
        run_name == ref or (_RUN_REF.fullmatch(ref) and run_id.startswith(ref.lower()))
        for ref in refs
    )


def _open_reader(config: Config, reader: Reader) -> _SqliteReader | _MlflowReader | None:
    """The reader to use; None when the embedded store does not exist yet (no runs)."""
    path = sqlite_path(config.tracking_uri)
    if reader == "mlflow" or path is None:
        if reader == "sqlite":
            raise QueryError(f"{config.tracking_uri} is not a SQLite store")
        return _MlflowReader(config)
    if not path.is_file():
        return None
    try:
        sql = _SqliteReader(path)
        if sql.usable():
            return sql
        sql.close()
    except sqlite3.Error as exc:
        _log.debug("reading %s directly failed (%s): using MLflow's client", path, exc)
    if reader == "sqlite":
        raise QueryError(f"{path} does not have the MLflow schema this version reads")
    return _MlflowReader(config)


def _pivot(
    numbers: np.ndarray, rows: list[Any], *, numeric: bool, prefix: str
) -> dict[str, np.ndarray]:
    """(run number, key, value) rows to one array per key, aligned with ``numbers``
    (ascending). One object array and vectorised indexing: no Python loop per row."""
    import numpy as np
    import pandas as pd

    if not rows:
        return {}
    table = np.array(rows, dtype=object)
    where = np.searchsorted(numbers, table[:, 0].astype(np.int64))
    codes, keys = pd.factorize(table[:, 1], sort=True)
    if numeric:
        grid = np.full((len(numbers), len(keys)), np.nan)
        values = table[:, 2]
        grid[where, codes] = np.where(pd.isna(values), np.nan, values).astype(float)
    else:
        grid = np.full((len(numbers), len(keys)), None, dtype=object)
        grid[where, codes] = table[:, 2]
    return {f"{prefix}{k}": grid[:, i] for i, k in enumerate(keys)}


def _data_summary(dvc_tag: Any, datasets: Sequence[tuple[str, Any]]) -> str | None:
    """A short text naming the data a run read: DVC md5s and training-set hashes."""
    parts = []
    if isinstance(dvc_tag, str) and dvc_tag:
        try:
            for snap in json.loads(dvc_tag):
                parts.append(f"{snap['path']}@{str(snap['md5'])[:8]}")
        except (ValueError, TypeError, KeyError):
            parts.append("?")
    for name, digest in datasets:
        if digest:
            parts.append(f"{name}#{str(digest)[:8]}")
    return " ".join(parts) or None


def _data_column(
    numbers: np.ndarray, dvc_tags: Any, datasets: dict[int, list[tuple[str, Any]]]
) -> np.ndarray:
    import numpy as np

    seen: dict[tuple[Any, ...], str | None] = {}  # sweeps share their data: parse once
    out = np.empty(len(numbers), dtype=object)
    for i, (number, tag) in enumerate(zip(numbers.tolist(), dvc_tags, strict=True)):
        used = tuple(datasets.get(number, ()))
        key = (tag, used)
        if key not in seen:
            seen[key] = _data_summary(tag, used)
        out[i] = seen[key]
    return out


def _assemble(long: _Long) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    info = list(zip(*long.info, strict=True)) if long.info else [() for _ in range(9)]
    numbers = np.asarray(info[0], dtype=np.int64)
    columns: dict[str, Any] = dict(zip(_INFO_COLUMNS, info[1:], strict=True))
    start = pd.to_datetime(pd.Series(columns["start_time"], dtype="float64"), unit="ms", utc=True)
    end = pd.to_datetime(pd.Series(columns["end_time"], dtype="float64"), unit="ms", utc=True)
    tags = _pivot(numbers, long.tags, numeric=False, prefix="tags.")
    names = np.asarray(columns["run_name"], dtype=object)
    tag_names = tags.get("tags.mlflow.runName")
    if tag_names is not None:  # as MLflow does: the tag names a run without a name
        names = np.where(pd.isna(names) | (names == ""), tag_names, names)
    datasets: dict[int, list[tuple[str, Any]]] = {}
    for number, name, digest in long.datasets:
        datasets.setdefault(number, []).append((name, digest))
    dvc_tags = tags.get(f"tags.{TAG_DATA}", [None] * len(numbers))
    frame_columns: dict[str, Any] = {
        "run_id": np.asarray(columns["run_id"], dtype=object),
        "run_name": names,
        "experiment": np.asarray(
            [long.experiments.get(e, e) for e in columns["experiment_id"]], dtype=object
        ),
        "experiment_id": np.asarray(columns["experiment_id"], dtype=object),
        "status": np.asarray(columns["status"], dtype=object),
        "start_time": start,
        "end_time": end,
        "duration": ((end - start) / pd.Timedelta(seconds=1)).to_numpy(dtype=float),
        "user": np.asarray(columns["user"], dtype=object),
        "artifact_uri": np.asarray(columns["artifact_uri"], dtype=object),
        "data": _data_column(numbers, dvc_tags, datasets),
    }
    frame_columns.update(_pivot(numbers, long.metrics, numeric=True, prefix="metrics."))
    frame_columns.update(_pivot(numbers, long.params, numeric=False, prefix="params."))
    frame_columns.update(tags)
    return pd.DataFrame(frame_columns, copy=False)


def _resolve_experiments(
    reader: _SqliteReader | _MlflowReader,
    experiment: str | Sequence[str] | None,
    notebook: str | None,
    config: Config,
) -> list[str] | None:
    """Experiment ids to read (None when the experiment has no runs yet)."""
    known = reader.experiments()
    if experiment is None and config.experiment:
        experiment = str(config.experiment)
    if experiment is None:
        if notebook:
            found = reader.notebook_experiment(notebook)
            if found is not None:
                return [found]
            stem = Path(notebook).stem  # where the notebook's first run will go
            return [i for i, n, _ in known if n == stem] or None
        return [i for i, _, stage in known if stage == "active"] or None
    wanted = [experiment] if isinstance(experiment, str) else list(experiment)
    ids = []
    for name in wanted:
        match = [(i, stage) for i, n, stage in known if n == name or i == name]
        if not match:
            names = ", ".join(sorted(n for _, n, s in known if s == "active")) or "none"
            raise NotFoundError(f"No experiment {name!r} (experiments: {names})")
        exp_id, stage = match[0]
        if stage != "active":
            raise NotFoundError(f"Experiment {name!r} is deleted")
        ids.append(exp_id)
    return ids


def _check_refs(frame: pd.DataFrame, refs: Sequence[str]) -> pd.DataFrame:
    """Keep the runs the references name, in their order; errors for none or several."""
    rows: list[int] = []
    ids = frame["run_id"].to_numpy(dtype=object)
    names = frame["run_name"].to_numpy(dtype=object)
    for ref in refs:
        by_name = [i for i, n in enumerate(names) if n == ref]
        by_id = (
            [i for i, r in enumerate(ids) if r.startswith(ref.lower())]
            if _RUN_REF.fullmatch(ref)
            else []
        )
        found = by_id or by_name
        if len(by_id) == 1:
            found = by_id
        elif not by_id and len(by_name) == 1:
            found = by_name
        if not found:
            raise NotFoundError(f"No run {ref!r} (give a run id, a prefix of one, or a run name)")
        if len(found) > 1:
            listed = ", ".join(f"{ids[i]} ({names[i]})" for i in found[:5])
            raise QueryError(f"Run reference {ref!r} is ambiguous: {listed}")
        if found[0] not in rows:
            rows.append(found[0])
    return frame.iloc[rows]


def lower_is_better(metric: str) -> bool:
    """Whether smaller values of ``metric`` are better, guessed from its name."""
    from jupyter_mlops.registry import LOWER_IS_BETTER

    return bool(LOWER_IS_BETTER.search(metric))


def sort_runs(frame: pd.DataFrame, column: str, *, ascending: bool = True) -> pd.DataFrame:
    """``frame`` ordered by ``column``, numerically when its values read as numbers.

    Params are text in MLflow; sorting "100" after "20" would mislead. Missing values go last.
    """
    import pandas as pd

    if column not in frame.columns:
        raise QueryError(f"No column {column!r} to sort by")
    series = frame[column]
    key = series
    if series.dtype == object or pd.api.types.is_string_dtype(series.dtype):
        numbers = numbers_of(series)
        if (numbers == numbers).sum() == series.notna().sum():
            key = pd.Series(numbers, index=series.index)
        else:
            key = (
                series.astype(object)
                .where(series.notna(), None)
                .map(lambda v: None if v is None else str(v))
            )
    order = key.sort_values(ascending=ascending, na_position="last", kind="stable").index
    return frame.loc[order]


def runs(
    experiment: str | Sequence[str] | None = None,
    *,
    run_ids: Sequence[str] = (),
    where: str | Where | None = None,
    metric: str | None = None,
    top: int | None = None,
    ascending: bool | None = None,
    notebook: str | None = None,
    reader: Reader = "auto",
    config: Config | None = None,
) -> pd.DataFrame:
    """The tracked runs as a DataFrame, one row per run, for comparison and analysis.

    ``experiment``: a name (or names, or ids); by default the current notebook's
    experiment, else every experiment. ``run_ids``: runs to pick (ids, unambiguous id
    prefixes or run names; any experiment unless one is given). ``where``: a filter such
    as ``"params.n_estimators >= 100 and metrics.accuracy > 0.9"`` (see :class:`Where`).
    ``metric``/``top``: order by that metric, best first (smaller is better for
    loss/error-like names unless ``ascending`` says otherwise), and keep the first ``top``.
    Without ``metric`` the newest runs come first. ``reader``: ``auto`` reads the embedded
    SQLite store directly and anything else through MLflow's client (see the module doc).
    """
    import pandas as pd

    config = config or load_config()
    condition = Where(where) if isinstance(where, str) else where
    if top is not None and top < 1:
        raise QueryError(f"--top must be at least 1, got {top}")
    refs = [str(r).strip() for r in run_ids if str(r).strip()]
    if notebook is None and experiment is None and not refs:
        from jupyter_mlops.tracking.environment import notebook_path

        notebook = notebook_path(None, config.root)
    source = _open_reader(config, reader)
    if source is None:
        if experiment is not None:
            raise NotFoundError(
                f"No experiment {experiment!r}: {redact(config.tracking_uri)} is empty"
            )
        frame = _assemble(_Long())
    else:
        try:
            ids: list[str] | None = []  # every experiment, for runs named by id
            if experiment is not None or not refs:
                ids = _resolve_experiments(source, experiment, notebook, config)
            if ids is None:
                long = _Long()
            elif isinstance(source, _MlflowReader):
                pushed = condition.mlflow_filter() if condition else ""
                long = source.read(ids, refs, pushed)
            else:
                long = source.read(ids, refs)
        finally:
            source.close()
        frame = _assemble(long)
    if refs:
        frame = _check_refs(frame, refs)
    if condition is not None and len(frame):
        frame = condition.apply(frame)
    if metric:
        column = metric if metric.startswith("metrics.") else f"metrics.{metric}"
        if column not in frame.columns and len(frame):
            have = ", ".join(c.removeprefix("metrics.") for c in metric_columns(frame)) or "none"
            raise QueryError(f"No run has metric {metric!r} (metrics: {have})")
        if column in frame.columns:
            up = lower_is_better(column) if ascending is None else ascending
            frame = sort_runs(frame, column, ascending=up)
    elif not refs:
        frame = frame.sort_values(["start_time", "run_id"], ascending=[False, True], kind="stable")
    if top is not None:
        frame = frame.head(top)
    return pd.DataFrame(frame).reset_index(drop=True)


# -- helpers over a runs frame ----------------------------------------------------------
def param_columns(frame: pd.DataFrame) -> list[str]:
    """The ``params.*`` columns of a runs frame."""
    return [c for c in frame.columns if c.startswith("params.")]


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """The ``metrics.*`` columns of a runs frame."""
    return [c for c in frame.columns if c.startswith("metrics.")]


def varying(frame: pd.DataFrame, columns: Iterable[str]) -> list[str]:
    """The columns whose values differ between runs (a missing value counts as a value)."""
    out = []
    for c in columns:
        series = frame[c]
        if series.nunique(dropna=True) + int(series.isna().any() and series.notna().any()) > 1:
            out.append(c)
    return out


def model_names(frame: pd.DataFrame) -> list[str | None]:
    """Per run, the names of the models it logged (from the ``mlops.models`` tag)."""
    column = f"tags.{TAG_MODELS}"
    if column not in frame.columns:
        return [None] * len(frame)
    out: list[str | None] = []
    for raw in frame[column]:
        try:
            out.append(", ".join(json.loads(raw)) if isinstance(raw, str) and raw else None)
        except ValueError:
            out.append(None)
    return out


def metric_history(
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    *,
    reader: Reader = "auto",
    config: Config | None = None,
) -> pd.DataFrame:
    """Every logged value of the runs' metrics: columns run_id, key, step, timestamp, value."""
    import pandas as pd

    config = config or load_config()
    columns = ["run_id", "key", "step", "timestamp", "value"]
    if not run_ids:
        return pd.DataFrame(columns=columns)
    source = _open_reader(config, reader)
    if source is None:
        return pd.DataFrame(columns=columns)
    try:
        rows = source.history(list(run_ids), list(keys) if keys else None)
    finally:
        source.close()
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values(["run_id", "key", "step", "timestamp"], kind="stable").reset_index(
        drop=True
    )


def stepped_metrics(history: pd.DataFrame) -> list[str]:
    """Metrics logged at more than one step by some run (worth a line chart)."""
    if history.empty:
        return []
    steps = history.groupby(["run_id", "key"])["step"].nunique()
    return sorted({key for (_, key), n in steps.items() if n > 1})


def run_source(artifact_uri: str | None, run_id: str, config: Config | None = None) -> str | None:
    """The cell source ``%%track`` stored with a run (``mlops/cell.py``), if any.

    Local artifact folders are read directly (no MLflow import); other stores through
    MLflow's artifact API.
    """
    if artifact_uri and artifact_uri.startswith("file:"):
        path = Path(url2pathname(urlparse(artifact_uri).path)) / "mlops" / "cell.py"
        try:
            return path.read_text(encoding="utf-8")
        except OSError:
            return None
    if artifact_uri and artifact_uri.startswith("/"):
        path = Path(artifact_uri) / "mlops" / "cell.py"
        return path.read_text(encoding="utf-8") if path.is_file() else None
    try:
        import mlflow

        config = config or load_config()
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path="mlops/cell.py", tracking_uri=config.tracking_uri
        )
        return Path(local).read_text(encoding="utf-8")
    except Exception:  # runs not made by %%track, or an unreachable artifact store
        return None


@dataclass
class RunDiff:
    """What differs between runs: params, data snapshots, metrics and the cell source."""

    run_ids: list[str]
    names: list[str]
    params: dict[str, list[str | None]]  # only params whose values differ
    same_params: dict[str, str | None]
    metrics: dict[str, list[float | None]]
    data: dict[str, list[str | None]]  # path or dataset -> hash per run, when they differ
    sources: list[str | None]

    def source_diff(self, first: int = 0, second: int = 1) -> list[str]:
        """A unified diff of two runs' cell sources (empty when equal or unknown)."""
        import difflib

        a, b = self.sources[first], self.sources[second]
        if a is None or b is None or a == b:
            return []
        return list(
            difflib.unified_diff(
                a.splitlines(),
                b.splitlines(),
                self.names[first],
                self.names[second],
                lineterm="",
            )
        )


def _data_items(dvc_tag: Any, summary: Any) -> dict[str, str]:
    items: dict[str, str] = {}
    if isinstance(dvc_tag, str) and dvc_tag:
        try:
            for snap in json.loads(dvc_tag):
                items[str(snap["path"])] = str(snap["md5"])
        except (ValueError, TypeError, KeyError):
            pass
    if isinstance(summary, str):
        for part in summary.split():
            name, sep, digest = part.partition("#")
            if sep:
                items[f"dataset {name}"] = digest
    return items


def diff_runs(
    frame: pd.DataFrame,
    run_ids: Sequence[str],
    *,
    with_source: bool = True,
    config: Config | None = None,
) -> RunDiff:
    """Compare the runs ``run_ids`` of a ``runs()`` frame side by side."""
    import pandas as pd

    rows = frame.set_index("run_id", drop=False).loc[list(run_ids)]
    names = [str(n or r[:8]) for n, r in zip(rows["run_name"], rows["run_id"], strict=True)]

    def values(column: str) -> list[Any]:
        return [None if pd.isna(v) else v for v in rows[column]]

    params, same = {}, {}
    for column in param_columns(frame):
        vals = values(column)
        if all(v is None for v in vals):
            continue
        key = column.removeprefix("params.")
        if len(set(vals)) > 1:
            params[key] = vals
        else:
            same[key] = vals[0]
    metrics = {
        c.removeprefix("metrics."): values(c)
        for c in metric_columns(frame)
        if any(v is not None for v in values(c))
    }
    dvc = values(f"tags.{TAG_DATA}") if f"tags.{TAG_DATA}" in rows else [None] * len(rows)
    per_run = [_data_items(t, s) for t, s in zip(dvc, values("data"), strict=True)]
    data: dict[str, list[str | None]] = {}
    for key in sorted(set().union(*per_run)) if per_run else []:
        hashes = [items.get(key) for items in per_run]
        if len(set(hashes)) > 1:
            data[key] = hashes
    sources: list[str | None] = [None] * len(rows)
    if with_source:
        sources = [
            run_source(uri, rid, config)
            for uri, rid in zip(rows["artifact_uri"], rows["run_id"], strict=True)
        ]
    return RunDiff(list(rows["run_id"]), names, params, same, metrics, data, sources)


def mlflow_ui_url(config: Config | None = None, *, probe: Sequence[str] = ()) -> str | None:
    """The base URL of a running MLflow UI for this store, if one is known to be up.

    A tracking server is its own UI. For a local store, the addresses in ``probe`` (e.g.
    ``http://127.0.0.1:5000``, where ``mlflow ui`` listens by default) are asked for
    ``/health``; a refused connection answers at once.
    """
    import urllib.request

    config = config or load_config()
    if config.tracking_uri.startswith(("http://", "https://")):
        return config.tracking_uri.rstrip("/")
    for base in probe:
        try:
            with urllib.request.urlopen(f"{base.rstrip('/')}/health", timeout=0.3) as resp:
                if resp.read(16).strip() == b"OK":
                    return base.rstrip("/")
        except OSError:
            continue
    return None


def run_url(base: str, experiment_id: str, run_id: str) -> str:
    """The MLflow UI page of one run."""
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
