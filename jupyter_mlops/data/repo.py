"""Opening and initialising the project's DVC repository, quietly.

``dvc.repo`` costs ~0.3 s to import, so it is imported only inside these functions, and
only when DVC really has work to do (an unchanged snapshot never gets here).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

from jupyter_mlops.errors import DataError

if TYPE_CHECKING:
    from dvc.repo import Repo


def _import_repo() -> type[Repo]:
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    from dvc.repo import Repo

    return cast("type[Repo]", Repo)  # dvc ships no type information


@contextlib.contextmanager
def quiet_dvc() -> Iterator[None]:
    """Silence DVC's INFO chatter (``To track the changes with git...``); keep warnings."""
    import logging

    logger = logging.getLogger("dvc")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _git_top(root: Path) -> Path | None:
    """The git work tree ``root`` is in (its top folder), found like git does, or None."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder
    return None


def ensure_dvc(root: Path) -> None:
    """Initialise DVC in ``root`` unless ``root/.dvc`` exists (then it is a single stat).

    In a git work tree DVC is initialised with git (``--subdir`` when ``root`` is below the
    top of the work tree), so ``.dvc`` files and DVC's ``.gitignore`` entries can be
    committed; elsewhere without (``--no-scm``).
    """
    root = Path(root).resolve()
    if (root / ".dvc").is_dir():
        return
    repo_cls = _import_repo()
    from dvc.exceptions import DvcException

    top = _git_top(root)
    try:
        with quiet_dvc():
            if top == root:
                repo = repo_cls.init(os.fspath(root))
            elif top is not None:
                repo = repo_cls.init(os.fspath(root), subdir=True)
            else:
                repo = repo_cls.init(os.fspath(root), no_scm=True)
            repo.close()
    except DvcException as exc:
        if (root / ".dvc").is_dir():  # another kernel initialised it meanwhile
            return
        raise DataError(f"Cannot initialise DVC in {root}: {exc}") from exc


def open_repo(root: Path) -> Repo:
    """The DVC repo at ``root``, waiting for another process's repo lock rather than failing."""
    repo_cls = _import_repo()
    try:
        repo = repo_cls(os.fspath(root), _wait_for_lock=True)  # queue behind other kernels
    except TypeError:  # a DVC without the private flag
        repo = repo_cls(os.fspath(root))
    repo.scm_context.quiet = True
    return repo
