"""Rewrite a cell's AST so that it reports the assignments and fit calls that actually ran.

Reading names off the source and values off the namespace afterwards records values the
cell did not produce: a name assigned only in a branch that did not run still holds what
an earlier cell left. So the cell's tree (after IPython's own transforms) is rewritten to
tell a recorder, injected into the namespace as ``RECORDER``, what each executed
statement bound:

- after each binding statement (``=``, ``+=``, annotated ``=``), at the start of a loop
  body or ``with`` block for its targets, and around each ``:=``:
  ``RECORDER.hits[name] = site`` (a dict store). A ``del`` needs no report: a name the
  cell deleted is absent from the namespace afterwards.
- Loops stay fast (a training loop runs its body thousands of times): a loop body runs
  fully instrumented until one iteration completes, after which every statement at the
  top of the body is known to have run, and a lean copy of the body runs instead, which
  reports only statements nested in branches (``if``, ``try``, ``with``, inner loops).
- Step metrics: a metric-like name assigned in loops is stepped by the innermost loop
  holding all its assignments in that loop nest (so ``loss += ...`` accumulated over
  batches is stepped once per epoch). Each assignment stores the value in that loop's
  pending dict; the end of each iteration (``finally``) moves it to the metric's step
  list and checks a clock (the recorder converts steps and redraws the live chart at
  most every 0.5 s). No function call in the common path: a dict store, a list append
  and a clock check per iteration.
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
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from jupyter_mlops.tracking.capture import is_metric_name

RECORDER = "__mlops_rec__"  # reserved name of the recorder in the user namespace
FIT_METHODS = frozenset({"fit", "fit_transform", "fit_predict", "partial_fit"})
_X_KEYWORDS = frozenset({"X", "x"})
Steps = dict[str, tuple[int, bool]]  # metric -> (the loop stepping it, appended directly)
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

    def __init__(self, owner: Instrumenter, steps: Steps) -> None:
        self.owner, self.steps = owner, steps

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            return node
        return super().generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> ast.AST:
        self.generic_visit(node)
        ok, value = _literal(node.value)
        site = self.owner.site(Site(node.target.id, ok, value))
        loop, direct = self.steps.get(node.target.id, (-1, False))
        if not is_metric_name(node.target.id, literal=ok):
            loop = -1
        # RECORDER.bind(site, (name := value), ...) returns the value, bound in the cell's scope
        args = [ast.Constant(site), node, ast.Constant(loop), ast.Constant(direct)]
        wrapped = _call("bind", *args)
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


def _scope_free(node: ast.AST) -> Iterator[ast.AST]:
    """``ast.walk`` that does not enter nested scopes."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        if current is node or not isinstance(current, _SCOPES):
            todo.extend(ast.iter_child_nodes(current))


