"""Business metrics: what a model earns, written as arithmetic over its labelled predictions.

``revenue = 12*tp - 3*fp`` or ``basket = mean(order_value) * rate(converted)``: a name, then
an expression of numbers, ``+ - * /``, parentheses and

* the confusion counts of the labelled rows (``tp fp tn fn n correct``; of the positive
  class, by default the last class, as :func:`~jupyter_mlops.predlog.scores.confusion_counts`
  says), and the model-quality scores (``accuracy``, ``f1``, ``rmse``...);
* aggregates of an outcome column (``outcome``, ``prediction`` or an extra field of the
  outcome records, such as ``order_value``): ``mean(c)``, ``sum(c)``, ``rate(c)`` (the share
  of rows where ``c`` is non-zero), ``count(c)`` (rows where ``c`` is present), ``min(c)``,
  ``max(c)``.

The expression is parsed and walked, never ``eval``-ed (as alert rules are), and bounded in
length and depth. Each metric gives ``<name>`` and ``<name>_per_1k`` (its value per 1,000
labelled rows), figures that alert rules and retraining triggers use like any other.
Metrics given to ``%monitor --business`` are stored per deployment in
``.mlops/monitoring/<deployment>/business.json``, so ``monitor check`` from cron computes
them too.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.conditions import tree_depth
from jupyter_mlops.errors import ConditionError, MonitoringError

if TYPE_CHECKING:
    import pandas as pd

    from jupyter_mlops.config import Config

__all__ = [
    "AGGREGATES",
    "COUNT_NAMES",
    "BusinessMetric",
    "get_business",
    "remove_business",
    "set_business",
]

BUSINESS_FILE = "business.json"
#: The confusion counts an expression can name.
COUNT_NAMES = ("tp", "fp", "tn", "fn", "n", "correct")
#: Score names an expression can name (those the rows' task gives).
SCORE_NAMES = ("accuracy", "f1", "precision", "recall", "roc_auc", "log_loss", "rmse", "mae", "r2")
MAX_LENGTH = 500
MAX_DEPTH = 30
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_RESERVED = {
    *COUNT_NAMES, *SCORE_NAMES, "label_coverage", "label_delay_s", "requests", "rps",
    "drift_share", "error_rate", "errors",
}  # fmt: skip

_ARITH: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def _rate(values: Any) -> float:
    import numpy as np

    present = values[~np.isnan(values)]
    return float(np.mean(present != 0)) if present.size else math.nan


def _aggregates() -> dict[str, Callable[[Any], float]]:
    import numpy as np

    def guard(fn: Callable[[Any], Any]) -> Callable[[Any], float]:
        def apply(values: Any) -> float:
            present = values[~np.isnan(values)]
            return float(fn(present)) if present.size else math.nan

        return apply

    return {
        "mean": guard(np.mean),
        "sum": lambda v: float(np.nansum(v)),
        "rate": _rate,
        "count": lambda v: float(np.count_nonzero(~np.isnan(v))),
        "min": guard(np.min),
        "max": guard(np.max),
    }


#: The aggregate functions an expression can call, each over one outcome column.
AGGREGATES = ("mean", "sum", "rate", "count", "min", "max")


class BusinessMetric:
    """One business metric: ``name = expression`` (see the module's docstring)."""

    def __init__(self, definition: str, expression: str | None = None) -> None:
        if expression is None:
            if not isinstance(definition, str) or "=" not in definition:
                raise ConditionError(
                    f"Business metric {_short(definition)} must read name = expression, "
                    'e.g. "revenue = 12*tp - 3*fp"'
                )
            name, _, expression = definition.partition("=")
        else:
            name = definition
        self.name = name.strip()
        self.expression = expression.strip()
        if not _NAME.match(self.name):
            raise ConditionError(
                f"Business metric name {_short(self.name)} must be a word "
                "(letters, digits, _), e.g. revenue"
            )
        if self.name in _RESERVED or self.name.endswith("_per_1k"):
            raise ConditionError(
                f"Business metric name {self.name!r} is taken by a monitored figure: choose another"
            )
        if len(self.expression) > MAX_LENGTH:
            raise ConditionError(
                f"Business metric {self.name} is {len(self.expression)} characters long; "
                f"at most {MAX_LENGTH}"
            )
        try:
            self._tree = ast.parse(self.expression, mode="eval").body
        except SyntaxError as exc:
            raise ConditionError(
                f"Business metric {self.name} = {_short(self.expression)} is not valid: "
                f"{exc.msg}. Write arithmetic such as 12*tp - 3*fp or sum(order_value)"
            ) from None
        except (RecursionError, MemoryError, ValueError):
            raise self._error(f"nested too deeply (at most {MAX_DEPTH} levels)") from None
        if tree_depth(self._tree, MAX_DEPTH) > MAX_DEPTH:
            raise self._error(f"nested too deeply (at most {MAX_DEPTH} levels)")
        self.names: set[str] = set()  # counts and scores named
        self.columns: set[str] = set()  # outcome columns aggregated
        self._validate(self._tree)

    @property
    def definition(self) -> str:
        return f"{self.name} = {self.expression}"

    def _error(self, why: str) -> ConditionError:
        return ConditionError(f"Business metric {self.name} = {_short(self.expression)}: {why}")

    def _validate(self, node: ast.expr) -> None:
        if isinstance(node, ast.BinOp):
            if type(node.op) not in _ARITH:
                raise self._error("only + - * / and parentheses are allowed")
            self._validate(node.left)
            self._validate(node.right)
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, ast.USub | ast.UAdd):
                raise self._error("only + - * / and parentheses are allowed")
            self._validate(node.operand)
        elif isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise self._error(f"{_short(repr(node.value))} is not a number")
        elif isinstance(node, ast.Name):
            if node.id not in COUNT_NAMES and node.id not in SCORE_NAMES:
                raise self._error(
                    f"unknown name {node.id!r}: use {', '.join(COUNT_NAMES)}, a score "
                    f"(accuracy, f1, rmse...) or an aggregate such as mean({node.id})"
                )
            self.names.add(node.id)
        elif isinstance(node, ast.Call):
            fn = node.func.id if isinstance(node.func, ast.Name) else None
            if fn not in AGGREGATES:
                raise self._error(f"functions are {', '.join(a + '(column)' for a in AGGREGATES)}")
            if node.keywords or len(node.args) != 1 or not isinstance(node.args[0], ast.Name):
                raise self._error(f"{fn}() takes one outcome column name, e.g. {fn}(order_value)")
            self.columns.add(node.args[0].id)
        else:
            raise self._error(f"{_short(ast.unparse(node))} is not allowed in arithmetic")

    def evaluate(self, names: Mapping[str, float], frame: pd.DataFrame) -> float:
        """The metric over labelled rows ``frame`` whose counts and scores are ``names``.

        Raises MonitoringError (one line) for a name or column these rows lack; a division
        by zero or an aggregate over no values gives NaN (the figure is then left out).
        """
        missing = sorted(self.names - set(names))
        if missing:
            raise MonitoringError(f"{self.name}: {', '.join(missing)} not available here")
        absent = sorted(c for c in self.columns if c not in frame.columns)
        if absent:
            raise MonitoringError(
                f"{self.name}: no outcome column {', '.join(absent)} (outcome records carry "
                "the extra fields business metrics aggregate)"
            )
        return self._eval(self._tree, names, frame, _aggregates(), {})

    def _eval(
        self,
        node: ast.expr,
        names: Mapping[str, float],
        frame: pd.DataFrame,
        aggs: Mapping[str, Callable[[Any], float]],
        cache: dict[str, Any],
    ) -> float:
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, names, frame, aggs, cache)
            right = self._eval(node.right, names, frame, aggs, cache)
            if isinstance(node.op, ast.Div) and right == 0:
                return math.nan
            return _ARITH[type(node.op)](left, right)
        if isinstance(node, ast.UnaryOp):
            value = self._eval(node.operand, names, frame, aggs, cache)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.Constant):
            return float(node.value)  # type: ignore[arg-type]  # a number: _validate saw it
        if isinstance(node, ast.Name):
            return float(names[node.id])
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        column = node.args[0].id  # type: ignore[attr-defined]
        if column not in cache:
            cache[column] = _numbers(frame[column], self.name, column)
        return aggs[node.func.id](cache[column])

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "expression": self.expression}

    @classmethod
    def of(cls, metric: str | Mapping[str, Any] | BusinessMetric) -> BusinessMetric:
        """A metric from ``"name = expression"``, its dict, or itself."""
        if isinstance(metric, BusinessMetric):
            return metric
        if isinstance(metric, str):
            return cls(metric)
        try:
            return cls(str(metric["name"]), str(metric["expression"]))
        except KeyError:
            raise MonitoringError(f"Not a business metric: {dict(metric)!r}") from None

    def __repr__(self) -> str:
        return f"BusinessMetric({self.definition!r})"


