"""Drift of current data against a reference: DataFrames in, a :class:`DriftReport` out.

:func:`drift` compares any two DataFrames (the current side may also be an iterable of
DataFrame chunks: counts add up, so data larger than memory streams through).
:func:`drift_for_deployment` needs no configuration: the current data is the deployment's
prediction log for a window, and the reference is the training data of the deployed model
version, found through lineage (model version -> run -> DVC snapshot) and restored from
DVC into ``.mlops/monitoring/reference/<md5>/``. A reference's summary (sorted values,
grids, category counts) is cached under its snapshot's hash in
``.mlops/monitoring/cache/``, so it is computed once per training set.

Column types: floats are numeric; integer-valued columns with at most
``MAX_AUTO_CATEGORIES`` distinct reference values, booleans and text are categorical
(``categorical=``/``numeric=`` override). A column that is missing on one side, entirely
missing, mixes numbers and text, or has different types on the two sides is reported as
"not computed" with the reason, and does not count in the verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MlopsError, MonitoringError
from jupyter_mlops.monitoring import stats as st
from jupyter_mlops.monitoring.report import (
    NOT_COMPUTED,
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    classify,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from jupyter_mlops.config import Config

MAX_AUTO_CATEGORIES = 10
ID_MIN_DISTINCT = 1000  # text with more distinct values than this, mostly unique: an id
PROFILE_VERSION = 1
#: Columns of ``read_predictions`` that describe requests, not model inputs.
LOG_COLUMNS = (
    "request_id", "row", "timestamp", "deployment", "model_name", "model_version", "run_id",
    "role", "endpoint", "latency_ms",
)  # fmt: skip
_MEMORY_CACHE: dict[str, ReferenceProfile] = {}
_MEMORY_CACHE_SIZE = 4


# -- column profiles ----------------------------------------------------------------------


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

    @property
    def n(self) -> int:
        return self.n_rows - self.missing


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
                "detail": col.detail, "numeric": None,
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
            np.savez(fh, **arrays)
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
    return _cached(key, bins, cache_dir, lambda: frame, info)


def _cached(
    key: str,
    bins: int,
    cache_dir: str | os.PathLike[str] | None,
    load: Any,
    info: Mapping[str, Any] | None,
) -> ReferenceProfile:
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


def _series_kind(series: pd.Series) -> tuple[str, str | None]:
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


def _as_float(series: pd.Series) -> np.ndarray:
    import numpy as np
    import pandas as pd
    from pandas.api import types as pt

    if pt.is_numeric_dtype(series.dtype) and not pt.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.ascontiguousarray(values)


def _key(value: Any) -> str:
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


def _counts(series: pd.Series) -> dict[str, int]:
    out: dict[str, int] = {}
    for value, count in series.dropna().value_counts(sort=False).items():
        key = _key(value)
        out[key] = out.get(key, 0) + int(count)
    return out


def _profile_column(name: str, series: pd.Series, bins: int) -> ColumnProfile:
    import numpy as np

    kind, detail = _series_kind(series)
    missing = int(series.isna().sum())
    col = ColumnProfile(name, kind, len(series), missing, detail=detail)
    if kind == "numeric":
        values = _as_float(series)
        prof = st.numeric_profile(values, bins=bins)
        col.missing = prof.missing
        col.numeric = prof
        ordered = prof.sorted
        if ordered.size:
            col.distinct = int(np.count_nonzero(np.diff(ordered))) + 1
            col.integer = bool(np.all(np.floor(ordered) == ordered))
        if col.integer and col.distinct <= MAX_AUTO_CATEGORIES:
            uniq, counts = np.unique(ordered, return_counts=True)
            col.counts = {_key(u): int(c) for u, c in zip(uniq, counts, strict=True)}
    elif kind == "categorical":
        col.counts = _counts(series)
        col.distinct = len(col.counts)
    return col


# -- the current side ---------------------------------------------------------------------


@dataclass
class _Current:
    """What has been seen of one feature in the current data, chunk after chunk."""

    name: str
    kind: str | None = None  # resolved comparison kind: numeric | categorical
    failure: str | None = None  # why it cannot be computed
    seen: bool = False  # the column appeared in some chunk
    n_rows: int = 0
    missing: int = 0
    acc: st.NumericAccumulator | None = None
    counts: dict[str, int] = field(default_factory=dict)
    raw: list[Any] = field(default_factory=list)  # whole-column arrays for exact fallback


def _resolve(
    ref: ColumnProfile, cur_kind: str, cur_detail: str | None, forced: str | None
) -> tuple[str | None, str | None]:
    """(comparison kind, None) or (None, why it cannot be compared)."""
    sides = (("reference", ref.kind, ref.detail), ("current data", cur_kind, cur_detail))
    for side, kind, detail in sides:
        if kind == "mixed":
            return None, f"the {side} has {detail}"
        if kind == "unsupported":
            return None, f"{detail} ({side})"
    if forced == "categorical":
        return "categorical", None
    if ref.kind != cur_kind:
        return None, (
            f"the reference is {ref.kind} but the current data is {cur_kind}: "
            "the same column must hold the same kind of values on both sides"
        )
    if forced == "numeric" or ref.kind == "categorical":
        return ref.kind, None
    if ref.integer and ref.counts is not None:
        return "categorical", None
    return "numeric", None


def _feed(state: _Current, ref: ColumnProfile, series: pd.Series, forced: str | None,
          exact_max_rows: int, keep_raw: bool) -> None:  # fmt: skip
    """Add one chunk's values of a feature."""
    state.seen = True
    state.n_rows += len(series)
    if state.failure is not None:
        return
    cur_kind, detail = _series_kind(series)
    if cur_kind == "empty":
        state.missing += len(series)
        return
    if state.kind is None:
        kind, why = _resolve(ref, cur_kind, detail, forced)
        if kind is None:
            state.failure = why
            return
        state.kind = kind
        if kind == "numeric":
            assert ref.numeric is not None
            state.acc = st.NumericAccumulator(ref.numeric, exact_max_rows=exact_max_rows)
    elif cur_kind in ("mixed", "unsupported") or (
        state.kind == "numeric" and cur_kind != "numeric"
    ):
        state.failure = f"the current data changes type part-way ({detail or cur_kind})"
        return
    if state.kind == "numeric":
        assert state.acc is not None
        values = _as_float(series)
        before = state.acc.missing
        state.acc.add(values)
        state.missing += state.acc.missing - before
        if keep_raw:
            state.raw.append(values)
    else:
        state.missing += int(series.isna().sum())
        for key, count in _counts(series).items():
            state.counts[key] = state.counts.get(key, 0) + count


