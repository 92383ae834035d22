"""What makes a run unlikely to reproduce, seen in its code at record time.

Two causes can be read off a cell's AST and its namespace after it ran: a randomised call
without a fixed seed (``RandomForestClassifier()``, ``train_test_split(X, y)``,
``df.sample(frac=0.5)``), and a file read that nothing records (``pd.read_csv("x.csv")``
of a file neither under ``--data`` nor committed in git). ``%%track`` warns about each
once per kernel, the run card lists them, and the run's ``mlops.risks`` tag keeps them
for a reproduction to name as likely causes of a difference.

Static and conservative: a call whose callable, seed or path cannot be resolved from the
namespace is not reported.
"""

from __future__ import annotations

import ast
import builtins
import inspect
import io
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path, PurePath
from typing import Any

TAG_RISKS = "mlops.risks"
UNSEEDED = "unseeded"
UNSNAPSHOTTED_READ = "unsnapshotted_read"

# Libraries whose estimators use a fixed seed when given none (random_state=None).
DETERMINISTIC_LIBRARIES = frozenset({"xgboost", "lightgbm", "catboost"})
_COORDINATE_DESCENT = tuple(
    f"{prefix}{name}{cv}" for prefix in ("", "MultiTask") for name in ("Lasso", "ElasticNet")
    for cv in ("", "CV")
)  # fmt: skip
# scikit-learn callables that take random_state but use it only with some options:
# name -> (option, its default (None: the signature's), the values that make it random).
_RANDOM_ONLY_WITH: dict[str, tuple[str, Any, frozenset[Any]]] = {
    **dict.fromkeys(
        ("LogisticRegression", "LogisticRegressionCV"),
        ("solver", "lbfgs", frozenset({"sag", "saga", "liblinear"})),
    ),
    **dict.fromkeys(("Ridge", "RidgeClassifier"), ("solver", "auto", frozenset({"sag", "saga"}))),
    **dict.fromkeys(_COORDINATE_DESCENT, ("selection", "cyclic", frozenset({"random"}))),
    **dict.fromkeys(
        ("KFold", "StratifiedKFold", "GroupKFold", "StratifiedGroupKFold", "train_test_split"),
        ("shuffle", None, frozenset({True})),
    ),
    **dict.fromkeys(("SVC", "NuSVC"), ("probability", False, frozenset({True}))),
    # "auto" picks the randomised solver only for large inputs
    "PCA": ("svd_solver", "auto", frozenset({"randomized", "arpack"})),
}
_PATH_KEYWORDS = ("filepath_or_buffer", "path_or_buf", "path", "io", "source", "file",
                  "fname", "filename", "f")  # fmt: skip
_UNKNOWN: Any = object()


@dataclass(frozen=True)
class Risk:
    """One reason a run may not reproduce: ``kind`` is ``unseeded`` or
    ``unsnapshotted_read``; ``subject`` the callable or the path."""

    kind: str
    subject: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


def find_risks(
    source: str,
    namespace: Mapping[str, Any],
    *,
    data_paths: Iterable[str | os.PathLike[str]],
    root: str | os.PathLike[str],
    context_source: str = "",
) -> list[Risk]:
    """The unseeded random calls and unrecorded file reads in ``source`` (the cell) and
    ``context_source`` (the earlier cells it depends on), resolved in ``namespace``.

    Relative paths are read from the working folder, as the cell did; ``data_paths``
    (``--data``) are relative to ``root``.
    """
    calls = [node for code in (context_source, source) for node in _calls(code)]
    seeded = any(_is_global_seed(_resolve(c.func, namespace)[0]) for c in calls)
    found: dict[tuple[str, str], Risk] = {}
    reads: dict[Path, None] = {}
    for call in calls:
        obj, label = _resolve(call.func, namespace)
        if not seeded and obj is not _UNKNOWN and _unseeded(call, obj, namespace):
            risk = Risk(
                UNSEEDED,
                label,
                f"{label} is called without random_state: its result may change from run "
                "to run; pass random_state=<int>",
            )
            found.setdefault((risk.kind, risk.subject), risk)
        path = _read_path(call, obj, namespace)
        if path is not None:
            reads[path] = None
    for risk in _unrecorded(reads, data_paths, Path(root)):
        found.setdefault((risk.kind, risk.subject), risk)
    return list(found.values())


def _calls(code: str) -> Iterator[ast.Call]:
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return
    yield from (node for node in ast.walk(tree) if isinstance(node, ast.Call))


