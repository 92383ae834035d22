"""Rewrite a cell's AST so that it reports the assignments and fit calls that actually ran.

Reading names off the source and values off the namespace afterwards records values the
cell did not produce: a name assigned only in a branch that did not run still holds what
an earlier cell left. So the cell's tree (after IPython's own transforms) is rewritten to
tell a recorder, injected into the namespace as ``RECORDER``, what each executed
statement bound:

- after each binding statement (``=``, ``+=``, annotated ``=``), at the start of a loop
  body or ``with`` block for its targets, around each ``:=``, and after each ``del``:
  ``RECORDER.hits[name] = site`` (a dict store: cheap enough inside training loops);
- inside a loop, a metric-like name is also put in ``RECORDER.pending``, and each loop
  body is wrapped in ``try/finally: RECORDER.step()``, which appends the pending values
  to their step histories at the end of every iteration of the innermost loop that
  assigned them;
- each ``.fit``/``.fit_transform``/``.fit_predict``/``.partial_fit`` call passes its
  receiver and its X and y through the recorder (identity functions that keep a
  reference), so the model's training data is what the call received, slices included.

Code inside functions, classes, lambdas and generator expressions defined in the cell is
left alone: it may run after the cell, when the recorder is gone. Inserted nodes carry
the location of the statement they follow, so tracebacks and line numbers are unchanged,
and nothing is added after a final expression, so the cell still shows its value.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.tracking.capture import is_metric_name

RECORDER = "__mlops_rec__"  # reserved name of the recorder in the user namespace
FIT_METHODS = frozenset({"fit", "fit_transform", "fit_predict", "partial_fit"})
DELETED = -1  # the site number a ``del`` records
_X_KEYWORDS = frozenset({"X", "x"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda, ast.GeneratorExp)


@dataclass(frozen=True)
class Site:
    """One place in the cell that binds a name or calls fit."""

    name: str  # the bound name, or the fit receiver's name ("" when not a plain name)
    literal: bool = False  # bound to a literal (a candidate parameter)
    value: Any = None  # the literal's value
    method: str = ""  # the fit method, for a fit site


def _load(*path: str) -> ast.expr:
    node: ast.expr = ast.Name(RECORDER, ast.Load())
    for attr in path:
        node = ast.Attribute(node, attr, ast.Load())
    return node


def _call(method: str, *args: ast.expr) -> ast.Call:
    return ast.Call(_load(method), list(args), [])


def _store(table: str, key: str, value: ast.expr) -> ast.stmt:
    """``RECORDER.<table>[key] = value``"""
    target = ast.Subscript(_load(table), ast.Constant(key), ast.Store())
    return ast.Assign([target], value)


def _names(target: ast.expr) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _names(elt)]
    if isinstance(target, ast.Starred):
        return _names(target.value)
    return []


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    if node is None:
        return False, None
    try:
        return True, ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False, None


class _Expressions(ast.NodeTransformer):
    """Walrus and fit calls inside one statement's expressions (nested scopes skipped)."""

    def __init__(self, owner: Instrumenter, in_loop: bool) -> None:
        self.owner, self.in_loop = owner, in_loop

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            return node
        return super().generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        ok, value = _literal(node.value)
        site = self.owner.site(Site(node.target.id, ok, value))
        metric = self.in_loop and is_metric_name(node.target.id, literal=ok)
        # RECORDER.bind(site, (name := value)) returns the value, bound in the cell's scope
        wrapped = _call("bind", ast.Constant(site), node, ast.Constant(metric))
        return ast.copy_location(wrapped, node)

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if not (isinstance(func, ast.Attribute) and func.attr in FIT_METHODS):
            return node
        receiver = func.value.id if isinstance(func.value, ast.Name) else ""
        site = ast.Constant(self.owner.site(Site(receiver, method=func.attr)))
        func.value = ast.copy_location(_call("fit_on", site, func.value), func.value)

        def through(index: int, arg: ast.expr) -> ast.expr:
            return ast.copy_location(_call("fit_arg", site, ast.Constant(index), arg), arg)

        starred = False
        for i, arg in enumerate(node.args[:2]):
            starred = starred or isinstance(arg, ast.Starred)
            if not starred:
                node.args[i] = through(i, arg)
        for kw in node.keywords:
            if kw.arg in _X_KEYWORDS or kw.arg == "y":
                kw.value = through(1 if kw.arg == "y" else 0, kw.value)
        return node