def _numeric_result(
    state: _Current, ref: ColumnProfile, th: DriftThresholds, tolerance: float
) -> FeatureDrift:
    import numpy as np

    assert state.acc is not None
    raw = np.concatenate(state.raw) if state.raw and state.acc.raw is None else None
    s = st.numeric_stats(state.acc, raw=raw, ks_alpha=th.ks_alpha, ks_tolerance=tolerance)
    item = FeatureDrift(
        name=state.name,
        kind="numeric",
        status="",
        n_ref=s.n_ref,
        n_cur=s.n_cur,
        psi=s.psi,
        ks_statistic=s.ks_statistic,
        ks_pvalue=s.ks_pvalue,
        ks_bound=s.ks_bound,
        wasserstein=s.wasserstein,
        wasserstein_norm=s.wasserstein_norm,
        wasserstein_bound=s.wasserstein_bound,
        exact=s.exact,
        plot={"type": "hist", "edges": s.hist_edges, "ref": s.ref_hist, "cur": s.cur_hist},
    )
    if s.note:
        item.notes.append(s.note)
    if not s.exact:
        item.notes.append(
            f"large data: KS within +{s.ks_bound:.1g}, Wasserstein within "
            f"+-{s.wasserstein_bound:.1g} (binned on {st.GRID:,} reference cells)"
        )
    if s.cur_below + s.cur_above > 0.01:
        item.notes.append(
            f"{s.cur_below:.1%} of current values below the reference's range, "
            f"{s.cur_above:.1%} above"
        )
    return item


