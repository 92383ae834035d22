"""Keeping every snapshot a run refers to safe from DVC's own garbage collection.

``dvc gc -w`` (DVC's standard clean-up) deletes every cache object that no ``.dvc`` file
of the current workspace names, which is most snapshots of earlier runs: afterwards their
``restore`` would need a DVC remote, or fail. So each snapshot's cache objects get a second
name, a hard link under ``<cache>/mlops-keep/<2 hex>/<30 hex>`` (``<cache>`` is DVC's cache
folder, ``.dvc/cache`` by default), made when the snapshot is taken. A hard link costs no
space while DVC's own object exists; once ``dvc gc`` removes that one, the kept name still
holds the bytes, and :func:`relink` puts them back in DVC's cache when a restore needs them.

Why DVC's gc leaves ``mlops-keep`` alone (DVC 3.x, read in ``dvc/repo/gc.py`` and
``dvc_data/hashfile/gc.py``): gc only removes what its object databases list, and an
object database lists a path only as ``<its folder>/<2 chars>/<rest>``
(``dvc_objects.db.ObjectDB.path_to_oid`` skips anything else). The databases are
``<cache>/files/md5`` and, for DVC 2 objects, ``<cache>`` itself, where
``mlops-keep/ab/cdef...`` has three parts: not an object, never removed.

The kept objects are never collected by anything: to free their space, delete
``<cache>/mlops-keep`` (the snapshots of earlier runs then depend on a DVC remote again).
Snapshots taken before this existed are protected by :func:`keep_all` (every object the
cache holds now), once, before the next ``dvc gc``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from jupyter_mlops.data.dvcfiles import object_path, read_manifest
from jupyter_mlops.data.record import DataSnapshot

KEEP_DIR = "mlops-keep"


def keep_root(cache: str | os.PathLike[str]) -> Path:
    """Where the kept objects of the DVC cache whose md5 objects are in ``cache`` live.

    ``cache`` is DVC's local object database (``<cache>/files/md5``).
    """
    path = Path(cache)
    if path.name == "md5" and path.parent.name == "files":
        path = path.parent.parent
    return path / KEEP_DIR


def keep(cache: str | os.PathLike[str], snaps: Iterable[DataSnapshot]) -> int:
    """Give each snapshot's cache objects a kept name; returns how many were added.

    For a folder its files are kept before its manifest, so a kept manifest means the whole
    folder is kept (a later call then costs one ``stat``). Objects the cache lacks are
    skipped (nothing to keep; a restore fetches them from the remote).
    """
    root = keep_root(cache)
    added = 0
    for snap in snaps:
        if object_path(str(root), snap.md5).exists():
            continue
        if snap.is_dir:
            files = read_manifest(object_path(str(cache), snap.md5))
            if files is None:
                continue
            for _, md5 in files:
                added += _link(object_path(str(cache), md5), object_path(str(root), md5))
        added += _link(object_path(str(cache), snap.md5), object_path(str(root), snap.md5))
    return added


def keep_all(root: str | os.PathLike[str] | None = None) -> int:
    """Keep every object DVC's cache of the project at ``root`` holds now (snapshots taken
    before jupyter-mlops kept them itself); returns how many were added."""
    from jupyter_mlops.data.paths import project_root
    from jupyter_mlops.data.repo import open_repo, quiet_dvc

    folder = project_root(root)
    if not (folder / ".dvc").is_dir():
        return 0
    with quiet_dvc():
        repo = open_repo(folder)
        try:
            cache = Path(repo.cache.local.path)
        finally:
            repo.close()
    target = keep_root(cache)
    added = 0
    for obj in sorted(cache.glob("??/*")):  # files before the .dir manifests naming them
        if obj.is_file() and not obj.name.endswith(".dir"):
            added += _link(obj, target / obj.parent.name / obj.name)
    for obj in sorted(cache.glob("??/*.dir")):
        added += _link(obj, target / obj.parent.name / obj.name)
    return added


def relink(cache: str | os.PathLike[str], md5s: Iterable[str]) -> list[str]:
    """Put kept objects back in DVC's cache where it lacks them; the md5s put back."""
    root = keep_root(cache)
    back = []
    for md5 in md5s:
        if _link(object_path(str(root), md5), object_path(str(cache), md5)):
            back.append(md5)
    return back


def _link(src: Path, dst: Path) -> int:
    """Hard-link ``src`` as ``dst`` (a copy where links are refused); 1 if ``dst`` is new."""
    if dst.exists() or not src.is_file():
        return 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        return 0
    except OSError:  # a filesystem without hard links: a read-only copy
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        try:
            shutil.copyfile(src, tmp)
            tmp.chmod(0o444)
            tmp.replace(dst)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return 0
    return 1