class Instrumenter:
    """Rewrites a module's tree; ``sites`` numbers what the inserted calls refer to."""

    def __init__(self) -> None:
        self.sites: list[Site] = []

    def site(self, site: Site) -> int:
        self.sites.append(site)
        return len(self.sites) - 1

    def __call__(self, tree: ast.Module) -> ast.Module:
        tree.body = self._block(tree.body, in_loop=False)
        return ast.fix_missing_locations(tree)

    # -- statements ------------------------------------------------------------------
    def _expr(self, node: ast.AST, in_loop: bool) -> Any:
        return _Expressions(self, in_loop).visit(node)

    def _records(
        self, names: list[str], value: ast.expr | None, in_loop: bool, at: ast.AST
    ) -> list[ast.stmt]:
        """The statements that record ``names`` as bound (to the literal ``value``?)."""
        ok, literal = _literal(value) if len(names) == 1 else (False, None)
        out: list[ast.stmt] = []
        for name in names:
            site = self.site(Site(name, ok, literal))
            out.append(_store("hits", name, ast.Constant(site)))
            if in_loop and is_metric_name(name, literal=ok):
                out.append(_store("pending", name, ast.Name(name, ast.Load())))
        return [ast.copy_location(stmt, at) for stmt in out]

    def _block(self, body: list[ast.stmt], in_loop: bool) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            out.extend(self._statement(stmt, in_loop))
        return out

    def _statement(self, node: ast.stmt, in_loop: bool) -> list[ast.stmt]:
        if isinstance(node, (*_SCOPES, ast.Import, ast.ImportFrom)):
            return [node]
        if isinstance(node, ast.Assign):
            node.value = self._expr(node.value, in_loop)
            names = [n for t in node.targets for n in _names(t)]
            value = node.value if len(node.targets) == 1 else None
            return [node, *self._records(names, value, in_loop, node)]
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            if node.value is None:  # ``x: int`` binds nothing
                return [node]
            node.value = self._expr(node.value, in_loop)
            value = node.value if isinstance(node, ast.AnnAssign) else None
            return [node, *self._records(_names(node.target), value, in_loop, node)]
        if isinstance(node, ast.Delete):
            gone = [n for t in node.targets if isinstance(t, ast.Name) for n in _names(t)]
            deleted = [_store("hits", n, ast.Constant(DELETED)) for n in gone]
            return [node, *(ast.copy_location(s, node) for s in deleted)]
        if isinstance(node, ast.For | ast.AsyncFor):
            node.iter = self._expr(node.iter, in_loop)
            target = self._records(_names(node.target), None, True, node)
            node.body = self._loop_body(target + self._block(node.body, in_loop=True), node)
            node.orelse = self._block(node.orelse, in_loop)
            return [node]
        if isinstance(node, ast.While):
            node.test = self._expr(node.test, True)
            node.body = self._loop_body(self._block(node.body, in_loop=True), node)
            node.orelse = self._block(node.orelse, in_loop)
            return [node]
        if isinstance(node, ast.With | ast.AsyncWith):
            head: list[ast.stmt] = []
            for item in node.items:
                item.context_expr = self._expr(item.context_expr, in_loop)
                if item.optional_vars is not None:
                    head += self._records(_names(item.optional_vars), None, in_loop, node)
            node.body = head + self._block(node.body, in_loop)
            return [node]
        if isinstance(node, ast.If):
            node.test = self._expr(node.test, in_loop)
            node.body = self._block(node.body, in_loop)
            node.orelse = self._block(node.orelse, in_loop)
            return [node]
        if isinstance(node, ast.Try | ast.TryStar):
            node.body = self._block(node.body, in_loop)
            for handler in node.handlers:
                handler.body = self._block(handler.body, in_loop)
            node.orelse = self._block(node.orelse, in_loop)
            node.finalbody = self._block(node.finalbody, in_loop)
            return [node]
        if isinstance(node, ast.Match):
            node.subject = self._expr(node.subject, in_loop)
            for case in node.cases:
                case.body = self._block(case.body, in_loop)
            return [node]
        return [self._expr(node, in_loop)]

    @staticmethod
    def _loop_body(body: list[ast.stmt], loop: ast.stmt) -> list[ast.stmt]:
        """``try: body finally: RECORDER.step()``: the end of every iteration, including
        one left by ``continue``, ``break`` or an exception."""
        step = ast.copy_location(ast.Expr(_call("step")), body[0] if body else loop)
        wrapped = ast.Try(body=body or [ast.Pass()], handlers=[], orelse=[], finalbody=[step])
        return [ast.copy_location(wrapped, body[0] if body else loop)]
