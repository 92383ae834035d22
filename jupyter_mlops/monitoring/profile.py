"""Reference columns summarised for drift: their kind, and what the statistics need.

A :class:`ReferenceProfile` holds one :class:`ColumnProfile` per column: its kind (floats
are numeric; integer-valued columns with at most ``MAX_AUTO_CATEGORIES`` distinct values,
booleans and text are categorical), a numeric summary
(:class:`~jupyter_mlops.monitoring.stats.NumericProfile`) and/or category counts. It is
computed once per reference and cached (in memory, and on disk under a key such as the
data snapshot's md5), so comparing many current windows against it costs no re-sorting.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring import stats as st

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MAX_AUTO_CATEGORIES = 10
ID_MIN_DISTINCT = 1000  # text with more distinct values than this, mostly unique: an id
PROFILE_VERSION = 2  # 2: infinite values counted apart from missing ones
_MEMORY_CACHE: dict[str, ReferenceProfile] = {}
_MEMORY_CACHE_SIZE = 4


@dataclass
class ColumnProfile:
    """One reference column: its type and what its statistics need."""

    name: str
    kind: str  # numeric | categorical | empty | mixed | unsupported
    n_rows: int
    missing: int
    numeric: st.NumericProfile | None = None
    counts: dict[str, int] | None = None
    integer: bool = False  # numeric and every value a whole number
    distinct: int = 0
    detail: str | None = None
    infinite: int = 0  # of the missing values, those that are +/-inf (reported apart)

    @property
    def n(self) -> int:
        return self.n_rows - self.missing

    @property
    def id_like(self) -> bool:
        """Text with many distinct values, mostly unique: an identifier, not a feature."""
        return self.distinct > ID_MIN_DISTINCT and self.distinct > 0.5 * self.n

    def with_counts(self) -> ColumnProfile:
        """This numeric column with category counts (compared as categorical on request)."""
        import numpy as np

        assert self.numeric is not None
        uniq, counts = np.unique(self.numeric.sorted, return_counts=True)
        return ColumnProfile(
            self.name, self.kind, self.n_rows, self.missing, self.numeric,
            {category_key(u): int(c) for u, c in zip(uniq, counts, strict=True)}, self.integer,
            len(uniq),
        )  # fmt: skip


@dataclass
class ReferenceProfile:
    """A reference dataset summarised for drift statistics; reusable and cacheable."""

    columns: dict[str, ColumnProfile]
    n_rows: int
    info: dict[str, Any] = field(default_factory=dict)
    bins: int = 10

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        bins: int = 10,
        info: Mapping[str, Any] | None = None,
    ) -> ReferenceProfile:
        """Summarise every column of ``frame``."""
        columns = {str(c): _profile_column(str(c), frame[c], bins) for c in frame.columns}
        return cls(columns, len(frame), dict(info or {}), bins)

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write to ``folder`` (``profile.json`` + ``arrays.npz``), atomically."""
        import numpy as np

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        meta: dict[str, Any] = {
            "version": PROFILE_VERSION,
            "grid": st.GRID,
            "n_rows": self.n_rows,
            "bins": self.bins,
            "info": self.info,
            "columns": [],
        }
        for i, col in enumerate(self.columns.values()):
            entry = {
                "name": col.name, "kind": col.kind, "n_rows": col.n_rows, "missing": col.missing,
                "counts": col.counts, "integer": col.integer, "distinct": col.distinct,
                "detail": col.detail, "numeric": None, "infinite": col.infinite,
            }  # fmt: skip
            if col.numeric is not None:
                p = col.numeric
                entry["numeric"] = {"missing": p.missing, "std": p.std}
                for key in ("sorted", "grid_counts", "psi_edges", "psi_share"):
                    arrays[f"{i}.{key}"] = getattr(p, key)
                arrays[f"{i}.grid_psi_cells"] = p.grid_psi_cells
                arrays[f"{i}.grid_psi_share"] = p.grid_psi_share
            meta["columns"].append(entry)
        tmp = folder / f".arrays.{os.getpid()}.npz"
        with tmp.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types allow_pickle
        tmp.replace(folder / "arrays.npz")
        tmp_meta = folder / f".profile.{os.getpid()}.json"
        tmp_meta.write_text(json.dumps(meta))
        tmp_meta.replace(folder / "profile.json")  # written last: marks the cache complete
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> ReferenceProfile | None:
        """The profile saved in ``folder``, or None if absent, incomplete or outdated."""
        import numpy as np

        folder = Path(folder)
        try:
            meta = json.loads((folder / "profile.json").read_text())
            if meta.get("version") != PROFILE_VERSION or meta.get("grid") != st.GRID:
                return None
            arrays = dict(np.load(folder / "arrays.npz", allow_pickle=False))
        except (OSError, ValueError, KeyError):
            return None
        columns = {}
        for i, entry in enumerate(meta["columns"]):
            numeric = None
            if entry.get("numeric") is not None:
                numeric = st.NumericProfile(
                    sorted=arrays[f"{i}.sorted"],
                    missing=int(entry["numeric"]["missing"]),
                    std=float(entry["numeric"]["std"]),
                    grid_counts=arrays[f"{i}.grid_counts"],
                    psi_edges=arrays[f"{i}.psi_edges"],
                    psi_share=arrays[f"{i}.psi_share"],
                    grid_psi_cells=arrays[f"{i}.grid_psi_cells"],
                    grid_psi_share=arrays[f"{i}.grid_psi_share"],
                    infinite=int(entry.get("infinite") or 0),
                )
            columns[entry["name"]] = ColumnProfile(
                name=entry["name"],
                kind=entry["kind"],
                n_rows=int(entry["n_rows"]),
                missing=int(entry["missing"]),
                numeric=numeric,
                counts=entry.get("counts"),
                integer=bool(entry.get("integer")),
                distinct=int(entry.get("distinct") or 0),
                detail=entry.get("detail"),
                infinite=int(entry.get("infinite") or 0),
            )
        return cls(columns, int(meta["n_rows"]), dict(meta.get("info") or {}), int(meta["bins"]))