def _categorical_result(state: _Current, ref: ColumnProfile) -> FeatureDrift:
    assert ref.counts is not None
    cur = state.counts
    if ref.kind == "numeric" and ref.numeric is not None and not ref.counts:
        raise AssertionError("numeric column without counts treated as categorical")
    s = st.categorical_stats(ref.counts, cur)
    item = FeatureDrift(
        name=state.name,
        kind="categorical",
        status="",
        n_ref=s.n_ref,
        n_cur=s.n_cur,
        psi=s.psi,
        chi2_statistic=s.chi2_statistic,
        chi2_pvalue=s.chi2_pvalue,
        chi2_dof=s.chi2_dof,
        exact=True,
        plot={
            "type": "bar",
            "categories": s.categories[:50],
            "ref": s.ref_share[:50],
            "cur": s.cur_share[:50],
        },
    )
    if s.new_categories:
        shown = ", ".join(repr(c) for c in s.new_categories[:5])
        share = sum(cur.get(c, 0) for c in s.new_categories) / max(s.n_cur, 1)
        item.notes.append(f"new in current: {shown} ({share:.1%} of current values)")
    if s.missing_categories:
        shown = ", ".join(repr(c) for c in s.missing_categories[:5])
        item.notes.append(f"absent from current: {shown}")
    return item


def _not_computed(
    name: str, why: str, ref: ColumnProfile | None, state: _Current | None
) -> FeatureDrift:
    item = FeatureDrift(name=name, kind=None, status=NOT_COMPUTED, reason=f"not computed: {why}")
    if ref is not None:
        item.n_ref = ref.n
        item.missing_ref = ref.missing / ref.n_rows if ref.n_rows else 0.0
    if state is not None:
        item.n_cur = state.n_rows - state.missing
        item.missing_cur = state.missing / state.n_rows if state.n_rows else 0.0
    return item


def _result(
    name: str,
    ref: ColumnProfile | None,
    state: _Current,
    th: DriftThresholds,
    tolerance: float,
) -> FeatureDrift:
    if ref is None:
        return _not_computed(name, "the reference has no such column", None, state)
    if not state.seen:
        return _not_computed(name, "the current data has no such column", ref, None)
    if ref.kind == "empty" or ref.n == 0:
        return _not_computed(name, f"all {ref.n_rows:,} reference values are missing", ref, state)
    if state.failure is not None:
        return _not_computed(name, state.failure, ref, state)
    if state.kind is None or state.n_rows == state.missing:
        why = f"all {state.n_rows:,} current values are missing"
        return _not_computed(name, why, ref, state)
    if state.kind == "categorical" and ref.kind == "categorical" and _id_like(ref):
        why = f"{ref.distinct:,} distinct values in {ref.n:,} rows: an identifier, not a feature"
        return _not_computed(name, why, ref, state)
    if state.kind == "categorical" and ref.counts is None:  # forced categorical numeric
        ref = _with_counts(ref)
    item = (
        _numeric_result(state, ref, th, tolerance)
        if state.kind == "numeric"
        else _categorical_result(state, ref)
    )
    item.missing_ref = ref.missing / ref.n_rows if ref.n_rows else 0.0
    item.missing_cur = state.missing / state.n_rows if state.n_rows else 0.0
    classify(item, th)
    return item


def _id_like(ref: ColumnProfile) -> bool:
    return ref.distinct > ID_MIN_DISTINCT and ref.distinct > 0.5 * ref.n


def _with_counts(ref: ColumnProfile) -> ColumnProfile:
    import numpy as np

    assert ref.numeric is not None
    uniq, counts = np.unique(ref.numeric.sorted, return_counts=True)
    return ColumnProfile(
        ref.name, ref.kind, ref.n_rows, ref.missing, ref.numeric,
        {_key(u): int(c) for u, c in zip(uniq, counts, strict=True)}, ref.integer, len(uniq),
    )  # fmt: skip


# -- the API ------------------------------------------------------------------------------


