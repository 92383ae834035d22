"""The record a run keeps of one data file or folder it read: :class:`DataSnapshot`.

Kept apart from the code that makes and restores snapshots, so that readers of run tags
(lineage, reproduce) can parse one without loading the snapshot machinery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jupyter_mlops.errors import DataError


@dataclass(frozen=True)
class DataSnapshot:
    """The DVC-recorded identity of one data file or folder at the time a run read it."""

    path: str  # posix path relative to the project root
    md5: str  # DVC's md5; for a folder the md5 of its '<md5>.dir' manifest
    size: int  # bytes (total of all files for a folder)
    nfiles: int  # 1 for a file

    @property
    def is_dir(self) -> bool:
        """True for a folder snapshot (DVC marks its manifest hash with ``.dir``)."""
        return self.md5.endswith(".dir")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (stored as a run tag, read back with :meth:`from_dict`)."""
        return {"path": self.path, "md5": self.md5, "size": self.size, "nfiles": self.nfiles}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSnapshot:
        """The snapshot :meth:`to_dict` wrote; DataError if ``d`` is not one."""
        try:
            return cls(
                path=str(d["path"]),
                md5=str(d["md5"]),
                size=int(d["size"]),
                nfiles=int(d.get("nfiles", 1)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Not a data snapshot record: {d!r} ({exc!r})") from exc
