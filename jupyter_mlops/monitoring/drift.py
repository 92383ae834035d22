"""Drift of current data against a reference: DataFrames in, a :class:`DriftReport` out.

:func:`drift` compares any two DataFrames (the current side may also be an iterable of
DataFrame chunks: counts add up, so data larger than memory streams through). The
reference is summarised once (:mod:`.profile`), the current side accumulated chunk by chunk
(:mod:`.accumulate`), and every registered statistic (:mod:`.stats`) computed per feature.

Column types: floats are numeric; integer-valued columns with at most
``MAX_AUTO_CATEGORIES`` distinct reference values, booleans and text are categorical
(``categorical=``/``numeric=`` override). A column that is missing on one side, entirely
missing, mixes numbers and text, or has different types on the two sides is reported as
"not computed" with the reason, and does not count in the verdict.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring import stats as st
from jupyter_mlops.monitoring.accumulate import (
    CurrentColumn,
    feature_result,
    feed,
    not_computed,
)
from jupyter_mlops.monitoring.profile import ReferenceProfile
from jupyter_mlops.monitoring.report import DriftReport
from jupyter_mlops.monitoring.verdict import DriftThresholds
from jupyter_mlops.predlog import REQUEST_COLUMNS as LOG_COLUMNS
from jupyter_mlops.predlog.reader import is_output_column

if TYPE_CHECKING:
    import pandas as pd


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
    above (see :mod:`jupyter_mlops.monitoring.stats.compute`).
    """
    import pandas as pd

    started = time.perf_counter()
    th = (thresholds or DriftThresholds()).replace(**threshold_overrides)
    ref = (
        reference
        if isinstance(reference, ReferenceProfile)
        else ReferenceProfile.from_frame(as_frame(reference, "reference"), bins=th.bins)
    )
    chunked = not isinstance(current, pd.DataFrame)
    chunks: Iterable[pd.DataFrame] = current if chunked else [current]  # type: ignore[assignment,list-item]
    forced = {c: "categorical" for c in categorical} | {c: "numeric" for c in numeric}
    overlap = set(categorical) & set(numeric)
    if overlap:
        raise MonitoringError(f"Columns both categorical and numeric: {sorted(overlap)}")

    states: dict[str, CurrentColumn] = {}
    order: list[str] = []
    notes: list[str] = []
    skipped_log: set[str] = set()
    n_rows = 0
    wanted = list(features) if features is not None else None
    for chunk in chunks:
        chunk = as_frame(chunk, "current data")
        n_rows += len(chunk)
        names = wanted if wanted is not None else default_features(ref, chunk, prediction, exclude)
        for name in names:
            if name not in states:
                states[name] = CurrentColumn(name)
                order.append(name)
        if wanted is None:
            skipped_log |= {c for c in LOG_COLUMNS if c in chunk.columns and c not in ref.columns}
        if prediction is not None and prediction not in states:
            states[prediction] = CurrentColumn(prediction)
        for name, state in states.items():
            if name not in chunk.columns or name not in ref.columns:
                continue
            feed(
                state, ref.columns[name], chunk[name], forced.get(name),
                exact_max_rows, keep_raw=not chunked,
            )  # fmt: skip
    if wanted is None and not order:  # no chunk at all: still report the reference's columns
        order = [c for c in ref.columns if c != prediction and c not in exclude]
        states.update({c: CurrentColumn(c) for c in order})
    if n_rows == 0:
        raise MonitoringError("The current data is empty: there is nothing to compare.")

    items = [feature_result(n, ref.columns.get(n), states[n], th, ks_tolerance) for n in order]
    pred_item = None
    if prediction is not None:
        state = states.get(prediction, CurrentColumn(prediction))
        if prediction not in ref.columns:
            pred_item = not_computed(
                prediction, "the reference has no predictions to compare with", None, state
            )
        else:
            pred_item = feature_result(prediction, ref.columns[prediction], state, th, ks_tolerance)
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


def as_frame(obj: Any, what: str) -> pd.DataFrame:
    """``obj`` if it is a DataFrame, else a MonitoringError naming ``what`` it should be."""
    import pandas as pd

    if isinstance(obj, pd.DataFrame):
        return obj
    raise MonitoringError(f"The {what} must be a pandas DataFrame, not {type(obj).__name__}")


def default_features(
    ref: ReferenceProfile, chunk: pd.DataFrame, prediction: str | None, exclude: Sequence[str]
) -> list[str]:
    """Every reference column, then the chunk's other columns except request columns."""
    names = list(ref.columns)
    for c in chunk.columns:
        c = str(c)
        if c not in ref.columns and c not in LOG_COLUMNS and not is_output_column(c):
            names.append(c)
    return [n for n in names if n != prediction and n not in exclude]