def drift(
    reference: pd.DataFrame | ReferenceProfile,
    current: pd.DataFrame | Iterable[pd.DataFrame],
    *,
    features: Sequence[str] | None = None,
    prediction: str | None = None,
    exclude: Sequence[str] = (),
    categorical: Sequence[str] = (),
    numeric: Sequence[str] = (),
    thresholds: DriftThresholds | None = None,
    exact_max_rows: int = st.EXACT_MAX_ROWS,
    ks_tolerance: float = st.KS_TOLERANCE,
    reference_info: Mapping[str, Any] | None = None,
    current_info: Mapping[str, Any] | None = None,
    **threshold_overrides: Any,
) -> DriftReport:
    """Per-feature drift of ``current`` against ``reference``, and the dataset verdict.

    ``current`` is a DataFrame or an iterable of DataFrame chunks (e.g. a prediction log
    read piece by piece). ``features`` defaults to every column of either side, except
    ``prediction`` (compared on its own, not counted in the verdict), ``exclude`` and, when
    the reference lacks them, the prediction log's request columns. Thresholds come from
    ``thresholds`` and keyword overrides (``psi_drift=0.2``, ``share=0.3``...).
    Statistics are exact up to ``exact_max_rows`` current rows, and within a reported bound
    above (see :mod:`jupyter_mlops.monitoring.stats`).
    """
    import pandas as pd

    started = time.perf_counter()
    th = (thresholds or DriftThresholds()).replace(**threshold_overrides)
    ref = (
        reference
        if isinstance(reference, ReferenceProfile)
        else ReferenceProfile.from_frame(_frame(reference, "reference"), bins=th.bins)
    )
    chunked = not isinstance(current, pd.DataFrame)
    chunks: Iterable[pd.DataFrame] = current if chunked else [current]  # type: ignore[list-item]
    forced = {c: "categorical" for c in categorical} | {c: "numeric" for c in numeric}
    overlap = set(categorical) & set(numeric)
    if overlap:
        raise MonitoringError(f"Columns both categorical and numeric: {sorted(overlap)}")

    states: dict[str, _Current] = {}
    order: list[str] = []
    notes: list[str] = []
    skipped_log: set[str] = set()
    n_rows = 0
    wanted = list(features) if features is not None else None
    for chunk in chunks:
        chunk = _frame(chunk, "current data")
        n_rows += len(chunk)
        names = wanted if wanted is not None else _default_features(ref, chunk, prediction, exclude)
        for name in names:
            if name not in states:
                states[name] = _Current(name)
                order.append(name)
        if wanted is None:
            skipped_log |= {c for c in LOG_COLUMNS if c in chunk.columns and c not in ref.columns}
        if prediction is not None and prediction not in states:
            states[prediction] = _Current(prediction)
        for name, state in states.items():
            if name not in chunk.columns or name not in ref.columns:
                continue
            _feed(
                state, ref.columns[name], chunk[name], forced.get(name),
                exact_max_rows, keep_raw=not chunked,
            )  # fmt: skip
    if wanted is None and not order:  # no chunk at all: still report the reference's columns
        order = [c for c in ref.columns if c != prediction and c not in exclude]
        states.update({c: _Current(c) for c in order})
    if n_rows == 0:
        raise MonitoringError("The current data is empty: there is nothing to compare.")

    items = [_result(n, ref.columns.get(n), states[n], th, ks_tolerance) for n in order]
    pred_item = None
    if prediction is not None:
        state = states.get(prediction, _Current(prediction))
        if prediction not in ref.columns:
            pred_item = _not_computed(
                prediction, "the reference has no predictions to compare with", None, state
            )
        else:
            pred_item = _result(prediction, ref.columns[prediction], state, th, ks_tolerance)
    if skipped_log:
        notes.append(f"prediction-log columns ignored: {', '.join(sorted(skipped_log))}")
    return DriftReport(
        features=items,
        prediction=pred_item,
        thresholds=th,
        reference={**ref.info, "rows": ref.n_rows, **dict(reference_info or {})},
        current={"rows": n_rows, **dict(current_info or {})},
        notes=notes,
        elapsed_s=round(time.perf_counter() - started, 4),
    )


def _frame(obj: Any, what: str) -> pd.DataFrame:
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    raise MonitoringError(f"The {what} must be a pandas DataFrame, not {type(obj).__name__}")


def _default_features(
    ref: ReferenceProfile, chunk: pd.DataFrame, prediction: str | None, exclude: Sequence[str]
) -> list[str]:
    names = list(ref.columns)
    for c in chunk.columns:
        c = str(c)
        if c not in ref.columns and c not in LOG_COLUMNS and not c.startswith("prediction_"):
            names.append(c)
    return [n for n in names if n != prediction and n not in exclude]


# -- the deployment's reference: lineage -> DVC snapshot ----------------------------------