def _resolve(node: ast.expr, namespace: Mapping[str, Any]) -> tuple[Any, str]:
    """The object a callable expression names, without running code (attributes of
    instances are read off their class), and a label (``DataFrame.sample``)."""
    if isinstance(node, ast.Name):
        obj = namespace[node.id] if node.id in namespace else getattr(builtins, node.id, _UNKNOWN)
        name = getattr(obj, "__name__", None)
        return obj, name if isinstance(name, str) else node.id  # an alias names the class
    if isinstance(node, ast.Attribute):
        base, _ = _resolve(node.value, namespace)
        if base is _UNKNOWN:
            return _UNKNOWN, ""
        try:
            if isinstance(base, types.ModuleType | type):
                obj = getattr(base, node.attr, _UNKNOWN)
                return obj, getattr(obj, "__name__", node.attr)
            obj = inspect.getattr_static(type(base), node.attr, _UNKNOWN)
        except Exception:  # a module's lazy __getattr__ may fail to import
            return _UNKNOWN, ""
        if isinstance(obj, staticmethod):
            obj = obj.__func__
        elif isinstance(obj, types.FunctionType):  # bound as the call binds it: no self
            obj = types.MethodType(obj, base)
        return obj, f"{type(base).__name__}.{node.attr}"
    return _UNKNOWN, ""


def _is_global_seed(obj: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and obj is getattr(numpy.random, "seed", None)


def _top(obj: Any) -> str:
    return str(getattr(obj, "__module__", None) or "").split(".", 1)[0]


def _unseeded(call: ast.Call, obj: Any, namespace: Mapping[str, Any]) -> bool:
    """Whether ``call`` runs a randomised callable with no fixed seed."""
    if not callable(obj) or _top(obj) in DETERMINISTIC_LIBRARIES:
        return False
    try:
        signature = inspect.signature(obj)
    except (TypeError, ValueError):
        return False
    param = signature.parameters.get("random_state")
    if param is None or param.default is not None:  # no seed, or a fixed default one
        return False
    arguments = _arguments(call, signature, namespace)
    if arguments is None:
        return False  # *args or **kwargs that cannot be read: it may be given there
    if arguments.get("random_state", None) is not None:
        return False
    name = getattr(obj, "__name__", "")
    if _top(obj) == "sklearn" and name in _RANDOM_ONLY_WITH:
        option, default, random_values = _RANDOM_ONLY_WITH[name]
        if default is None:
            option_param = signature.parameters.get(option)
            default = option_param.default if option_param is not None else None
        value = arguments.get(option, default)
        try:
            return value is not _UNKNOWN and value in random_values
        except TypeError:  # an unhashable value is none of these options
            return False
    return True


def _arguments(
    call: ast.Call, signature: inspect.Signature, namespace: Mapping[str, Any]
) -> dict[str, Any] | None:
    """{parameter: value} of ``call`` (``_UNKNOWN`` for what cannot be evaluated without
    running code); None when a ``*args``/``**kwargs`` of unknown content hides some."""
    if any(isinstance(a, ast.Starred) for a in call.args):
        return None
    keywords: dict[str, Any] = {}
    for keyword in call.keywords:
        if keyword.arg is None:  # **options: read it from the namespace if it is there
            spread = _value(keyword.value, namespace)
            if not isinstance(spread, Mapping):
                return None
            keywords.update({str(k): v for k, v in spread.items()})
        else:
            keywords[keyword.arg] = _value(keyword.value, namespace)
    positional = [_value(a, namespace) for a in call.args]
    try:
        bound = signature.bind_partial(*positional, **keywords)
    except TypeError:
        return None
    params = signature.parameters
    values = {}
    for name, value in bound.arguments.items():
        if params[name].kind is inspect.Parameter.VAR_KEYWORD:
            values.update(value)
        elif params[name].kind is not inspect.Parameter.VAR_POSITIONAL:
            values[name] = value
    return values


def _value(node: ast.expr, namespace: Mapping[str, Any]) -> Any:
    """A literal's value, or a name's value in the namespace; else ``_UNKNOWN``."""
    if isinstance(node, ast.Name):
        return namespace.get(node.id, _UNKNOWN)
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _UNKNOWN


# -- file reads -----------------------------------------------------------------------
def _is_open(obj: Any) -> bool:
    try:
        unwrapped = inspect.unwrap(obj)  # IPython's kernel wraps open()
    except ValueError:
        return False
    return unwrapped is builtins.open or unwrapped is io.open


def _is_reader(obj: Any) -> bool:
    """Whether ``obj`` reads the file its first argument names."""
    readers: dict[str, Callable[[str], bool]] = {
        "pandas": lambda n: n.startswith("read_"),
        "polars": lambda n: n.startswith(("read_", "scan_")),
        "numpy": lambda n: n in {"load", "loadtxt", "genfromtxt", "fromfile"},
        "joblib": lambda n: n == "load",
        "torch": lambda n: n == "load",
    }
    top, name = _top(obj), getattr(obj, "__name__", "")
    return top in readers and isinstance(name, str) and readers[top](name)


def _read_path(call: ast.Call, obj: Any, namespace: Mapping[str, Any]) -> Path | None:
    """The file ``call`` reads, when its path can be known without running code."""
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in {"read_text", "read_bytes", "open"}:
        base = _path_value(func.value, namespace)  # Path("x").read_text(), path.open()
        if base is not None:
            return base if func.attr != "open" or _reading(call, mode_index=0) else None
    if not callable(obj):
        return None
    if _is_open(obj):
        if not _reading(call, mode_index=1):
            return None
    elif not _is_reader(obj):
        return None
    node = call.args[0] if call.args else None
    if node is None:
        node = next((k.value for k in call.keywords if k.arg in _PATH_KEYWORDS), None)
    return _path_value(node, namespace) if node is not None else None


def _reading(call: ast.Call, *, mode_index: int) -> bool:
    """Whether an ``open`` call's mode (a literal, or absent) reads without writing."""
    node = call.args[mode_index] if len(call.args) > mode_index else None
    node = next((k.value for k in call.keywords if k.arg == "mode"), node)
    if node is None:
        return True
    mode = _value(node, {})
    return isinstance(mode, str) and not set(mode) & set("wax+")


def _path_value(node: ast.expr | None, namespace: Mapping[str, Any]) -> Path | None:
    """A path a literal, a name bound to a str/Path, ``Path(...)`` or ``a / b`` gives."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return Path(node.value)
    if isinstance(node, ast.Name):
        value = namespace.get(node.id)
        return Path(value) if isinstance(value, str | PurePath) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
        left = _path_value(node.left, namespace)
        right = _path_value(node.right, namespace)
        return left / right if left is not None and right is not None else None
    if isinstance(node, ast.Call) and not node.keywords:
        func, _ = _resolve(node.func, namespace)
        if isinstance(func, type) and issubclass(func, PurePath) and node.args:
            parts = [_path_value(a, namespace) for a in node.args]
            return Path(*parts) if all(p is not None for p in parts) else None  # type: ignore[arg-type]
    return None


def _unrecorded(
    reads: Iterable[Path], data_paths: Iterable[str | os.PathLike[str]], root: Path
) -> list[Risk]:
    """The read files that are neither under a ``--data`` path nor committed unchanged."""
    snapshotted = [(root / d).resolve() for d in data_paths]
    risks = []
    for path in reads:
        full = path if path.is_absolute() else Path.cwd() / path
        if not full.is_file():
            continue  # not there: the cell did not read it, or reads something else
        full = full.resolve()
        if any(full == d or d in full.parents for d in snapshotted):
            continue
        if _committed(full, root):
            continue
        try:
            subject = full.relative_to(root.resolve()).as_posix()
        except ValueError:
            subject = str(full)
        risks.append(
            Risk(
                UNSNAPSHOTTED_READ,
                subject,
                f"{subject} is read but not recorded (not under --data, not committed in "
                f"git): a reproduction may read other data; add --data {subject}",
            )
        )
    return risks


def _committed(path: Path, root: Path) -> bool:
    """Whether ``path`` is in the git repository of ``root``, unchanged since HEAD."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain=v1", "--ignored=matching",
             "--untracked-files=all", "--", str(path)],
            cwd=root, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        if out.returncode != 0 or out.stdout.strip():
            return False  # not a repository, outside it, or new, changed, ignored
        tracked = subprocess.run(
            ["git", "ls-files", "--error-unmatch", "--", str(path)],
            cwd=root, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return tracked.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def recorded_risks(tags: Mapping[str, str]) -> list[Risk]:
    """The risks a run's ``mlops.risks`` tag lists (none for a run without it, or a tag
    that is not such a list)."""
    import json

    try:
        items = json.loads(tags.get(TAG_RISKS) or "[]")
        return [Risk(str(i["kind"]), str(i["subject"]), str(i["message"])) for i in items]
    except (ValueError, TypeError, KeyError):
        return []