def _numbers(column: pd.Series, metric: str, name: str) -> Any:
    """``column`` as floats (booleans as 0/1, missing as NaN); a clear error otherwise."""
    import numpy as np
    import pandas as pd

    values = pd.to_numeric(column.map(_boolean) if column.dtype == object else column,
                           errors="coerce")  # fmt: skip
    out = values.to_numpy(dtype=float, na_value=np.nan)
    if column.notna().any() and np.isnan(out).all():
        raise MonitoringError(f"{metric}: outcome column {name} holds no numbers")
    return out


def _boolean(value: Any) -> Any:
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


def _short(text: Any, limit: int = 60) -> str:
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 5]}...{shown[-1]}"


def business_values(
    metrics: Iterable[BusinessMetric],
    names: Mapping[str, float],
    frame: pd.DataFrame,
    notes: dict[str, str] | None = None,
) -> dict[str, float]:
    """Each metric's ``<name>`` and ``<name>_per_1k`` over labelled rows ``frame``; one
    that cannot be computed is left out, and ``notes`` (if given) says why."""
    out: dict[str, float] = {}
    labelled = len(frame)
    for metric in metrics:
        why = None
        try:
            value = metric.evaluate(names, frame)
        except MonitoringError as exc:
            why = str(exc)
        else:
            if not math.isfinite(value):
                why = "undefined on these rows (a division by zero, or no values)"
        if why is not None:
            if notes is not None:
                notes.setdefault(metric.name, why)
                notes.setdefault(f"{metric.name}_per_1k", why)
            continue
        out[metric.name] = value
        if labelled:
            out[f"{metric.name}_per_1k"] = value / labelled * 1000.0
    return out