def plan_loops(tree: ast.Module) -> int:
    """Number the cell's loops (``node.mlops_loop``) and give each the metric names it
    steps (``node.mlops_steps``: (name, direct) pairs); returns how many loops there are.

    A metric-like name is stepped by the innermost loop that holds all its assignments
    within one outermost loop (the common prefix of their loop paths)."""
    loops: list[ast.stmt] = []
    paths: dict[tuple[str, int], list[tuple[int, ...]]] = {}

    def note(name: str, value: ast.expr | None, path: tuple[int, ...]) -> None:
        ok, _ = _literal(value)
        if path and is_metric_name(name, literal=ok):
            paths.setdefault((name, path[0]), []).append(path)

    def exprs(node: ast.AST, path: tuple[int, ...]) -> None:
        for sub in _scope_free(node):
            if isinstance(sub, ast.NamedExpr):
                note(sub.target.id, sub.value, path)

    def block(body: list[ast.stmt], path: tuple[int, ...]) -> None:
        for node in body:
            statement(node, path)

    def statement(node: ast.stmt, path: tuple[int, ...]) -> None:
        if isinstance(node, (*_SCOPES, ast.Import, ast.ImportFrom)):
            return
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            node.mlops_loop, node.mlops_steps = len(loops), []  # type: ignore[union-attr]
            loops.append(node)
            inner = (*path, len(loops) - 1)
            if isinstance(node, ast.While):
                exprs(node.test, inner)
            else:
                exprs(node.iter, path)
                for name in _names(node.target):
                    note(name, None, inner)
            block(node.body, inner)
            block(node.orelse, path)
            return
        if isinstance(node, ast.Assign):
            single = node.value if len(node.targets) == 1 else None
            for name in [n for t in node.targets for n in _names(t)]:
                note(name, single, path)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign) and node.value is not None:
            value = node.value if isinstance(node, ast.AnnAssign) else None
            for name in _names(node.target):
                note(name, value, path)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                for name in _names(item.optional_vars) if item.optional_vars else []:
                    note(name, None, path)
        for field in ("body", "orelse", "finalbody"):
            sub = getattr(node, field, None)
            if isinstance(sub, list):
                block(sub, path)
        for handler in getattr(node, "handlers", []):
            block(handler.body, path)
        for case in getattr(node, "cases", []):
            block(case.body, path)
        for field in ("value", "test", "subject", "iter"):
            if isinstance(getattr(node, field, None), ast.AST):
                exprs(getattr(node, field), path)
        for item in getattr(node, "items", []):
            exprs(item.context_expr, path)

    block(tree.body, ())
    for (name, _), found in paths.items():
        common = found[0]
        for path in found[1:]:
            n = 0
            while n < min(len(common), len(path)) and common[n] == path[n]:
                n += 1
            common = common[:n]
        # One assignment, directly in its loop: appending it where it happens is the same
        # as at the end of the iteration, and cheaper.
        direct = len(found) == 1
        loops[common[-1]].mlops_steps.append((name, direct))  # type: ignore[attr-defined]
    return len(loops)


