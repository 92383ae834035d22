"""The current side of a drift comparison, accumulated chunk by chunk, and its verdict.

Current data may arrive as many DataFrame chunks (a prediction log read piece by piece):
each feature's :class:`CurrentColumn` adds them up (numeric values counted into the
reference's grid, category counts summed), resolving the comparison kind on the first
non-empty chunk. :func:`feature_result` then turns it into a
:class:`~jupyter_mlops.monitoring.report.FeatureDrift`: computed by the registered
statistics and classified, or "not computed" with the reason (a column missing on one
side, entirely missing, mixing numbers and text, or of different types on the two sides).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring import stats as st
from jupyter_mlops.monitoring.feature import FeatureDrift, absent_values, classify
from jupyter_mlops.monitoring.profile import (
    ColumnProfile,
    as_float,
    category_counts,
    series_kind,
)
from jupyter_mlops.monitoring.verdict import NOT_COMPUTED, DriftThresholds

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class CurrentColumn:
    """What has been seen of one feature in the current data, chunk after chunk."""

    name: str
    kind: str | None = None  # resolved comparison kind: numeric | categorical
    failure: str | None = None  # why it cannot be computed
    seen: bool = False  # the column appeared in some chunk
    n_rows: int = 0
    missing: int = 0
    infinite: int = 0  # of the missing values, those that are +/-inf
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


def feed(
    state: CurrentColumn,
    ref: ColumnProfile,
    series: pd.Series,
    forced: str | None,
    exact_max_rows: int,
    keep_raw: bool,
) -> None:
    """Add one chunk's values of a feature (``forced``: a kind the caller insists on)."""
    state.seen = True
    state.n_rows += len(series)
    if state.failure is not None:
        return
    cur_kind, detail = series_kind(series)
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
        values = as_float(series)
        before, inf_before = state.acc.missing, state.acc.infinite
        state.acc.add(values)
        state.missing += state.acc.missing - before
        state.infinite += state.acc.infinite - inf_before
        if keep_raw:
            state.raw.append(values)
    else:
        state.missing += int(series.isna().sum())
        for key, count in category_counts(series).items():
            state.counts[key] = state.counts.get(key, 0) + count


def not_computed(
    name: str, why: str, ref: ColumnProfile | None, state: CurrentColumn | None
) -> FeatureDrift:
    """A feature that could not be compared, with the reason and what is known of it."""
    item = FeatureDrift(name=name, kind=None, status=NOT_COMPUTED, reason=f"not computed: {why}")
    if ref is not None:
        item.n_ref = ref.n
    if state is not None:
        item.n_cur = state.n_rows - state.missing
    _shares(item, ref, state)
    return item


def _shares(item: FeatureDrift, ref: ColumnProfile | None, state: CurrentColumn | None) -> None:
    """The shares of missing (NaN or infinite) and of infinite values on each side."""
    if ref is not None and ref.n_rows:
        item.missing_ref, item.infinite_ref = ref.missing / ref.n_rows, ref.infinite / ref.n_rows
    if state is not None and state.n_rows:
        item.missing_cur = state.missing / state.n_rows
        item.infinite_cur = state.infinite / state.n_rows


def feature_result(
    name: str,
    ref: ColumnProfile | None,
    state: CurrentColumn,
    th: DriftThresholds,
    tolerance: float,
) -> FeatureDrift:
    """The drift of one feature: its statistics and status, or why it is not computed."""
    import numpy as np

    if ref is None:
        return not_computed(name, "the reference has no such column", None, state)
    if not state.seen:
        return not_computed(name, "the current data has no such column", ref, None)
    if ref.kind == "empty" or ref.n == 0:
        why = absent_values(ref.n_rows, ref.infinite, "reference")
        return not_computed(name, why, ref, state)
    if state.failure is not None:
        return not_computed(name, state.failure, ref, state)
    if state.kind is None or state.n_rows == state.missing:
        why = absent_values(state.n_rows, state.infinite, "current")
        return not_computed(name, why, ref, state)
    if state.kind == "categorical" and ref.kind == "categorical" and ref.id_like:
        why = f"{ref.distinct:,} distinct values in {ref.n:,} rows: an identifier, not a feature"
        return not_computed(name, why, ref, state)
    if state.kind == "categorical" and ref.counts is None:  # forced categorical numeric
        ref = ref.with_counts()
    if state.kind == "numeric":
        assert state.acc is not None
        raw = np.concatenate(state.raw) if state.raw and state.acc.raw is None else None
        s = st.numeric_stats(state.acc, th, raw=raw, tolerance=tolerance)
    else:
        assert ref.counts is not None
        s = st.categorical_stats(ref.counts, state.counts)
    item = FeatureDrift(
        name=name,
        kind=s.kind,
        status="",
        n_ref=s.n_ref,
        n_cur=s.n_cur,
        stats=s.values,
        exact=s.exact,
        notes=s.notes,
        plot=s.plot,
    )
    _shares(item, ref, state)
    classify(item, th)
    return item
