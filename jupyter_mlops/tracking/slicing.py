"""The earlier kernel cells a cell depends on: a dependency slice of the input history.

A tracked cell reads names that earlier cells bound (a DataFrame, a helper function, an
import). To re-execute it elsewhere, those cells have to run first, and only those: a
plot or an exploratory cell is noise, and may read files that are not there. The slice
is found by names: start from the names the cell reads before it binds them; walk the
earlier cells backwards; a cell that binds a needed name is kept and its own free names
become needed. A function's body is read when it is called, so the names it reads are
needed as of the tracked cell, not as of its ``def``.

Cells are IPython input as typed; this module strips IPython's syntax itself (line magics,
``!shell`` lines, cell magics other than ``%%track``/``%%time``/``%%capture``), so it works
on plain strings without IPython. Cells that still do not parse are skipped.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: Cell magics whose body is ordinary Python that runs in the user namespace.
KEPT_CELL_MAGICS = frozenset({"track", "time", "capture"})
#: Method calls whose result shows something and changes nothing (a cell's ``df.head()``).
_VIEWS = frozenset(
    {"head", "tail", "describe", "info", "plot", "hist", "show", "sample", "summary", "print",
     "to_string", "value_counts", "nunique", "isna", "count", "copy", "get_params", "score",
     "predict", "predict_proba", "transform", "mean", "sum", "std", "min", "max"}
)  # fmt: skip
_LINE_MAGIC = re.compile(r"^(\s*)(%|!|\w+\s*=\s*[%!])")
_TIME = re.compile(r"^(\s*)%time\s+(\S.*)$")
_HELP = re.compile(r"^(\s*)(\?+[\w.]*|[\w.]+\?+)\s*$")


@dataclass(frozen=True)
class CellNames:
    """What a cell binds and which names it reads before binding them.

    ``late`` are the names its functions and classes read when called (looked up in the
    namespace of the call, not of the definition)."""

    binds: frozenset[str]
    free: frozenset[str]
    late: frozenset[str]


@functools.lru_cache(maxsize=1024)  # the same history is read again by each tracked cell
def plain_python(cell: str) -> str | None:
    """``cell`` as plain Python: IPython syntax removed (None: a cell magic whose body is
    not Python run in the namespace, such as ``%%bash`` or ``%%writefile``)."""
    lines = cell.splitlines()
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines and lines[0].lstrip().startswith("%%"):
        magic = lines[0].lstrip()[2:].split(maxsplit=1)
        if not magic or magic[0] not in KEPT_CELL_MAGICS:
            return None
        lines = lines[1:]
    code = "\n".join(lines) + "\n"
    if _parses(code):  # no IPython syntax: a string's "% of rows" line stays as written
        return code
    out = []
    for line in lines:
        timed = _TIME.match(line)
        if timed:  # `%time x = f()` runs its statement once, in the namespace
            out.append(timed.group(1) + timed.group(2))
        elif found := _LINE_MAGIC.match(line) or _HELP.match(line):
            if found.group(1):  # `pass` keeps an indented magic from emptying its block
                out.append(f"{found.group(1)}pass")
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def _parses(code: str) -> bool:
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def names_of(source: str) -> CellNames | None:
    """The names plain-Python ``source`` binds and reads (None if it does not parse)."""
    return _names_of(source)


@functools.lru_cache(maxsize=1024)  # a kernel's history is re-read on every tracked cell
def _names_of(source: str) -> CellNames | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    bound: set[str] = set()
    free: set[str] = set()
    late: set[str] = set()
    for stmt in tree.body:
        scan = _Scan()
        scan.visit(stmt)
        free |= scan.loads - bound
        late |= scan.late
        bound |= scan.stores | _mutated(stmt)
    return CellNames(frozenset(bound), frozenset(free), frozenset(late - bound))


def dependency_slice(
    source: str, history: Sequence[str], *, first: int = 1
) -> list[tuple[int, str]]:
    """The cells of ``history`` (``history[i]`` is ``In[first + i]``) that ``source``
    depends on, in execution order, each as ``(number, plain Python)``."""
    target = names_of(source)
    if target is None or not history:
        return []
    cells: list[tuple[int, str, CellNames]] = []
    for i, raw in enumerate(history):
        code = plain_python(raw)
        names = names_of(code) if code is not None and code.strip() else None
        if code is not None and names is not None:
            cells.append((first + i, code, names))
    # A function's free names are read when it is called (by the tracked cell): they are
    # needed from the tracked cell backwards. Adding them can keep more functions, so
    # walk again until no new name is added (a handful of passes at most).
    late: set[str] = set()
    while True:
        kept, more = _walk(cells, set(target.free) | late | set(target.late))
        if more <= late:
            return [(number, code) for number, code, _ in kept]
        late |= more


def _walk(
    cells: list[tuple[int, str, CellNames]], needed: set[str]
) -> tuple[list[tuple[int, str, CellNames]], set[str]]:
    kept = []
    late: set[str] = set()
    for cell in reversed(cells):
        names = cell[2]
        if names.binds & needed:
            kept.append(cell)
            needed = (needed - names.binds) | names.free
            late |= names.late
    kept.reverse()
    return kept, late


def context_source(cells: Iterable[tuple[int, str]]) -> str:
    """The sliced cells as one plain-Python file, each headed by its ``# In[N]`` line."""
    return "".join(f"# In[{number}]\n{code.rstrip()}\n\n" for number, code in cells)


def _mutated(stmt: ast.stmt) -> set[str]:
    """Names a statement changes in place: ``df.fillna(0, inplace=True)``,
    ``model.fit(X, y)``, ``items.append(x)`` (a bare call of a name's method, unless the
    method only shows something, as a cell's last ``df.head()`` does)."""
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        return set()
    func = stmt.value.func
    if not isinstance(func, ast.Attribute):
        return set()
    inplace = any(k.arg == "inplace" for k in stmt.value.keywords)
    if func.attr in _VIEWS and not inplace:
        return set()
    base = _base_name(func.value)
    return {base} if base else set()


def _base_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute | ast.Subscript | ast.Call):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


class _Scan(ast.NodeVisitor):
    """Names one module-level statement loads and stores (in the module's scope), and
    the free names of the functions, lambdas and classes it defines (``late``)."""

    def __init__(self) -> None:
        self.loads: set[str] = set()
        self.stores: set[str] = set()
        self.late: set[str] = set()

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id not in self.stores:  # read after the statement bound it: not free
                self.loads.add(node.id)
        else:  # Store, Del
            self.stores.add(node.id)

    def visit_Assign(self, node: ast.Assign) -> None:
        self.visit(node.value)  # the value is evaluated before any target is bound
        for target in node.targets:
            self._target(target)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self.visit(node.value)
        self.visit(node.annotation)
        self._target(node.target)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self.visit(node.value)
        base = _base_name(node.target)
        if base:  # `x += 1` reads x first
            self.loads.add(base)
        self._target(node.target)

    def _target(self, target: ast.expr) -> None:
        """A store target: a name, or an item/attribute of a name (``df["x"] = ...``
        changes ``df`` and needs it to exist)."""
        if isinstance(target, ast.Name):
            self.stores.add(target.id)
        elif isinstance(target, ast.Tuple | ast.List):
            for elt in target.elts:
                self._target(elt)
        elif isinstance(target, ast.Starred):
            self._target(target.value)
        else:
            self.visit(target)  # loads its base and index
            base = _base_name(target)
            if base:
                self.stores.add(base)

    def visit_For(self, node: ast.For | ast.AsyncFor) -> None:
        self.visit(node.iter)
        self._target(node.target)
        for stmt in [*node.body, *node.orelse]:
            self.visit(stmt)

    visit_AsyncFor = visit_For

    def visit_withitem(self, node: ast.withitem) -> None:
        self.visit(node.context_expr)
        if node.optional_vars is not None:
            self._target(node.optional_vars)

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.stores.add(alias.asname or alias.name.split(".", 1)[0])

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.type is not None:
            self.visit(node.type)
        if node.name:
            self.stores.add(node.name)
        for stmt in node.body:
            self.visit(stmt)

    def visit_Global(self, node: ast.Global) -> None:
        self.stores.update(node.names)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self.stores.add(node.name)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self.stores.add(node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self.stores.add(node.rest)
        self.generic_visit(node)

    # -- scopes of their own ---------------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        for expr in [*node.decorator_list, *_defaults(node.args)]:
            self.visit(expr)
        self.stores.add(node.name)
        self.late |= _scope_free(node.body, node.args)
        # `global x` in a function that assigns x: calling it binds x (counted as the def's).
        self.stores |= _declared_global(node.body)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        for expr in [*node.decorator_list, *node.bases, *(k.value for k in node.keywords)]:
            self.visit(expr)
        self.stores.add(node.name)
        # A class body runs at definition; its methods' names are read when called.
        self.late |= _scope_free(node.body, None)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for expr in _defaults(node.args):
            self.visit(expr)
        self.late |= _scope_free([ast.Return(node.body)], node.args)

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp
    ) -> None:
        # Run at once; its targets are its own. The first iterable is the enclosing scope's.
        inner = _Scan()
        elts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for gen in node.generators:
            inner.visit(gen.iter)
            inner._target(gen.target)
            for cond in gen.ifs:
                inner.visit(cond)
        for elt in elts:
            inner.visit(elt)
        local = {n for gen in node.generators for n in _target_names(gen.target)}
        self.loads |= inner.loads - local
        self.stores |= inner.stores - local  # a walrus binds in the enclosing scope
        self.late |= inner.late

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def _defaults(args: ast.arguments) -> list[ast.expr]:
    exprs: list[ast.expr] = [*args.defaults, *(d for d in args.kw_defaults if d is not None)]
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    exprs += [a.annotation for a in every if a is not None and a.annotation is not None]
    return exprs


def _scope_free(body: list[ast.stmt], args: ast.arguments | None) -> set[str]:
    """The names a function (or class) body reads that it does not bind itself."""
    scan = _Scan()
    for stmt in body:
        scan.visit(stmt)
    params: set[str] = set()
    if args is not None:
        every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
        params = {a.arg for a in every if a is not None}
    local = (scan.stores - _declared_global(body)) | params
    return (scan.loads | scan.late) - local


def _declared_global(body: list[ast.stmt]) -> set[str]:
    return {
        name
        for stmt in body
        for node in ast.walk(stmt)
        if isinstance(node, ast.Global)
        for name in node.names
    }


def _target_names(target: ast.expr) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