class Instrumenter:
    """Rewrites a module's tree; ``sites`` numbers what the inserted calls refer to,
    ``loops`` counts the loops and ``stepped`` names the metrics stepped in loops."""

    def __init__(self) -> None:
        self.sites: list[Site] = []
        self.loops = 0
        self.stepped: set[str] = set()

    def site(self, site: Site) -> int:
        self.sites.append(site)
        return len(self.sites) - 1

    def __call__(self, tree: ast.Module) -> ast.Module:
        self.loops = plan_loops(tree)
        tree.body = self._block(tree.body, {})
        return ast.fix_missing_locations(tree)

    # -- statements ------------------------------------------------------------------
    def _expr(self, node: ast.AST, steps: Steps) -> Any:
        return _Expressions(self, steps).visit(node)

    def _records(
        self,
        names: list[str],
        value: ast.expr | None,
        steps: Steps,
        at: ast.AST,
        lean: bool = False,
    ) -> list[ast.stmt]:
        """The statements that record ``names`` as bound (to the literal ``value``?);
        ``lean``: only the step values (the binding is known to be recorded already)."""
        ok, literal = _literal(value) if len(names) == 1 else (False, None)
        out: list[ast.stmt] = []
        for name in names:
            if not lean:
                site = self.site(Site(name, ok, literal))
                out.append(_store("hits", name, ast.Constant(site)))
            if name in steps and is_metric_name(name, literal=ok):
                loop, direct = steps[name]
                value = ast.Name(name, ast.Load())
                if direct:  # R.raw['loss'].append(loss)
                    raw = ast.Subscript(_load("raw"), ast.Constant(name), ast.Load())
                    append = ast.Attribute(raw, "append", ast.Load())
                    out.append(ast.Expr(ast.Call(append, [value], [])))
                else:  # R.pN['loss'] = loss, appended at the end of the iteration
                    pending = _load(f"p{loop}")
                    target = ast.Subscript(pending, ast.Constant(name), ast.Store())
                    out.append(ast.Assign([target], value))
        return [ast.copy_location(stmt, at) for stmt in out]

    def _block(self, body: list[ast.stmt], steps: Steps, lean: bool = False) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            out.extend(self._statement(stmt, steps, lean))
        return out

    def _statement(self, node: ast.stmt, steps: Steps, lean: bool) -> list[ast.stmt]:
        """One statement, instrumented; ``lean`` drops the binding reports of a simple
        statement at the top of a loop body that has completed an iteration."""
        if isinstance(node, (*_SCOPES, ast.Import, ast.ImportFrom)):
            return [node]
        if isinstance(node, ast.Assign):
            node.value = self._expr(node.value, steps)
            names = [n for t in node.targets for n in _names(t)]
            value = node.value if len(node.targets) == 1 else None
            return [node, *self._records(names, value, steps, node, lean)]
        if isinstance(node, ast.AugAssign | ast.AnnAssign):
            if node.value is None:  # ``x: int`` binds nothing
                return [node]
            node.value = self._expr(node.value, steps)
            value = node.value if isinstance(node, ast.AnnAssign) else None
            return [node, *self._records(_names(node.target), value, steps, node, lean)]
        if isinstance(node, ast.For | ast.AsyncFor | ast.While):
            return [self._loop(node, steps)]
        if isinstance(node, ast.With | ast.AsyncWith):
            head: list[ast.stmt] = []
            for item in node.items:
                item.context_expr = self._expr(item.context_expr, steps)
                if item.optional_vars is not None:
                    head += self._records(_names(item.optional_vars), None, steps, node)
            node.body = head + self._block(node.body, steps)
            return [node]
        if isinstance(node, ast.If):
            node.test = self._expr(node.test, steps)
            node.body = self._block(node.body, steps)
            node.orelse = self._block(node.orelse, steps)
            return [node]
        if isinstance(node, ast.Try | ast.TryStar):
            node.body = self._block(node.body, steps)
            for handler in node.handlers:
                handler.body = self._block(handler.body, steps)
            node.orelse = self._block(node.orelse, steps)
            node.finalbody = self._block(node.finalbody, steps)
            return [node]
        if isinstance(node, ast.Match):
            node.subject = self._expr(node.subject, steps)
            for case in node.cases:
                case.body = self._block(case.body, steps)
            return [node]
        return [self._expr(node, steps)]

    def _loop(self, node: ast.For | ast.AsyncFor | ast.While, outer: Steps) -> ast.stmt:
        """The loop with its body run fully instrumented until one iteration completes,
        lean after that, and its step metrics taken at the end of every iteration."""
        number: int = node.mlops_loop  # type: ignore[union-attr]
        stepped: list[tuple[str, bool]] = node.mlops_steps  # type: ignore[union-attr]
        steps = {**outer, **{name: (number, direct) for name, direct in stepped}}
        self.stepped.update(name for name, _ in stepped)
        at = node.body[0]
        original = copy.deepcopy(node.body)
        if isinstance(node, ast.While):
            node.test = self._expr(node.test, steps)
            head: list[ast.stmt] = []
        else:
            node.iter = self._expr(node.iter, outer)
            head = self._records(_names(node.target), None, steps, at)
        fresh = ast.Subscript(_load("fresh"), ast.Constant(number), ast.Load())
        done = ast.Subscript(_load("fresh"), ast.Constant(number), ast.Store())
        full = [*head, *self._block(node.body, steps), ast.Assign([done], ast.Constant(False))]
        lean = self._block(original, steps, lean=True)
        if not lean:  # the body was all reports
            lean = [ast.Pass()]
        body: list[ast.stmt] = [ast.If(fresh, full, lean)]
        if stepped:
            end = self._end(number, [name for name, direct in stepped if not direct])
            body = [ast.Try(body=body, handlers=[], orelse=[], finalbody=end)]
        node.body = [ast.fix_missing_locations(ast.copy_location(s, at)) for s in body]
        node.orelse = self._block(node.orelse, outer)
        return node

    @staticmethod
    def _end(number: int, stepped: list[str]) -> list[ast.stmt]:
        """End of an iteration: ``if 'loss' in R.pN: R.raw['loss'].append(R.pN.pop('loss'))``
        per stepped name, then ``if R.clock() >= R.next_tick: R.tick()``."""
        out: list[ast.stmt] = []
        for name in stepped:
            key = ast.Constant(name)
            pop = ast.Call(_load(f"p{number}", "pop"), [key], [])
            raw = ast.Subscript(_load("raw"), key, ast.Load())
            append = ast.Expr(ast.Call(ast.Attribute(raw, "append", ast.Load()), [pop], []))
            seen = ast.Compare(key, [ast.In()], [_load(f"p{number}")])
            out.append(ast.If(seen, [append], []))
        due = ast.Compare(_call("clock"), [ast.GtE()], [_load("next_tick")])
        out.append(ast.If(due, [ast.Expr(_call("tick"))], []))
        return out
