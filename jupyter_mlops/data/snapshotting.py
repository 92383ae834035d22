"""Taking snapshots: ``dvc add`` of the data a run reads, made cheap.

Two things make it cheaper than a plain ``Repo.add``:

* Unchanged data costs a few ``stat`` calls and no DVC import: the state file
  (:mod:`jupyter_mlops.data.state`) remembers each path's stat signature and the md5 DVC
  recorded, checked against the ``.dvc`` file and the cache. See :func:`_fast_snapshot`.
* A new or changed file is read once (:func:`jupyter_mlops.data.fastcopy.prehash`), on a
  background thread while DVC is imported, and DVC's own ``Repo.add`` is told the hash
  (through DVC's state database) and does all the bookkeeping itself. See
  :func:`_snapshot_with_dvc`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.data import state
from jupyter_mlops.data.dvcfiles import object_path, read_dvc_file, read_manifest
from jupyter_mlops.data.fastcopy import Prehashed, prehash
from jupyter_mlops.data.keep import keep
from jupyter_mlops.data.paths import project_root, rel_path, resolve_paths
from jupyter_mlops.data.record import DataSnapshot
from jupyter_mlops.data.remote import PushError, Remote, push, remote_setting, resolve_remote
from jupyter_mlops.data.repo import ensure_dvc, open_repo, quiet_dvc
from jupyter_mlops.errors import DataError

if TYPE_CHECKING:
    from dvc.repo import Repo

# Which way each snapshotted path went, and how many were pushed to a remote (read by
# the tests and the benchmark).
route_counts: dict[str, int] = {"fast": 0, "onepass": 0, "dvc": 0, "pushed": 0}


def snapshot(
    paths: Iterable[str | os.PathLike[str]], root: Path | None = None
) -> list[DataSnapshot]:
    """Record files/folders with DVC (cache + ``<path>.dvc``), one snapshot per path, and
    push them to the project's DVC remote if it has one.

    All paths are checked first (:func:`resolve_paths`), so a bad one fails before anything
    is written. DVC is initialised in ``root`` if needed (:func:`ensure_dvc`). Data that is
    unchanged since its last snapshot costs a few stat calls; other data is hashed once.

    The remote is ``dvc_remote`` of ``[tool.jupyter-mlops]`` or DVC's default remote (see
    :func:`jupyter_mlops.data.remote.resolve_remote`). The state file remembers which
    remote each snapshot was pushed to, so unchanged data already there costs no remote
    round trip. A failed push raises :class:`PushError` after the snapshots are complete in
    the local cache and remembered as not pushed: its ``snapshots`` can still be recorded,
    and the next snapshot of the same data pushes it without hashing it again.
    """
    root = project_root(root)
    targets = resolve_paths(paths, root)
    if not targets:
        return []
    ensure_dvc(root)
    entries = state.load_state(root)
    setting = remote_setting(root)
    config_sig = state.config_sig(root)
    found: dict[Path, DataSnapshot] = {}
    unpushed: list[Path] = []  # unchanged, but not known to be on the remote
    cache = ""  # DVC's local object database, where the snapshots' objects are
    for path in targets:
        rel = rel_path(path, root)
        entry = entries.get(rel)
        snap = _fast_snapshot(path, rel, entry, config_sig)
        if snap is not None and entry is not None:
            found[path] = snap
            cache = str(entry["cache"])
            route_counts["fast"] += 1
            if _needs_push(entry, setting):
                unpushed.append(path)
    todo = [p for p in targets if p not in found]
    if not todo and not unpushed:
        keep(cache, found.values())  # safe from `dvc gc` (one stat each once kept)
        return [found[p] for p in targets]

    changes: dict[str, dict[str, Any] | None] = {}
    remote: Remote | None
    if todo:
        snaps, changes, remote, cache = _snapshot_with_dvc(root, todo, setting, entries)
        found.update(snaps)
    else:
        with quiet_dvc():
            repo = open_repo(root)
            try:
                remote = resolve_remote(repo, root, setting)
            finally:
                repo.close()
    # Resolving may have written the remote into .dvc/config: data found unchanged above is
    # still unchanged under the new config (only the remote differs), so no rehash follows.
    config_sig = state.config_sig(root)
    for path in unpushed:  # still unchanged: only the push is missing
        rel = rel_path(path, root)
        changes[rel] = {**entries[rel], "config": config_sig}
    key = remote.key if remote is not None else None
    for entry in changes.values():
        if entry is not None:
            entry.update(setting=setting, remote=key, pushed=None)
    why = None
    pushed = [found[p] for p in (*todo, *unpushed)]
    if remote is not None:
        why = push(root, remote, pushed)
        if why is None:
            for entry in changes.values():
                if entry is not None:
                    entry["pushed"] = key
            route_counts["pushed"] += len(pushed)
    state.update_state(root, changes)
    result = [found[p] for p in targets]
    keep(cache, result)  # before a push error: the local snapshots are complete
    if remote is not None and why is not None:
        raise PushError(
            f"Snapshotted {_names([*todo, *unpushed], root)} with DVC, but could not push "
            f"to the DVC remote {remote}: {why}. The data is safe in the local DVC cache of "
            f"{root}; push it later with `dvc push -r {remote.name}` there, or snapshot it "
            "again (that pushes what is missing).",
            result,
            remote.name,
        )
    return result


def _fast_snapshot(
    path: Path, rel: str, entry: dict[str, Any] | None, config_sig: str
) -> DataSnapshot | None:
    """The snapshot of ``path`` without DVC if nothing changed since it was recorded.

    Requires: the state entry's stat signature (file: size, mtime, inode, ctime; folder: a
    digest of those of every file) matches the data now, the ``.dvc`` file still records
    the same md5 and size, the DVC config is unchanged, and the cache still holds the
    object (for a folder, its manifest and every file's object). Anything else: None, and
    DVC decides.
    """
    if not entry or entry.get("config") != config_sig:
        return None
    try:
        sig, _, _ = state.sig_of(path, since=sys.maxsize)
    except OSError:
        return None
    if sig != entry.get("sig"):
        return None
    out = read_dvc_file(path.with_name(path.name + ".dvc"))
    md5, size = entry.get("md5"), entry.get("size")
    if (
        out is None
        or out.get("md5") != md5
        or out.get("size") != str(size)
        or out.get("hash") != "md5"
        or out.get("path") not in (path.name, f"'{path.name}'", f'"{path.name}"')
        or not isinstance(md5, str)
        or not isinstance(size, int)
    ):
        return None
    cache = str(entry.get("cache"))
    obj = object_path(cache, md5)
    try:
        if not md5.endswith(".dir"):
            if obj.stat().st_size != size:
                return None
            return DataSnapshot(rel, md5, size, 1)
        files = read_manifest(obj)
        if files is None or str(len(files)) != out.get("nfiles"):
            return None
        for _, file_md5 in files:
            object_path(cache, file_md5).stat()
    except OSError:
        return None
    return DataSnapshot(rel, md5, size, len(files))


def _needs_push(entry: dict[str, Any], setting: str | None) -> bool:
    """Whether unchanged data must still go to the remote: the entry predates remotes, the
    ``dvc_remote`` setting changed since, or the last push to its remote failed."""
    if "remote" not in entry or entry.get("setting") != setting:
        return True
    return bool(entry["remote"]) and entry["remote"] != entry.get("pushed")


def _snapshot_with_dvc(
    root: Path, paths: list[Path], setting: str | None, entries: dict[str, dict[str, Any]]
) -> tuple[dict[Path, DataSnapshot], dict[str, dict[str, Any] | None], Remote | None, str]:
    """``Repo.add`` of ``paths`` after reading each file once ourselves; also resolves the
    DVC remote (:func:`resolve_remote`) while the files are read. Returns the snapshots,
    the state changes, the remote and the path of DVC's local object database.

    Why not plain ``Repo.add``: it reads a file to hash it, copies it into the cache, and
    copies the cache back over the workspace file ("relink"): ~3x ``md5sum`` for 1 GiB.
    Here a background thread reads each file once, hashing it while writing the copy that
    becomes the cache object (:func:`prehash`) - meanwhile DVC is imported and the repo
    opened - then the hash goes into DVC's own state database (keyed like DVC keys it:
    inode, mtime, size) and ``Repo.add(relink=False)`` finds hash and object in place and
    only validates and writes the ``.dvc`` file and ``.gitignore`` entry. Where that does
    not apply (the file changed while read, a non-default cache type or a shared cache is
    configured, folders), DVC does the work itself, so the result is always what
    ``dvc add`` records.

    DVC's state trusts (inode, mtime, size), so a same-size edit whose mtime was put back
    would give DVC a stale hash. Files seen changed (ctime since their last snapshot) have
    their DVC state entry replaced by the fresh hash, or dropped so that DVC rehashes them.
    """
    import threading

    probe = state.fs_now(root)
    before = {}
    for path in paths:
        since = entries.get(rel_path(path, root), {}).get("time")
        try:
            before[path] = state.sig_of(path, since if isinstance(since, int) else None)
        except OSError as exc:
            raise DataError(f"Cannot read {path}: {exc}") from exc

    files = [p for p in paths if p.is_file()]
    tmp_dir = root / ".dvc" / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    prehashed: dict[Path, Prehashed | None] = {}
    failed: list[BaseException] = []

    def hash_files() -> None:
        for path in files:
            try:
                prehashed[path] = prehash(path, tmp_dir)
            except OSError:
                prehashed[path] = None  # DVC will read it and report the problem
            except BaseException as exc:
                failed.append(exc)
                return

    worker = threading.Thread(target=hash_files, name="mlops-data-hash", daemon=True)
    worker.start()
    repo = None
    try:
        with quiet_dvc():
            repo = open_repo(root)  # overlaps with the hashing
            remote = resolve_remote(repo, root, setting)
            config_sig = state.config_sig(root)  # after the remote may have been configured
            odb = repo.cache.local
            cache = str(odb.path)
            cache_conf = repo.config.get("cache", {})
            plain_cache = not cache_conf.get("type") and not cache_conf.get("shared")
            worker.join()
            if failed:
                raise failed[0]
            stale: list[str] = []
            for path in paths:
                pre = prehashed.get(path)
                if pre is None:
                    stale.extend(before[path][2])
                    continue
                if plain_cache:
                    _adopt(odb, pre)
                if not _seed_state(repo, path, pre):
                    stale.append(os.fspath(path))
            _forget_state(repo, stale)
            stages = repo.add([os.fspath(p) for p in paths], relink=not plain_cache)
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # DvcException, or e.g. a KeyError from a malformed .dvc file
        from dvc.exceptions import DvcException

        why = str(exc) if isinstance(exc, DvcException) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"DVC could not snapshot {_names(paths, root)}: {why}") from exc
    finally:
        worker.join()
        for pre in prehashed.values():
            if pre is not None:
                pre.tmp.unlink(missing_ok=True)
        if repo is not None:
            repo.close()

    snaps: dict[Path, DataSnapshot] = {}
    changes: dict[str, dict[str, Any] | None] = {}
    for path, stage in zip(paths, stages, strict=True):
        rel = rel_path(path, root)
        out = stage.outs[0]
        md5, meta = str(out.hash_info.value), out.meta
        nfiles = int(meta.nfiles or 0) if out.hash_info.isdir else 1
        snaps[path] = DataSnapshot(rel, md5, int(meta.size or 0), nfiles)
        pre = prehashed.get(path)
        route_counts["onepass" if pre is not None and pre.md5 == md5 else "dvc"] += 1
        sig, newest, _ = before[path]
        try:
            unchanged = state.sig_of(path, since=sys.maxsize)[0] == sig
        except OSError:
            unchanged = False
        # Remember only data older than this call's start on the filesystem's clock: a
        # same-size edit in the same clock tick as what we read would keep its mtime.
        if unchanged and newest < probe:
            changes[rel] = {
                "sig": sig,
                "md5": md5,
                "size": snaps[path].size,
                "nfiles": nfiles,
                "cache": odb.path,
                "config": config_sig,
                "time": probe,
            }
        else:
            changes[rel] = None
    return snaps, changes, remote, cache


def _adopt(odb: Any, pre: Prehashed) -> None:
    """Make the temporary copy ``pre.tmp`` the DVC cache object of ``pre.md5``."""
    obj = Path(odb.oid_to_path(pre.md5))
    if obj.exists():
        pre.tmp.unlink()
        return
    odb.makedirs(os.fspath(obj.parent))
    try:
        pre.tmp.replace(obj)
    except OSError:  # e.g. the cache is on another filesystem: let DVC copy it
        odb.add(os.fspath(pre.tmp), odb.fs, pre.md5)
        pre.tmp.unlink(missing_ok=True)
    odb.protect(os.fspath(obj))


def _seed_state(repo: Repo, path: Path, pre: Prehashed) -> bool:
    """Record ``pre.md5`` as the hash of ``path`` in DVC's state; False if it changed."""
    from dvc_data.hashfile.hash_info import HashInfo

    fs_path = os.fspath(path)
    try:
        info = repo.fs.info(fs_path)
    except OSError:
        return False
    st = pre.before
    if (info.get("size"), info.get("ino"), info.get("mtime")) != (
        st.st_size,
        st.st_ino,
        st.st_mtime,
    ):
        return False
    repo.state.save(fs_path, repo.fs, HashInfo("md5", pre.md5), info)
    return True


def _forget_state(repo: Repo, paths: list[str]) -> None:
    """Drop DVC's remembered hashes of ``paths`` so that ``Repo.add`` rehashes them."""
    hashes = getattr(repo.state, "hashes", None)
    if not paths or hashes is None:
        return
    with hashes.transact():
        for fs_path in paths:
            hashes.delete(fs_path)


def _names(paths: list[Path], root: Path) -> str:
    return ", ".join(repr(rel_path(p, root)) for p in paths)