TABULAR = (".csv", ".parquet", ".pq", ".tsv")


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV/TSV/Parquet file, or a folder of them (concatenated), as a DataFrame."""
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in TABULAR)
        if not files:
            raise MonitoringError(f"No CSV or Parquet file in {path}")
        return pd.concat([read_table(p) for p in files], ignore_index=True)
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        if suffix in (".csv", ".tsv"):
            return pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
    except FileNotFoundError:
        raise MonitoringError(f"No file {path}") from None
    except Exception as exc:
        raise MonitoringError(f"Cannot read {path}: {exc}") from exc
    raise MonitoringError(f"{path} is not a CSV or Parquet file (or a folder of them)")


@dataclass
class TrainingData:
    """The training data of a model version: its DVC snapshot and where it is restored."""

    path: Path
    run_id: str
    snapshot_path: str
    md5: str
    config: Config = field(repr=False)

    def restore(self) -> Path:
        """Put the snapshot's bytes at ``path`` (a no-op when they are already there)."""
        from jupyter_mlops.tracking.lineage import restore_data

        try:
            restore_data(self.run_id, self.snapshot_path, self.path, overwrite=True,
                         config=self.config)  # fmt: skip
        except MlopsError as exc:
            raise MonitoringError(
                f"Cannot restore the training data {self.snapshot_path} (run {self.run_id}): {exc}"
            ) from exc
        return self.path


def training_data(
    run_id: str,
    *,
    inputs: Sequence[str] = (),
    model: str | None = None,
    restore: bool = True,
    config: Config | None = None,
) -> TrainingData:
    """The tabular data run ``run_id`` trained on, restored into the monitoring cache.

    Of several recorded snapshots, the CSV/Parquet one sharing most columns with
    ``inputs`` is taken (restoring each to look). With one snapshot and ``restore=False``
    nothing is read: callers that find its profile cached under the md5 need no rows.
    """
    from jupyter_mlops.config import load_config
    from jupyter_mlops.tracking.lineage import run_data

    config = config or load_config()
    what = model or f"run {run_id}"
    snaps = run_data(run_id, config)
    if not snaps:
        raise MonitoringError(
            f"{what} has no recorded training data (run {run_id} was not tracked with "
            "%%track --data PATH), so there is no reference to compare with: pass one "
            "(--reference data.csv or a DataFrame)."
        )
    candidates = [s for s in snaps if s.is_dir or Path(s.path).suffix.lower() in TABULAR]
    if not candidates:
        names = ", ".join(s.path for s in snaps)
        raise MonitoringError(
            f"The training data of {what} ({names}) is not CSV or Parquet: pass a reference."
        )
    root = config.mlops_dir / "monitoring" / "reference"
    found = [
        TrainingData(
            root / s.md5.removesuffix(".dir") / Path(s.path).name, run_id, s.path, s.md5, config
        )
        for s in candidates
    ]
    if len(found) == 1:
        if restore:
            found[0].restore()
        return found[0]
    return max(found, key=lambda t: len(set(_columns_of(t.restore())) & set(inputs)))


def _columns_of(path: Path) -> list[str]:
    try:
        return [str(c) for c in read_table(path).columns]
    except MonitoringError:
        return []


