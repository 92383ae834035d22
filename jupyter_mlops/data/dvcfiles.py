"""What DVC keeps on disk, read without importing DVC: ``.dvc`` files, cache objects and
folder manifests.

Reading these directly is what lets an unchanged snapshot be confirmed, and a restore be
planned, in a few ``stat`` calls instead of a 0.3 s DVC import.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path, PurePosixPath

from jupyter_mlops.data.record import DataSnapshot
from jupyter_mlops.errors import DataError

MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
_DVC_LINE = re.compile(r"(- |  )(md5|size|nfiles|hash|path): (.+?)")


def read_dvc_file(path: Path) -> dict[str, str] | None:
    """The single out of a plain ``dvc add`` file, or None if it is anything else."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return None
    if not lines or lines[0] != "outs:":
        return None
    out: dict[str, str] = {}
    for i, line in enumerate(lines[1:]):
        m = _DVC_LINE.fullmatch(line)
        if m is None or (m.group(1) == "- ") != (i == 0) or m.group(2) in out:
            return None
        out[m.group(2)] = m.group(3)
    return out


def object_path(cache: str, md5: str) -> Path:
    """Where the DVC cache at ``cache`` keeps the object ``md5``."""
    return Path(cache, md5[:2], md5[2:])


def read_manifest(path: Path) -> list[tuple[str, str]] | None:
    """(relpath, md5) of each file in a DVC '.dir' manifest; None if unreadable."""
    try:
        items = json.loads(path.read_text())
        return [(str(item["relpath"]), str(item["md5"])) for item in items]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def cache_plan(snap: DataSnapshot, cache: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(relpath, md5) of each file to restore (one ``("", md5)`` for a file snapshot), and
    the md5s of the objects the cache lacks (the manifest's alone if that is missing)."""
    if not snap.is_dir:
        files = [("", snap.md5)]
    else:
        manifest = object_path(cache, snap.md5)
        listed = read_manifest(manifest) if manifest.is_file() else None
        if listed is None:
            return [], [snap.md5]
        for rel, md5 in listed:
            parts = PurePosixPath(rel).parts
            if not parts or rel.startswith("/") or ".." in parts or not MD5.fullmatch(md5):
                raise DataError(f"Bad entry {rel!r} in the DVC manifest of {snap.path!r}")
        files = listed
    absent = [md5 for _, md5 in files if not object_path(cache, md5).is_file()]
    return files, list(dict.fromkeys(absent))


def discard(obj: Path) -> None:
    """Remove a bad cache object (DVC makes them read-only; the folder is writable)."""
    with contextlib.suppress(OSError):
        obj.unlink()
