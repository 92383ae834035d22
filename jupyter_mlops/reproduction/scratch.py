"""The scratch copy of the project a run is re-executed in: the recorded commit's files,
the recorded data restored byte-identical, DVC sharing the original project's cache.

The copy is a git repository of its own (a ``--shared`` clone checked out at the recorded
commit: no object is copied, and the re-executed run records the same commit), so neither
git nor DVC inside it ever touches the user's work tree. Its DVC uses the original
project's cache and remotes (``.dvc/config.local``), so the data it snapshots again costs
no copy into another cache. The copy is kept for inspection.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from jupyter_mlops.config import MLOPS_DIR, Config
from jupyter_mlops.errors import DataError, MlopsError, NotFoundError
from jupyter_mlops.reproduction.result import Cause
from jupyter_mlops.reproduction.source import Recorded

if TYPE_CHECKING:
    from jupyter_mlops.data import DataSnapshot

REPRODUCTIONS = "reproductions"  # <project>/.mlops/reproductions/<run id>-<time>/
# Never copied when the project is not a git repository (or the commit is unknown).
_SKIPPED = {MLOPS_DIR, ".git", ".venv", "venv", "node_modules", "__pycache__", ".ipynb_checkpoints"}


@dataclass
class Scratch:
    """Where the run is re-executed, and what is known about the code put there."""

    folder: Path  # the whole copy (a git work tree), kept for inspection
    project: Path  # the project root inside it (a sub-folder when the project is one)
    exact_commit: bool  # the recorded commit's files (not the current ones)
    causes: list[Cause] = field(default_factory=list)  # said whatever the verdict
    if_different: list[Cause] = field(default_factory=list)  # said only if results differ


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "advice.detachedHead=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise MlopsError(f"git {' '.join(args[:2])} failed in {cwd}: {done.stderr.strip()}")
    return done.stdout.strip()


def _git_top(root: Path) -> Path | None:
    try:
        return Path(_git(root, "rev-parse", "--show-toplevel")).resolve()
    except (MlopsError, OSError):
        return None


def _has_commit(top: Path, commit: str) -> bool:
    try:
        _git(top, "cat-file", "-e", f"{commit}^{{commit}}")
        return True
    except MlopsError:
        return False


def new_folder(run_id: str, config: Config, workdir: str | os.PathLike[str] | None) -> Path:
    """``workdir`` (created; it must be empty), or a new folder under
    ``<project>/.mlops/reproductions/``."""
    if workdir is not None:
        folder = Path(workdir).expanduser().resolve()
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise MlopsError(f"The reproduction folder {folder} must be new or empty")
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    base = config.mlops_dir / REPRODUCTIONS
    base.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    for n in range(1000):
        folder = base / (f"{run_id}-{stamp}" + (f"-{n}" if n else ""))
        try:
            folder.mkdir()
            return folder
        except FileExistsError:
            continue
    raise MlopsError(f"Cannot create a reproduction folder under {base}")


def make_scratch(recorded: Recorded, config: Config, folder: Path) -> Scratch:
    """The project's code at the recorded commit in ``folder`` (see the module's doc)."""
    root = config.root.resolve()
    top = _git_top(root)
    commit = recorded.commit
    if top is not None and commit and _has_commit(top, commit):
        _git(folder, "clone", "-q", "--shared", "--no-checkout", os.fspath(top), ".")
        _git(folder, "checkout", "-q", "--detach", commit)
        scratch = Scratch(folder, folder / root.relative_to(top), exact_commit=True)
        if recorded.dirty:
            scratch.if_different.append(
                Cause(
                    "code",
                    commit[:12],
                    f"The run was recorded with uncommitted changes to commit {commit[:12]}; "
                    "the cell itself is recorded, but other changed files (modules it "
                    "imports) are the committed ones here. Commit before tracking.",
                )
            )
    else:
        scratch = _copy_current(root, top, folder)
        why = (
            "no git commit was recorded"
            if not commit
            else f"its commit {commit[:12]} is not in this clone (`git fetch` it)"
        )
        scratch.causes.append(
            Cause(
                "code",
                commit[:12] if commit else "no commit",
                f"The code is the project's current files, not the run's: {why}.",
            )
        )
    scratch.project.mkdir(parents=True, exist_ok=True)
    (scratch.project / MLOPS_DIR).mkdir(exist_ok=True)  # marks the copy as the project root
    return scratch


def _copy_current(root: Path, top: Path | None, folder: Path) -> Scratch:
    """The project's current files in ``folder``: git's tracked ones, or (no git) all but
    state, caches and virtual environments. A git repository of its own either way."""
    if top is not None:
        listed = _git(top, "ls-files", "-z", "--cached").split("\0")
        for rel in filter(None, listed):
            src = top / rel
            if src.is_file():
                dest = folder / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest)
        project = folder / root.relative_to(top)
    else:
        project = folder

        def ignore(where: str, names: list[str]) -> set[str]:
            skipped = {n for n in names if n in _SKIPPED}
            if Path(where).resolve() == root / ".dvc":
                skipped |= {"cache", "tmp"} & set(names)
            return skipped

        shutil.copytree(root, folder, ignore=ignore, dirs_exist_ok=True)
    _git(folder, "init", "-q")
    return Scratch(folder, project, exact_commit=False)


def copy_unsnapshotted(recorded: Recorded, scratch: Scratch, config: Config) -> list[Cause]:
    """Files the run read without snapshotting them (``mlops.risks``; paths relative to
    the project root), copied from the workspace as they are now when the copy lacks
    them; a cause for each."""
    causes: list[Cause] = []
    for risk in recorded.risks:
        if risk["kind"] != "unsnapshotted_read":
            continue
        subject = risk["subject"]
        message = risk["message"] or f"{subject} is read but not recorded."
        if "--data" not in message:
            message = f"{message.rstrip('.')}: add --data {subject} to the %%track line."
        rel = Path(os.path.normpath(subject))
        src, dest = config.root / rel, scratch.project / rel
        inside = not rel.is_absolute() and rel.parts[:1] != ("..",)
        if inside and src.is_file() and not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest)
            message += " (The reproduction read its current workspace copy.)"
        causes.append(Cause("unsnapshotted_read", subject, message))
    return causes


def share_dvc(project: Path, original: Path) -> None:
    """Make the copy's DVC use the original project's cache and remotes (``config.local``)."""
    if not (original / ".dvc").is_dir():
        return  # no cache to share: a snapshot in the copy initialises its own
    from jupyter_mlops.data import ensure_dvc
    from jupyter_mlops.data.repo import open_repo, quiet_dvc

    with quiet_dvc():
        repo = open_repo(original)
        try:
            cache = Path(repo.cache.local.path)
            remotes = {str(n): dict(c) for n, c in repo.config["remote"].items()}
            default = repo.config["core"].get("remote")
        finally:
            repo.close()
        if cache.name == "md5" and cache.parent.name == "files":
            cache = cache.parent.parent
        ensure_dvc(project)
        copy = open_repo(project)
        try:
            with copy.config.edit("local") as conf:
                conf["cache"]["dir"] = os.fspath(cache)
                for name, settings in remotes.items():
                    conf["remote"][name] = settings
                if default:
                    conf["core"]["remote"] = default
        finally:
            copy.close()


def restore_data(recorded: Recorded, project: Path, config: Config) -> list[Cause]:
    """Every snapshot of the run restored byte-identical at its recorded path in the copy
    (from the project's DVC cache, else its remote); a ``data_missing`` cause per snapshot
    that cannot be had, saying exactly what is missing and what to do."""
    from jupyter_mlops.data import restore

    missing: list[Cause] = []
    for snap in recorded.data:
        try:
            restore(snap, project / snap.path, config.root, overwrite=True)
        except (NotFoundError, DataError) as exc:
            missing.append(Cause("data_missing", snap.path, _missing(snap, recorded, config, exc)))
    return missing


def _missing(snap: DataSnapshot, recorded: Recorded, config: Config, exc: Exception) -> str:
    what = f"{'folder' if snap.is_dir else 'file'} {snap.path} (md5 {snap.md5}, {snap.size} bytes)"
    reason = str(exc)
    where = recorded.project_root
    there = f" in the project that snapshotted it ({where})" if where else ""
    if not isinstance(exc, NotFoundError):
        return f"Data {what} cannot be restored: {reason}"
    if "No DVC remote is configured" in reason or "not a DVC repository" in reason:
        return (
            f"Data {what} is not in the DVC cache of {config.root} and no DVC remote is "
            f"configured to fetch it from: run `dvc push`{there} to a remote, and set that "
            "remote here (dvc_remote in [tool.jupyter-mlops] of pyproject.toml), then "
            "reproduce again."
        )
    return (
        f"Data {what} is neither in the DVC cache of {config.root} nor on its DVC remote: "
        f"run `dvc push`{there}, then reproduce again."
    )