# -- storage ------------------------------------------------------------------------------


def _path(deployment: str, config: Config | None) -> Any:
    from jupyter_mlops.config import load_config
    from jupyter_mlops.monitoring.vitals import monitoring_dir

    return monitoring_dir(deployment, config or load_config()) / BUSINESS_FILE


def get_business(deployment: str, *, config: Config | None = None) -> list[BusinessMetric]:
    """The business metrics stored for ``deployment`` (empty when none)."""
    from jupyter_mlops.monitoring.rules import read_json

    path = _path(deployment, config)
    data = read_json(path, {})
    try:
        return [BusinessMetric.of(m) for m in data.get("metrics", [])]
    except ConditionError as exc:
        raise MonitoringError(f"{path}: {exc}; fix or remove that metric") from None


def set_business(
    deployment: str,
    metrics: Iterable[str | Mapping[str, Any] | BusinessMetric],
    *,
    config: Config | None = None,
) -> list[BusinessMetric]:
    """Store business metrics for ``deployment`` (one with a stored name replaces it); all
    are parsed first, so a malformed one stores nothing. Returns what is stored."""
    from jupyter_mlops.monitoring.rules import write_json
    from jupyter_mlops.serving import get_deployment

    parsed = [BusinessMetric.of(m) for m in metrics]
    get_deployment(deployment, config=config)  # an unknown deployment is an error
    by_name = {m.name: m for m in get_business(deployment, config=config)}
    for metric in parsed:
        by_name[metric.name] = metric
    stored = list(by_name.values())
    write_json(_path(deployment, config), {"metrics": [m.to_dict() for m in stored]})
    return stored


def remove_business(
    deployment: str, names: Iterable[str] | None = None, *, config: Config | None = None
) -> list[BusinessMetric]:
    """Remove the named business metrics (all with None); returns what is left."""
    from jupyter_mlops.monitoring.rules import write_json

    current = get_business(deployment, config=config)
    drop = {m.name for m in current} if names is None else set(names)
    unknown = drop - {m.name for m in current}
    if unknown:
        raise MonitoringError(f"No business metric(s) {sorted(unknown)} for {deployment}")
    kept = [m for m in current if m.name not in drop]
    write_json(_path(deployment, config), {"metrics": [m.to_dict() for m in kept]})
    return kept