def profile(
    frame: pd.DataFrame,
    *,
    bins: int = 10,
    cache_dir: str | os.PathLike[str] | None = None,
    key: str | None = None,
    info: Mapping[str, Any] | None = None,
) -> ReferenceProfile:
    """Summarise a reference DataFrame once, to compare many current windows against it.

    With ``key`` (e.g. the data snapshot's md5) the profile is cached in memory and, with
    ``cache_dir``, on disk under ``<cache_dir>/<key>-b<bins>/``.
    """
    if key is None:
        return ReferenceProfile.from_frame(frame, bins=bins, info=info)
    return cached_profile(key, bins, cache_dir, lambda: frame, info)


def cached_profile(
    key: str,
    bins: int,
    cache_dir: str | os.PathLike[str] | None,
    load: Callable[[], pd.DataFrame],
    info: Mapping[str, Any] | None,
) -> ReferenceProfile:
    """The profile cached under ``key`` (in memory, then in ``cache_dir``), else of
    ``load()``'s frame, then cached."""
    name = f"{_safe(key)}-b{bins}"
    if name in _MEMORY_CACHE:
        return _MEMORY_CACHE[name]
    prof = ReferenceProfile.load(Path(cache_dir) / name) if cache_dir else None
    if prof is None:
        prof = ReferenceProfile.from_frame(load(), bins=bins, info=info)
        if cache_dir:
            prof.save(Path(cache_dir) / name)
    while len(_MEMORY_CACHE) >= _MEMORY_CACHE_SIZE:
        _MEMORY_CACHE.pop(next(iter(_MEMORY_CACHE)))
    _MEMORY_CACHE[name] = prof
    return prof


def _safe(key: str) -> str:
    clean = "".join(c if c.isalnum() or c in "-_." else "_" for c in key)
    return clean if len(clean) <= 80 else hashlib.sha1(key.encode()).hexdigest()


def series_kind(series: pd.Series) -> tuple[str, str | None]:
    """numeric | categorical | empty | mixed | unsupported, and for mixed an example."""
    import pandas as pd
    from pandas.api import types as pt

    dtype = series.dtype
    if pt.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return ("categorical", None) if series.notna().any() else ("empty", None)
    if pt.is_numeric_dtype(dtype) and not pt.is_complex_dtype(dtype):
        return ("numeric", None) if series.notna().any() else ("empty", None)
    if pt.is_datetime64_any_dtype(dtype) or pt.is_timedelta64_dtype(dtype):
        return "unsupported", "dates and durations are not compared: convert them to numbers"
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "empty":
        return "empty", None
    if inferred in ("string", "boolean", "categorical"):
        return "categorical", None
    if inferred in ("integer", "floating", "mixed-integer-float", "decimal"):
        return "numeric", None
    if inferred in ("mixed", "mixed-integer"):
        return "mixed", _mixed_example(series)
    return "unsupported", f"values of type {inferred} are not compared"


def _mixed_example(series: pd.Series) -> str:
    number = text = None
    for value in series.dropna().head(10_000):
        if isinstance(value, str):
            text = text if text is not None else value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = number if number is not None else value
        if number is not None and text is not None:
            break
    return f"numbers and text mixed (e.g. {number!r} and {text!r})"


def as_float(series: pd.Series) -> np.ndarray:
    import numpy as np
    import pandas as pd
    from pandas.api import types as pt

    if pt.is_numeric_dtype(series.dtype) and not pt.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.ascontiguousarray(values)


def category_key(value: Any) -> str:
    """The category name of a value: whole numbers without '.0', so 1 and 1.0 agree."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float) or hasattr(value, "dtype"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return str(value)
        if number.is_integer():
            return str(int(number))
        return repr(number)
    return str(value)


def category_counts(series: pd.Series) -> dict[str, int]:
    out: dict[str, int] = {}
    for value, count in series.dropna().value_counts(sort=False).items():
        key = category_key(value)
        out[key] = out.get(key, 0) + int(count)
    return out


def _profile_column(name: str, series: pd.Series, bins: int) -> ColumnProfile:
    import numpy as np

    kind, detail = series_kind(series)
    missing = int(series.isna().sum())
    col = ColumnProfile(name, kind, len(series), missing, detail=detail)
    if kind == "numeric":
        values = as_float(series)
        prof = st.numeric_profile(values, bins=bins)
        col.missing, col.infinite = prof.missing, prof.infinite
        col.numeric = prof
        ordered = prof.sorted
        if ordered.size:
            col.distinct = int(np.count_nonzero(np.diff(ordered))) + 1
            col.integer = bool(np.all(np.floor(ordered) == ordered))
        if col.integer and col.distinct <= MAX_AUTO_CATEGORIES:
            uniq, counts = np.unique(ordered, return_counts=True)
            col.counts = {category_key(u): int(c) for u, c in zip(uniq, counts, strict=True)}
    elif kind == "categorical":
        col.counts = category_counts(series)
        col.distinct = len(col.counts)
    return col


# -- the current side ---------------------------------------------------------------------
