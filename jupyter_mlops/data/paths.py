"""Which paths can be snapshotted: checked all at once, before anything is written.

DVC tracks paths relative to the project root and cannot track a folder and a file inside
it separately, nor anything in its own or git's folders; every such problem is reported in
one error so the user fixes them in one go.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from jupyter_mlops.config import MLOPS_DIR, find_project_root
from jupyter_mlops.errors import DataError

_INTERNAL_DIRS = (".dvc", ".git", MLOPS_DIR)


def resolve_paths(paths: Iterable[str | os.PathLike[str]], root: Path) -> list[Path]:
    """Absolute, symlink-free paths of existing files/folders inside ``root``.

    Relative paths are taken from the current working directory, as ``open()`` would.
    Raises one DataError naming every missing path, every path outside ``root`` (or inside
    ``.dvc``/``.git``/``.mlops``, or the root itself) and every pair of nested paths (DVC
    cannot track a folder and a file inside it separately). Duplicates are dropped.
    """
    if isinstance(paths, str | bytes | os.PathLike):
        paths = [paths]
    root = Path(root).resolve()
    cwd = Path.cwd()
    missing: list[str] = []
    outside: list[str] = []
    internal: list[str] = []
    resolved: list[Path] = []
    for raw in paths:
        name = os.fsdecode(raw)
        path = (cwd / Path(name).expanduser()).resolve()
        if not path.exists():
            missing.append(repr(name))
        try:
            rel = path.relative_to(root)
        except ValueError:
            outside.append(repr(name))
            continue
        if not rel.parts:
            internal.append(f"{name!r} (the project root itself)")
        elif rel.parts[0] in _INTERNAL_DIRS:
            internal.append(f"{name!r} (inside {rel.parts[0]}/)")
        elif path.exists() and path not in resolved:
            resolved.append(path)

    nested = [
        f"{b.relative_to(root).as_posix()!r} is inside {a.relative_to(root).as_posix()!r}"
        for a in resolved
        for b in resolved
        if a != b and a in b.parents
    ]
    problems = [
        f"{what}: {', '.join(names)}"
        for what, names in (
            (f"not found (relative to {cwd})", missing),
            (f"outside the project root {root}", outside),
            ("not snapshottable", internal),
        )
        if names
    ]
    if nested:
        problems.append(f"nested paths, give only one of each pair: {'; '.join(nested)}")
    if problems:
        raise DataError("Cannot snapshot data: " + "; ".join(problems))
    return resolved


def project_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` made absolute, or the project root found from the working directory."""
    return Path(root).resolve() if root is not None else find_project_root()


def rel_path(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` in posix form: how DVC and the state file name it."""
    return PurePosixPath(path.relative_to(root).as_posix()).as_posix()