def parse_window(last: str | float | None) -> float | None:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` or seconds -> seconds; None = all."""
    if last is None:
        return None
    if isinstance(last, int | float):
        seconds = float(last)
    else:
        text = str(last).strip().lower()
        if text in ("", "all"):
            return None
        units = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :] or "s"
        try:
            seconds = float(number) * units[unit]
        except (ValueError, KeyError):
            raise MonitoringError(
                f"Cannot read the window {last!r}: write e.g. 90s, 30m, 1h, 2d or 1w"
            ) from None
    if not seconds > 0 or not math.isfinite(seconds):
        raise MonitoringError(f"The window must be positive, not {last!r}")
    return seconds


def deployment_model(deployment: str, model: str = "primary", config: Config | None = None) -> Any:
    """The ModelRef a deployment serves as ``primary`` or ``canary`` (or a version number)."""
    from jupyter_mlops.serving import get_deployment

    dep = get_deployment(deployment, config=config)
    if model == "primary":
        return dep.primary
    if model == "canary":
        if dep.canary is None:
            raise MonitoringError(f"Deployment {deployment!r} has no canary.")
        return dep.canary
    for ref in (dep.primary, dep.canary):
        if ref is not None and str(ref.version) == str(model).lstrip("v"):
            return ref
    raise MonitoringError(
        f"Deployment {deployment!r} serves no model version {model!r} "
        f"(primary {dep.primary.label}{', canary ' + dep.canary.label if dep.canary else ''})."
    )


def predictions_window(
    deployment: str, last: str | float | None, config: Config | None = None
) -> pd.DataFrame:
    """The deployment's logged predictions of the last window (clear errors when none)."""
    from jupyter_mlops.serving import read_predictions

    seconds = parse_window(last)
    since = time.time() - seconds if seconds is not None else None
    frame = read_predictions(deployment, since=since, config=config)
    if frame.empty:
        window = f"in the last {last}" if seconds is not None else "yet"
        everything = read_predictions(deployment, limit=1, config=config) if seconds else frame
        hint = ""
        if not everything.empty:
            latest = everything["timestamp"].iloc[-1]
            hint = f" (the latest was logged at {latest:%Y-%m-%d %H:%M:%S} UTC)"
        elif not _log_enabled(deployment, config):
            hint = " (its prediction log is switched off: deploy with prediction_log=True)"
        raise MonitoringError(
            f"Deployment {deployment!r} has logged no predictions {window}{hint}."
        )
    return frame


def _log_enabled(deployment: str, config: Config | None) -> bool:
    from jupyter_mlops.config import load_config
    from jupyter_mlops.serving.state import deployments_root, read_state

    config = config or load_config()
    state = read_state(deployments_root(config.mlops_dir) / deployment) or {}
    return bool(state.get("prediction_log", True))


def input_columns(frame: pd.DataFrame) -> list[str]:
    """The model-input columns of a ``read_predictions`` frame."""
    return [
        str(c)
        for c in frame.columns
        if c not in LOG_COLUMNS and c != "prediction" and not str(c).startswith("prediction_")
    ]


def drift_for_deployment(
    deployment: str,
    *,
    last: str | float | None = "1h",
    reference: pd.DataFrame | ReferenceProfile | str | os.PathLike[str] | None = None,
    model: str = "primary",
    prediction: bool = True,
    current: pd.DataFrame | None = None,
    config: Config | None = None,
    **options: Any,
) -> DriftReport:
    """Drift of a deployment's recent inputs (and predictions) against its training data.

    Current data: the prediction log of the last ``last`` (``"1h"``, ``"30m"``, None =
    all), or ``current``. Reference: ``reference`` (a DataFrame, a profile, or a
    CSV/Parquet path), by default the training data of the deployed ``model``
    (``primary``, ``canary`` or a version number) restored from DVC through lineage.
    Reference columns that are not model inputs (the target) are left out. With
    ``prediction``, that model's answers in the window are compared with its answers on the
    reference rows (predicted once, cached with the reference). Other keywords go to
    :func:`drift` (thresholds, ``features``, ``categorical``...).
    """
    from jupyter_mlops.config import load_config

    config = config or load_config()
    ref_model = deployment_model(deployment, model, config)
    frame = current if current is not None else predictions_window(deployment, last, config)
    inputs = input_columns(frame)
    cache_dir = config.mlops_dir / "monitoring" / "cache"
    bins = int(options.get("bins", DriftThresholds.bins))
    ref_info: dict[str, Any] = {}
    key: str | None = None
    rows: Any = None  # () -> the reference DataFrame, when there are rows
    if isinstance(reference, ReferenceProfile):
        prof = reference
        ref_info["description"] = "a reference profile"
    elif reference is None or isinstance(reference, str | os.PathLike):
        if reference is None:
            run_id = ref_model.run_id or _run_of(ref_model, config)
            data = training_data(
                run_id, inputs=inputs, model=ref_model.label, restore=False, config=config
            )
            path, key = data.path, data.md5
            ref_info.update(
                path=data.snapshot_path, md5=data.md5, run_id=run_id,
                description=f"training data of {ref_model.label}: {data.snapshot_path} "
                f"(DVC md5 {data.md5[:10]}, run {run_id[:12]})",
            )  # fmt: skip
        else:
            path = Path(reference)
            if not path.exists():
                raise MonitoringError(f"No reference file {path}")
            stat = path.stat()
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
            key = f"file-{digest}-{stat.st_size}-{stat.st_mtime_ns}"
            ref_info.update(path=str(path), description=str(path))

        def rows() -> pd.DataFrame:
            if reference is None:
                data.restore()  # only when the rows are needed: not when cached
            return read_table(path)

        prof = _cached(key, bins, cache_dir, rows, None)
    else:
        table = _frame(reference, "reference")
        rows = lambda: table  # noqa: E731
        prof = ReferenceProfile.from_frame(table, bins=bins)
        ref_info["description"] = f"a DataFrame of {len(table):,} rows"

    notes = []
    dropped = [c for c in prof.columns if c not in inputs]
    if dropped:
        notes.append(f"reference columns that are not model inputs, left out: {', '.join(dropped)}")
    window = f"last {last}" if parse_window(last) is not None else "all"
    cur_info = {
        "deployment": deployment,
        "model": ref_model.name,
        "model_version": ref_model.version,
        "window": window,
        "description": f"{len(frame):,} logged inputs of {deployment} ({window})",
    }
    features = options.pop("features", None) or inputs
    report = drift(
        prof, frame, features=features, reference_info=ref_info, current_info=cur_info, **options
    )
    report.notes.extend(notes)
    if prediction and "prediction" in frame.columns:
        report.prediction, why = _prediction_drift(
            frame, ref_model, rows, inputs, key, bins, cache_dir, options
        )
        if why:
            report.notes.append(f"prediction drift not computed: {why}")
    return report


def _prediction_drift(
    frame: pd.DataFrame, ref_model: Any, rows: Any, inputs: Sequence[str], key: str | None,
    bins: int, cache_dir: Path, options: Mapping[str, Any],
) -> tuple[FeatureDrift | None, str | None]:  # fmt: skip
    """The served model's predictions in the window against its predictions on the reference."""
    if rows is None:
        return None, "the reference is a profile, without rows to predict on"
    served = frame
    if ref_model.version and "model_version" in frame.columns:
        served = frame[frame["model_version"].astype(str) == str(ref_model.version)]
    if served.empty:
        return None, f"{ref_model.label} answered no request in the window"
    uri_digest = hashlib.sha1(str(ref_model.uri).encode()).hexdigest()[:12]

    def predict() -> pd.DataFrame:
        return _predict_reference(rows(), inputs, ref_model)

    try:
        if key is not None:
            pred = _cached(f"{key}-pred-{uri_digest}", bins, cache_dir, predict, None)
        else:
            pred = ReferenceProfile.from_frame(predict(), bins=bins)
    except MonitoringError as exc:
        return None, str(exc)
    report = drift(pred, served[["prediction"]], features=[], prediction="prediction", **options)
    return report.prediction, None


def _predict_reference(table: pd.DataFrame, inputs: Sequence[str], ref_model: Any) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    missing = [c for c in inputs if c not in table.columns]
    if missing:
        raise MonitoringError(f"the reference lacks the model inputs {missing}")
    try:
        import mlflow.pyfunc

        from jupyter_mlops.tracking.store import quiet_mlflow

        with quiet_mlflow():
            model = mlflow.pyfunc.load_model(ref_model.source or ref_model.uri)
            out = model.predict(table[list(inputs)])
    except Exception as exc:
        raise MonitoringError(
            f"cannot predict the reference with {ref_model.label}: {exc}"
        ) from exc
    if isinstance(out, pd.DataFrame):
        if out.shape[1] != 1:
            raise MonitoringError("the model answers several columns; only one is compared")
        out = out.iloc[:, 0]
    values = np.asarray(out)
    if values.ndim != 1:
        raise MonitoringError(
            f"the model's predictions have shape {values.shape}, not one value per row"
        )
    return pd.DataFrame({"prediction": values})


def _run_of(ref_model: Any, config: Config) -> str:
    from jupyter_mlops.registry import get_version

    if ref_model.name and ref_model.version:
        version = get_version(f"{ref_model.name}/{ref_model.version}", config)
        if version.run_id:
            return str(version.run_id)
    raise MonitoringError(
        f"{ref_model.label} has no run behind it (deployed from a path?), so its training "
        "data is unknown: pass a reference."
    )
