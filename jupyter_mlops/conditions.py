"""Conditions over named numbers: registry gates, alert rules, retraining triggers.

``accuracy >= 0.9 and f1 > 0.8`` or ``drift_share > 0.3 or p99_ms > 50``: comparisons of
names and numbers joined by and/or/not. The expression is parsed and walked, never
``eval``-ed, so a notebook or a config file cannot smuggle code through it.

A name is plain (``accuracy``), ``metrics.<name>`` (the same figure), or a role's figure:
``challenger.accuracy`` (``canary.accuracy`` alike) and ``primary.accuracy``, which a
deployment's promotion decision supplies (:mod:`jupyter_mlops.serving.decision`). A role's
figure keeps its prefix as its name: ``{"challenger.accuracy": 0.97, ...}``.

Its size is bounded: :data:`MAX_LENGTH` characters, checked before Python's parser sees it,
and :data:`MAX_DEPTH` levels of nesting, checked on the parsed tree without recursion (the
parser's own RecursionError caught), so 5,000 nested ``not``s are a ConditionError (a 400
from the sidebar). Every failure, whatever the text or the figures, is a one-line
ConditionError (tests/test_values.py tries this with hypothesis).
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.errors import ConditionError

#: The longest condition accepted (a gate or rule is a line, not a program).
MAX_LENGTH = 2000
#: The deepest nesting accepted (parentheses, not/and/or, signs): far beyond any real gate,
#: far below the parser's and the walker's recursion limits.
MAX_DEPTH = 50
#: Prefixes naming a deployment role's figure (``challenger.accuracy``); ``challenger`` and
#: ``canary`` are the same model, the one a promotion would make primary.
ROLES = ("challenger", "canary", "primary")

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
        if not isinstance(expression, str):
            raise ConditionError(f"{self.kind} must be text, got {type(expression).__name__}")
        self.expression = expression.strip()
        self._check_size()
        try:
            self._tree = ast.parse(self.expression, mode="eval").body
        except SyntaxError as exc:
            raise ConditionError(
                f"{self.kind} {_short(expression)} is not valid: {exc.msg}. "
                'Write comparisons such as "accuracy >= 0.9 and f1 > 0.8"'
            ) from None
        except (RecursionError, MemoryError, ValueError):  # too deep or odd for the parser
            raise self._too_complex() from None
        if tree_depth(self._tree) > MAX_DEPTH:
            raise self._too_complex()
        self.metrics = sorted(self._validate(self._tree))

    @property
    def named(self) -> str:
        """How messages name this condition: its kind and its text, cut to one short line."""
        return f"{self.kind} {_short(self.expression)}"

    def _check_size(self) -> None:
        """Refuse, before parsing, what is too long to be a gate or a rule."""
        if len(self.expression) > MAX_LENGTH:
            raise ConditionError(
                f"{self.kind} is {len(self.expression)} characters long; at most {MAX_LENGTH}"
            )

    def _too_complex(self) -> ConditionError:
        return ConditionError(
            f"{self.named} is nested too deeply: at most {MAX_DEPTH} "
            "levels of parentheses, not, and/or"
        )

    def _validate(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.BoolOp):
            return set().union(*(self._validate(v) for v in node.values))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self._validate(node.operand)
        if isinstance(node, ast.Compare):
            names: set[str] = set()
            for op in node.ops:
                if type(op) not in _COMPARE:
                    raise ConditionError(f"{self.named}: operator not allowed")
            for operand in [node.left, *node.comparators]:
                names |= self._operand(operand)
            return names
        raise ConditionError(
            f"{self.named}: only comparisons of names and numbers joined by and/or/not are allowed"
        )

    def _operand(self, node: ast.expr) -> set[str]:
        if isinstance(node, ast.Name):
            return {node.id}
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if node.value.id != "metrics" and node.value.id not in ROLES:
                raise ConditionError(
                    f"{self.named}: use plain names, metrics.<name> or a role's "
                    "(challenger.<name>, canary.<name>, primary.<name>)"
                )
            return {_name(node)}
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return set()
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return self._operand(node.operand)
        raise ConditionError(
            f"{self.named}: {_short(ast.unparse(node))} is neither a name nor a number"
        )

    @property
    def negates(self) -> bool:
        """Whether the condition uses ``not`` anywhere."""
        return any(isinstance(node, ast.Not) for node in ast.walk(self._tree))

    def comparisons(self) -> Iterator[tuple[str | float, str, str | float]]:
        """Each comparison as (left, operator, right), a side its figure's name or its number,
        and the operator's text (``a < b < c`` gives two)."""
        for node in ast.walk(self._tree):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                for op, left, right in zip(node.ops, sides, sides[1:], strict=False):
                    yield (self._side(left), _COMPARE[type(op)][0], self._side(right))

    def _side(self, node: ast.expr) -> str | float:
        if isinstance(node, ast.Name | ast.Attribute):
            return _name(node)
        try:
            return self._value(node, {})  # a number
        except ConditionError:  # a signed name: its text
            return ast.unparse(node)

    def evaluate(
        self,
        metrics: Mapping[str, float],
        judge: Callable[[dict[str, Any]], bool] | None = None,
    ) -> ConditionResult:
        """Whether the condition holds for ``metrics``, each comparison recorded in
        ``checks``; ``judge`` (given a check) may decide whether a comparison counts as true
        instead of its values alone (a promotion asks for a significant difference too)."""
        missing = [m for m in self.metrics if m not in metrics]
        if missing:
            have = ", ".join(sorted(metrics)) or "none"
            raise ConditionError(
                f"{self.named} needs {missing}, which are not available (available: {have})"
            )
        result = ConditionResult(self.expression, passed=False)
        result.passed = self._eval(self._tree, metrics, result, judge)
        return result

    def _value(self, node: ast.expr, metrics: Mapping[str, float]) -> float:
        if isinstance(node, ast.Name | ast.Attribute):
            name = _name(node)
            if name not in metrics:
                raise ConditionError(f"{self.named}: {_short(name)} has no value here")
            return self._number(metrics[name], name)
        if isinstance(node, ast.UnaryOp):
            value = self._value(node.operand, metrics)
            return -value if isinstance(node.op, ast.USub) else value
        assert isinstance(node, ast.Constant) and isinstance(node.value, int | float)
        return self._number(node.value, ast.unparse(node))

    def _number(self, value: Any, name: str) -> float:
        """``value`` as a float; a ConditionError for what is no number (or too large)."""
        try:
            return float(value)
        except OverflowError:
            raise ConditionError(f"{self.named}: {_short(name)} is too large a number") from None
        except (TypeError, ValueError):
            raise ConditionError(
                f"{self.named}: {_short(name)} is not a number ({_short(repr(value))})"
            ) from None

    def _eval(
        self,
        node: ast.expr,
        metrics: Mapping[str, float],
        out: ConditionResult,
        judge: Callable[[dict[str, Any]], bool] | None,
    ) -> bool:
        if isinstance(node, ast.BoolOp):
            # every check recorded, none short-circuited
            values = [self._eval(v, metrics, out, judge) for v in node.values]
            return all(values) if isinstance(node.op, ast.And) else any(values)
        if isinstance(node, ast.UnaryOp):
            return not self._eval(node.operand, metrics, out, judge)
        assert isinstance(node, ast.Compare)
        ok = True
        left_node = node.left
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            symbol, fn = _COMPARE[type(op)]
            left, right = self._value(left_node, metrics), self._value(right_node, metrics)
            passed = fn(left, right)
            check: dict[str, Any] = {
                "left_text": ast.unparse(left_node),
                "left": left,
                "op": symbol,
                "right": right,
                "right_text": ast.unparse(right_node),
                "passed": passed,
            }
            out.checks.append(check)
            ok = ok and (judge(check) if judge is not None else passed)
            left_node = right_node
        return ok


def _name(node: ast.Name | ast.Attribute) -> str:
    """The figure a name stands for: ``x`` and ``metrics.x`` are ``x``; a role's keeps its
    prefix (``challenger.x``)."""
    if isinstance(node, ast.Name):
        return node.id
    assert isinstance(node.value, ast.Name)
    return node.attr if node.value.id == "metrics" else f"{node.value.id}.{node.attr}"


def _short(text: str, limit: int = 80) -> str:
    """``text`` quoted for a one-line message, cut at ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else f"{shown[: limit - 5]}...{shown[-1]}"


def tree_depth(tree: ast.AST, limit: int = MAX_DEPTH) -> int:
    """The nesting depth of ``tree``, walked without recursion (the walk stops once it is
    past ``limit``: deeper than that is all a caller needs to know)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > limit:
            break
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest
