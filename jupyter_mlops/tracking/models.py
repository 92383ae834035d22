"""Which of a cell's fitted objects are its models, and what each one was fitted on.

A cell that fits a ``ColumnTransformer`` and then a classifier produced one model, not
two: only predictors are logged (the flavour says what predicts), and an object that a
logged model holds (a step of a captured ``Pipeline``, a search's template) is logged
with that model, not again on its own. What is left out is returned with the reason, for
the run card.

The data a model was fitted on gives it a signature, so that a served model checks its
inputs. The capture hands over what each fit call received (``fit_inputs``: receiver name
-> ``(X, y)``). Until a recorder of the actual call arguments exists, this module reads
them off the cell's code: each fit call's arguments, when they are simple expressions
(``X``, ``X[:800_000]``, ``df[cols]``, ``X.iloc[:100]``, ``frame.values``), are evaluated
against the namespace after the cell by an evaluator that allows no calls (but pandas'
``to_numpy()``) and no private attributes. A numpy array taken from a DataFrame
(``X = df[cols].values``, ``frame.to_numpy()``, through ``train_test_split``) gets that
frame's column names back.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jupyter_mlops.tracking import flavors

FIT_METHODS = frozenset({"fit", "partial_fit", "fit_transform", "fit_predict"})
# Zero-argument methods the evaluator may call: they copy data out of a frame, nothing else.
_SAFE_METHODS = frozenset({"to_numpy"})
_SPLITTERS = frozenset({"train_test_split"})
_INT_OPS: dict[type[ast.operator], Callable[[int, int], int]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.FloorDiv: operator.floordiv,
}
_MAX_DEPTH = 30

FitInputs = Mapping[str, tuple[Any, Any]]


class _Unsafe(Exception):
    """The expression is not one the evaluator runs."""


# -- a safe evaluator for fit arguments ---------------------------------------------------


def _eval(node: ast.expr, namespace: Mapping[str, Any], depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise _Unsafe
    deeper = depth + 1
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in namespace:
            raise _Unsafe
        return namespace[node.id]
    if isinstance(node, ast.Attribute):
        if node.attr.startswith("_"):
            raise _Unsafe
        return getattr(_eval(node.value, namespace, deeper), node.attr)
    if isinstance(node, ast.Subscript):
        return _eval(node.value, namespace, deeper)[_eval(node.slice, namespace, deeper)]
    if isinstance(node, ast.Slice):
        parts = (node.lower, node.upper, node.step)
        return slice(*(None if p is None else _eval(p, namespace, deeper) for p in parts))
    if isinstance(node, ast.Tuple):
        return tuple(_eval(e, namespace, deeper) for e in node.elts)
    if isinstance(node, ast.List):
        return [_eval(e, namespace, deeper) for e in node.elts]
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub | ast.UAdd)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, int | float)
    ):
        value = node.operand.value
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and type(node.op) in _INT_OPS:
        # X[start:start + batch]: integer arithmetic only, never an operator on objects
        left, right = _eval(node.left, namespace, deeper), _eval(node.right, namespace, deeper)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (left, right)):
            raise _Unsafe
        return _INT_OPS[type(node.op)](left, right)
    if _is_to_numpy(node):
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        frame = _eval(node.func.value, namespace, deeper)
        if not (type(frame).__module__ or "").startswith("pandas"):
            raise _Unsafe
        return getattr(frame, node.func.attr)()
    raise _Unsafe


def _is_to_numpy(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _SAFE_METHODS
        and not node.args
        and not node.keywords
    )


def evaluate(node: ast.expr | None, namespace: Mapping[str, Any]) -> Any:
    """The value of a simple, side-effect-free expression in ``namespace``; else None.

    Allowed: names, constants, attributes (not private ones), subscripts and slices,
    tuples and lists, a signed number, ``+ - * //`` between integers, and
    ``<pandas object>.to_numpy()``. Any other node
    (a call, an operator, a comprehension) or any error makes the answer None.
    """
    if node is None:
        return None
    try:
        return _eval(node, namespace, 0)
    except Exception:  # _Unsafe, or a KeyError/IndexError/... of the expression itself
        return None


# -- the cell's fit calls and assignments -------------------------------------------------


def _receiver(call: ast.Call) -> tuple[str | None, str | None]:
    """``model.fit(...)`` -> ("model", "fit"); anything else -> (None, method or None)."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in FIT_METHODS:
        if isinstance(func.value, ast.Name):
            return func.value.id, func.attr
        return None, func.attr
    return None, None


