"""Whether the git commit a run records holds the ``.dvc`` files of the data it read.

A snapshot writes ``<path>.dvc`` (and DVC's ``.gitignore`` entry beside it), but the run's
commit is read before that, and jupyter-mlops never commits the user's repository. A
``.dvc`` file that is new or changed since that commit means the commit alone cannot bring
the data back (``git checkout <commit> && dvc pull``), so the run says so: its
``mlops.git.dirty`` becomes ``true``, ``mlops.git.uncommitted_data`` lists the pointer
files, and the run card gets a one-line hint with the commands that fix it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jupyter_mlops.data.record import DataSnapshot

TAG_UNCOMMITTED = "mlops.git.uncommitted_data"
TAG_DIRTY = "mlops.git.dirty"


class _Run(Protocol):
    """What :meth:`Loose.apply` needs of a run (``tracking.run.TrackedRun`` has it)."""

    git_dirty: bool | None
    notes: list[str]

    def set_tags(self, tags: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Loose:
    """The data pointers a run refers to that its recorded commit lacks."""

    pointers: list[str]  # .dvc files, relative to the project root
    to_add: list[str]  # what `git add` needs: those and DVC's uncommitted .gitignore files

    @property
    def tags(self) -> dict[str, str]:
        return {TAG_DIRTY: "true", TAG_UNCOMMITTED: json.dumps(self.pointers)}

    @property
    def hint(self) -> str:
        files = " ".join(self.to_add)
        return (
            f"data pointers not in the recorded git commit: {', '.join(self.pointers)}; "
            f"run `git add {files} && git commit`, then `dvc push`, so the commit brings "
            "the data back"
        )

    def apply(self, run: _Run) -> None:
        """Mark ``run`` dirty, tag the pointers and add the hint to its notes."""
        run.git_dirty = True
        run.set_tags(self.tags)
        if self.hint not in run.notes:
            run.notes.append(self.hint)


def check(root: Path, snaps: Iterable[DataSnapshot]) -> Loose | None:
    """The ``.dvc`` files of ``snaps`` that git reports new, changed or ignored (or None
    when all are committed, or ``root`` is not in a git work tree)."""
    pointers = {f"{s.path}.dvc": f"{s.path}.dvc" for s in snaps}
    ignores = {(Path(s.path).parent / ".gitignore").as_posix(): f"{s.path}.dvc" for s in snaps}
    if not pointers:
        return None
    reported = _git_status(root, [*pointers, *ignores])
    if reported is None:
        return None
    loose = [p for p in pointers if p in reported]
    if not loose:
        return None
    extra = [g for g, owner in ignores.items() if g in reported and owner in loose]
    return Loose(loose, [*loose, *dict.fromkeys(extra)])


def _git_status(root: Path, paths: list[str]) -> set[str] | None:
    """Which of ``paths`` (relative to ``root``) git lists as not committed as they are."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    root = root.resolve()
    top = next((f for f in (root, *root.parents) if (f / ".git").exists()), None)
    if top is None:
        return None
    try:
        out = git(
            "status", "--porcelain=v1", "-z", "--untracked-files=all", "--ignored=matching",
            "--", *paths,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found: set[str] = set()
    entries = out.split("\0")
    i = 0
    while i < len(entries):
        entry = entries[i]
        i += 1
        if len(entry) < 4:
            continue
        if entry[0] in "RC":  # a rename is followed by its source path
            i += 1
        found.add(entry[3:])
    out_paths: set[str] = set()
    for rel in found:  # git names them from the top of the work tree
        try:
            out_paths.add((top / rel).relative_to(root).as_posix())
        except ValueError:
            continue
    return out_paths
