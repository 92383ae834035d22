"""Conditions over named numbers: registry gates, alert rules, retraining triggers.

``accuracy >= 0.9 and f1 > 0.8`` or ``drift_share > 0.3 or p99_ms > 50``: comparisons of
names and numbers joined by and/or/not. The expression is parsed and walked, never
``eval``-ed, so a notebook or a config file cannot smuggle code through it.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.errors import ConditionError

_COMPARE: dict[type[ast.cmpop], tuple[str, Callable[[float, float], bool]]] = {
    ast.Gt: (">", operator.gt),
    ast.GtE: (">=", operator.ge),
    ast.Lt: ("<", operator.lt),
    ast.LtE: ("<=", operator.le),
    ast.Eq: ("==", operator.eq),
    ast.NotEq: ("!=", operator.ne),
}


@dataclass
class ConditionResult:
    """The outcome of a condition: each comparison with the values it saw."""

    expression: str
    passed: bool
    checks: list[dict[str, Any]] = field(default_factory=list)

    def explain(self, marks: tuple[str, str] = ("ok", "FAILED")) -> str:
        """Each comparison with its values; ``marks`` name a true and a false one (a gate
        says ok/FAILED, an alert rule true/false)."""
        parts = []
        for check in self.checks:
            mark = marks[0] if check["passed"] else marks[1]
            parts.append(
                f"{check['left_text']} = {check['left']:.6g} {check['op']} "
                f"{check['right']:.6g}: {mark}"
            )
        return "; ".join(parts)


class Condition:
    """A condition over named figures, e.g. ``accuracy >= 0.9 and f1 > 0.85``.

    Only comparisons of metric names and numbers joined by and/or/not are allowed:
    the expression is walked, never ``eval``-ed.
    """

    kind = "Condition"  # how messages name it ("Gate" in the registry)

    def __init__(self, expression: str) -> None:
        self.expression = expression.strip()
        try:
            self._tree = ast.parse(self.expression, mode="eval").body
        except SyntaxError as exc:
            raise ConditionError(
                f"{self.kind} {expression!r} is not valid: {exc.msg}. "
                'Write comparisons such as "accuracy >= 0.9 and f1 > 0.8"'
            ) from None
        self.metrics = sorted(self._validate(self._tree))

    def _validate(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.BoolOp):
            return set().union(*(self._validate(v) for v in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self._validate(node.operand)
        if isinstance(node, ast.Compare):
            names: set[str] = set()
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise ConditionError(f"{self.kind} {self.expression!r}: operator not allowed")
            for operand in [node.left, *node.comparators]:
                names |= self._operand(operand)
            return names
        raise ConditionError(
            f"{self.kind} {self.expression!r}: only comparisons of names and numbers joined by "
            "and/or/not are allowed"
        )

    def _operand(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.Name):
            return {node.id}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id != "metrics":
                raise ConditionError(
                    f"{self.kind} {self.expression!r}: use plain names or metrics.<name>"
                )
            return {node.attr}
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return set()
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return self._operand(node.operand)
        raise ConditionError(
            f"{self.kind} {self.expression!r}: {ast.unparse(node)!r} is neither a name nor a number"
        )

    def evaluate(self, metrics: Mapping[str, float]) -> ConditionResult:
        missing = [m for m in self.metrics if m not in metrics]
        if missing:
            have = ", ".join(sorted(metrics)) or "none"
            raise ConditionError(
                f"{self.kind} {self.expression!r} needs {missing}, which are not available "
                f"(available: {have})"
            )
        result = ConditionResult(self.expression, passed=False)
        result.passed = self._eval(self._tree, metrics, result)
        return result

    def _value(self, node: ast.expr, metrics: Mapping[str, float]) -> float:
        if isinstance(node, ast.Name):
            return float(metrics[node.id])
        if isinstance(node, ast.Attribute):
            return float(metrics[node.attr])
        if isinstance(node, ast.UnaryOp):
            value = self._value(node.operand, metrics)
            return -value if isinstance(node.op, ast.USub) else value
        assert isinstance(node, ast.Constant) and isinstance(node.value, int | float)
        return float(node.value)

    def _eval(self, node: ast.expr, metrics: Mapping[str, float], out: ConditionResult) -> bool:
        if isinstance(node, ast.BoolOp):
            values = [self._eval(v, metrics, out) for v in node.values]  # record every check
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            return not self._eval(node.operand, metrics, out)
        assert isinstance(node, ast.Compare)
        ok = True
        left_node = node.left
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            symbol, fn = _COMPARE[type(op)]
            left, right = self._value(left_node, metrics), self._value(right_node, metrics)
            passed = fn(left, right)
            out.checks.append(
                {
                    "left_text": ast.unparse(left_node),
                    "left": left,
                    "op": symbol,
                    "right": right,
                    "right_text": ast.unparse(right_node),
                    "passed": passed,
                }
            )
            ok = ok and passed
            left_node = right_node
        return ok