def fit_args(call: ast.Call) -> tuple[ast.expr | None, ast.expr | None]:
    """The ``X`` and ``y`` expressions of a fit call (positional or keyword)."""
    args = [a for a in call.args if not isinstance(a, ast.Starred)]
    x = args[0] if args else None
    y = args[1] if len(args) > 1 else None
    for kw in call.keywords:
        if kw.arg == "X":
            x = kw.value
        elif kw.arg == "y":
            y = kw.value
    return x, y


class _CellReader(ast.NodeVisitor):
    """Fit calls and assignments of a cell, in source order."""

    def __init__(self) -> None:
        self.fits: dict[str, tuple[ast.expr | None, ast.expr | None]] = {}
        self.assigned: dict[str, ast.expr] = {}

    def _fit(self, name: str, method: str, call: ast.Call) -> None:
        # partial_fit: the first batch stands for all; fit: the last call is what the model holds
        if method == "partial_fit" and name in self.fits:
            return
        self.fits[name] = fit_args(call)

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        name, method = _receiver(node)
        if name is not None and method is not None:
            self._fit(name, method, node)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        value = node.value
        for target in node.targets:
            if isinstance(target, ast.Name):
                self.assigned[target.id] = value
                # model = Pipeline(...).fit(X, y): fit returns the estimator it fitted
                if isinstance(value, ast.Call):
                    _, method = _receiver(value)
                    if method == "fit":
                        self._fit(target.id, method, value)
            elif isinstance(target, ast.Tuple | ast.List) and _is_split(value):
                assert isinstance(value, ast.Call)
                # X_tr, X_te, y_tr, y_te = train_test_split(X, y): pairs of outputs per input
                for i, elt in enumerate(target.elts):
                    source = value.args[i // 2] if i // 2 < len(value.args) else None
                    if isinstance(elt, ast.Name) and source is not None:
                        self.assigned[elt.id] = ast.Subscript(value=source, slice=ast.Slice())


def _is_split(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in _SPLITTERS and not any(isinstance(a, ast.Starred) for a in node.args)


def read_cell(tree: ast.AST | None) -> _CellReader:
    reader = _CellReader()
    if tree is not None:
        reader.visit(tree)
    return reader


def source_columns(
    node: ast.expr | None,
    assigned: Mapping[str, ast.expr],
    namespace: Mapping[str, Any],
    seen: frozenset[str] = frozenset(),
) -> list[str] | None:
    """The column names of the DataFrame an array expression was taken from, if known.

    ``frame.values`` and ``frame.to_numpy()`` name ``frame``'s columns; a name assigned
    in the cell is followed to its expression; row slices keep the columns, and a
    ``[rows, cols]`` index selects among them.
    """
    if node is None or len(seen) > _MAX_DEPTH:
        return None
    if isinstance(node, ast.Name):
        expr = assigned.get(node.id)
        if expr is None or node.id in seen:
            return None
        return source_columns(expr, assigned, namespace, seen | {node.id})
    frame_node: ast.expr | None = None
    if isinstance(node, ast.Attribute) and node.attr == "values":
        frame_node = node.value
    elif _is_to_numpy(node):
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        frame_node = node.func.value
    if frame_node is not None:
        frame = evaluate(frame_node, namespace)
        columns = getattr(frame, "columns", None) if getattr(frame, "ndim", 0) == 2 else None
        return [str(c) for c in columns] if columns is not None else None
    if isinstance(node, ast.Subscript):
        columns = source_columns(node.value, assigned, namespace, seen)
        if columns is None:
            return None
        index = node.slice
        if not isinstance(index, ast.Tuple):
            return columns  # rows only
        if len(index.elts) != 2:
            return None
        import numpy as np

        picked = evaluate(index.elts[1], namespace)
        try:
            chosen = np.asarray(columns, dtype=object)[picked]
        except Exception:
            return None
        return [str(c) for c in chosen] if getattr(chosen, "ndim", 0) == 1 else None
    return None


def _named(X: Any, columns: list[str] | None) -> Any:
    """``X`` as a DataFrame with ``columns`` when it is a 2-D array of that width."""
    if columns is None or getattr(X, "ndim", None) != 2 or hasattr(X, "columns"):
        return X
    if X.shape[1] != len(columns) or len(set(columns)) != len(columns):
        return X
    import pandas as pd

    return pd.DataFrame(X, columns=columns)


def fit_inputs_from_cell(tree: ast.AST | None, namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Receiver name -> ``(X, y)`` its fit call received, read off the cell's code.

    Evaluated against the namespace after the cell (see ``evaluate``); an argument that
    cannot be evaluated safely is None. A numpy ``X`` taken from a DataFrame comes back
    as a DataFrame with that frame's columns.
    """
    reader = read_cell(tree)
    out: dict[str, Any] = {}
    for name, (x_node, y_node) in reader.fits.items():
        X, y = evaluate(x_node, namespace), evaluate(y_node, namespace)
        out[name] = (_named(X, source_columns(x_node, reader.assigned, namespace)), y)
    return out


def name_columns(
    fit_inputs: FitInputs, tree: ast.AST | None, namespace: Mapping[str, Any]
) -> dict[str, tuple[Any, Any]]:
    """``fit_inputs`` with each unnamed 2-D array named after the frame it came from.

    For inputs recorded as the fit calls received them (numpy arrays have no names): the
    cell's code says which frame an array was taken from.
    """
    reader = read_cell(tree)
    out = {}
    for name, (X, y) in fit_inputs.items():
        x_node = reader.fits.get(name, (None, None))[0]
        out[name] = (_named(X, source_columns(x_node, reader.assigned, namespace)), y)
    return out


# -- which objects are models -------------------------------------------------------------


def _held_parts(obj: Any, flavor: flavors.Flavor) -> list[Any]:
    """Objects inside ``obj`` (and inside the model it unwraps to), not ``obj`` itself."""
    parts = flavor.parts(obj)
    inner = flavor.unwrap(obj).model
    if inner is not obj:
        inner_flavor = flavors.flavor_for(inner) or flavor
        parts.extend([inner, *inner_flavor.parts(inner)])
    return parts


def select_models(
    candidates: Iterable[str],
    namespace: Mapping[str, Any],
    fit_inputs: FitInputs,
    *,
    explicit: bool = False,
) -> tuple[dict[str, Any], dict[str, tuple[Any, Any]], dict[str, str]]:
    """The models among ``candidates`` (names), their training data, and what was skipped.

    A candidate is a model if a flavour recognises it as trained, predicts (or, for a
    search, its best estimator does), and is not held by another model the cell produced.
    An object bound to several names is taken once, by its first name. ``explicit``
    (``--model NAME``) logs every recognised candidate as it is. Returns ``(models,
    training_data, skipped)``: name -> model, name -> ``(X, y)`` from ``fit_inputs``
    (``(None, None)`` when unknown), name -> why it is not logged.
    """
    found: list[tuple[str, Any, flavors.Flavor]] = []
    seen: set[int] = set()
    for name in dict.fromkeys(candidates):
        obj = namespace.get(name)
        if obj is None or id(obj) in seen:
            continue
        flavor = flavors.flavor_for(obj)
        if flavor is None:
            continue
        seen.add(id(obj))
        found.append((name, obj, flavor))

    holder: dict[int, str] = {}
    if not explicit:
        for name, obj, flavor in found:
            for part in _held_parts(obj, flavor):
                holder.setdefault(id(part), name)

    models: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name, obj, flavor in found:
        owner = holder.get(id(obj))
        if owner is not None and owner != name:
            skipped[name] = f"part of {owner}, logged inside it"
        elif not explicit and not flavor.is_predictor(flavor.unwrap(obj).model):
            skipped[name] = (
                f"{type(obj).__name__} only transforms (no predict): not logged as a model; "
                f"log it with --model {name}"
            )
        else:
            models[name] = obj
    training: dict[str, tuple[Any, Any]] = {}
    for name in models:
        X, y = fit_inputs.get(name, (None, None))
        training[name] = (X, y)
    return models, training, skipped


# -- what a signature is inferred from ----------------------------------------------------

SIGNATURE_ROWS = 200  # rows a signature is inferred from (and the model predicts on)


def head(X: Any, n: int) -> Any:
    """The first ``n`` rows of a frame or array; None when ``X`` is None or not sliceable."""
    if X is None:
        return None
    if hasattr(X, "iloc"):
        return X.iloc[:n]
    try:
        return X[:n]
    except Exception:
        return None


def signature_sample(X: Any) -> Any:
    """The rows of ``X`` a signature is inferred from: the first ones, plus one row with a
    missing value for each column that has missing values only further down.

    MLflow marks a column optional (``required: false``) and types it by the values it
    sees: inferred from the first rows alone, a column whose missing values come later
    would be declared as never missing, and an imputing model's real inputs refused.
    """
    first = head(X, SIGNATURE_ROWS)
    if first is None or not (hasattr(X, "isna") and hasattr(X, "columns")):
        return first
    try:
        missing = X.isna()
        seen = missing.iloc[: len(first)].any()
        later = [c for c, anywhere in missing.any().items() if anywhere and not seen[c]]
        if not later:
            return first
        import pandas as pd

        # the first row where each such column is missing (argmax of a boolean column)
        rows = sorted({int(missing[c].to_numpy().argmax()) for c in later})
        return pd.concat([first, X.iloc[rows]])
    except Exception:  # an unusual frame: its first rows still give a signature
        return first
