"""Restoring a snapshot: its exact bytes put back from the DVC cache, fetched if needed.

Every byte is checked against its md5 on the way, and the destination is swapped in whole,
so a restore either gives the data the run read or fails with a reason; it never leaves a
half-written file or folder behind.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path, PurePosixPath

from jupyter_mlops.data.dvcfiles import MD5, cache_plan, discard, object_path
from jupyter_mlops.data.fastcopy import copy_md5, md5_file
from jupyter_mlops.data.keep import relink
from jupyter_mlops.data.paths import project_root
from jupyter_mlops.data.record import DataSnapshot
from jupyter_mlops.data.remote import Remote, fetch, no_remote_hint, remote_setting, resolve_remote
from jupyter_mlops.data.repo import ensure_dvc, open_repo, quiet_dvc
from jupyter_mlops.errors import DataError, NotFoundError


def restore(
    snap: DataSnapshot,
    dest: str | os.PathLike[str],
    root: Path | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Put the snapshot's exact bytes at ``dest`` (a file, or a folder tree) from the DVC cache.

    Objects ``dvc gc`` removed from the cache come back from the copies :mod:`.keep` made
    when the snapshot was taken. What the local cache still lacks is fetched from the
    project's DVC remote first (``dvc_remote`` or DVC's default remote; see
    :func:`jupyter_mlops.data.remote.fetch`), so a fresh clone - even one where DVC was
    never initialised, if ``dvc_remote`` is set - can restore what another machine pushed.
    Every byte is checked against its md5 on the way. NotFoundError if neither the cache
    nor the remote has the data. An existing ``dest`` with other
    content is only replaced with ``overwrite=True`` (DataError otherwise); an identical one
    is left alone. ``dest`` is swapped in whole, never half-written; relative ``dest`` is
    taken from the current directory. Returns the absolute ``dest``.
    """
    root = project_root(root)
    dest = Path.cwd() / Path(os.fspath(dest)).expanduser()
    dest = Path(os.path.normpath(dest))
    if not MD5.fullmatch(snap.md5):
        raise DataError(f"Not a DVC md5 in the snapshot of {snap.path!r}: {snap.md5!r}")
    setting = remote_setting(root)
    if not (root / ".dvc").is_dir():
        if setting is None:
            raise NotFoundError(
                f"Cannot restore {snap.path!r}: {root} is not a DVC repository (no .dvc "
                "folder), so it has no cache to restore from, and no dvc_remote is set in "
                "[tool.jupyter-mlops] of its pyproject.toml to fetch from."
            )
        ensure_dvc(root)  # a fresh clone: the remote to fetch from is configured below

    remote: Remote | None = None
    fetched: set[str] = set()
    with quiet_dvc():
        repo = open_repo(root)
        try:
            cache = str(repo.cache.local.path)
            files, absent = _plan(snap, cache)
            if absent:
                remote = resolve_remote(repo, root, setting)
                if remote is None:
                    raise NotFoundError(f"{_absent(snap, cache, files, absent)} {no_remote_hint()}")
                fetched = fetch(repo, remote, snap, cache)
                files, absent = _plan(snap, cache)
        finally:
            repo.close()
    if absent:  # the remote said it sent them, but they are not there
        raise NotFoundError(f"{_absent(snap, cache, files, absent)} (fetched from {remote})")

    if os.path.lexists(dest):
        if _matches(dest, snap, files):
            return dest
        if not overwrite:
            raise DataError(
                f"Cannot restore {snap.path!r} to {dest}: it exists with different content. "
                "Pass overwrite=True to replace it, or restore somewhere else."
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.restoring")
    try:
        if snap.is_dir:
            tmp.mkdir()
            for rel, md5 in files:
                target = tmp.joinpath(*PurePosixPath(rel).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = remote if md5 in fetched else None
                _restore_file(object_path(cache, md5), target, md5, snap.path, source)
        else:
            source = remote if snap.md5 in fetched else None
            _restore_file(object_path(cache, snap.md5), tmp, snap.md5, snap.path, source)
        _swap_in(tmp, dest)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
    return dest


def _plan(snap: DataSnapshot, cache: str) -> tuple[list[tuple[str, str]], list[str]]:
    """:func:`cache_plan`, after putting back what ``dvc gc`` removed from the cache but
    :mod:`.keep` kept (a folder's manifest first, then its files)."""
    files, absent = cache_plan(snap, cache)
    while absent and relink(cache, absent):
        files, absent = cache_plan(snap, cache)
    return files, absent


def _absent(snap: DataSnapshot, cache: str, files: list[tuple[str, str]], absent: list[str]) -> str:
    """What the cache lacks of ``snap``, as the start of an error message."""
    where = f"not in this project's DVC cache ({cache})."
    if snap.is_dir and not files:
        return f"The folder snapshot of {snap.path!r} (md5 {snap.md5}) is {where}"
    if snap.is_dir:
        missing = sum(1 for _, md5 in files if md5 in set(absent))
        return f"The snapshot of {snap.path!r} {missing} of its {len(files)} file(s) are {where}"
    return f"The snapshot of {snap.path!r} (md5 {snap.md5}) is {where}"


def _restore_file(
    obj: Path, target: Path, md5: str, name: str, remote: Remote | None = None
) -> None:
    """Copy the cache object ``obj`` to ``target`` (a new file), checking its md5.

    ``remote``: the object was just fetched from there; a corrupted one is dropped from
    the local cache (so a later fetch can bring a repaired copy) and the error names it.
    """
    with obj.open("rb", buffering=0) as src, target.open("xb", buffering=0) as dst:
        got, _ = copy_md5(src, dst.fileno())
    if got == md5:
        return
    if remote is not None:
        discard(obj)
        raise DataError(
            f"The copy of {name!r} on the DVC remote {remote} is corrupted: object {md5} "
            f"has md5 {got}. Delete that object on the remote and push it again from a "
            f"clone that has the data (`dvc push -r {remote.name}`), then restore again."
        )
    raise DataError(
        f"The DVC cache object {obj} of {name!r} is corrupted (md5 {got}, expected {md5});"
        " delete that file and fetch it again from a DVC remote (`dvc fetch`)."
    )


def _matches(dest: Path, snap: DataSnapshot, files: list[tuple[str, str]]) -> bool:
    """True if ``dest`` already holds exactly the snapshot's content."""
    if dest.is_symlink():
        return False
    if not snap.is_dir:
        return dest.is_file() and dest.stat().st_size == snap.size and md5_file(dest) == snap.md5
    if not dest.is_dir():
        return False
    present = {p.relative_to(dest).as_posix(): p for p in dest.rglob("*") if not p.is_dir()}
    wanted = dict(files)
    if set(present) != set(wanted):
        return False
    return all(
        present[rel].is_file() and md5_file(present[rel]) == md5 for rel, md5 in wanted.items()
    )


def _swap_in(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest``, replacing whatever is there (atomically for a file)."""
    if not os.path.lexists(dest) or (tmp.is_file() and not dest.is_dir()):
        tmp.replace(dest)
        return
    if dest.is_symlink() or not dest.is_dir():
        dest.unlink()
        tmp.replace(dest)
        return
    old = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.old")
    dest.replace(old)
    try:
        tmp.replace(dest)
    except BaseException:
        old.replace(dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
