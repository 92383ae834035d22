"""One feature's drift statistics: the sample is formed once, every registered statistic
of its kind reads it.

Below ``exact_max_rows`` current rows everything is exact and equals scipy's results.
Above, the current values are only counted into the reference's grid, and statistics are
computed within bounds; when a statistic finds its bounds too wide to decide on
(:meth:`~jupyter_mlops.monitoring.stats.base.Statistic.needs_exact`), the feature is
computed exactly from its raw values if they are still at hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats import samples
from jupyter_mlops.monitoring.stats.base import CATEGORICAL, NUMERIC, Values
from jupyter_mlops.monitoring.stats.grid import GRID, NumericAccumulator
from jupyter_mlops.monitoring.stats.registry import statistics

if TYPE_CHECKING:
    import numpy as np

    from jupyter_mlops.monitoring.verdict import DriftThresholds


@dataclass
class FeatureStats:
    """The statistics of one feature: values by field name, the histogram, remarks."""

    kind: str
    n_ref: int
    n_cur: int
    values: Values
    exact: bool
    plot: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def numeric_stats(
    acc: NumericAccumulator,
    th: DriftThresholds,
    *,
    raw: np.ndarray | None = None,
    tolerance: float,
) -> FeatureStats:
    """Statistics of the accumulated current values against the reference profile.

    ``raw``: all current values of the column, for the exact fallback when the accumulator
    no longer holds them and the grid's bounds are too wide to decide.
    """
    import numpy as np

    prof = acc.profile
    sample: samples.NumericSample
    if prof.constant:
        sample = samples.ConstantSample(acc)
        return _numeric(sample, _compute(sample))
    values = acc.values()
    if values is None:
        sample = samples.BinnedSample(acc)
        result = _compute(sample)
        too_wide = any(s.needs_exact(result, sample, th, tolerance) for s in statistics(NUMERIC))
        if not too_wide or raw is None:
            return _numeric(sample, result)
        raw = np.asarray(raw, dtype=np.float64)
        values = raw[np.isfinite(raw)]
    sample = samples.ExactSample(prof, np.sort(values), acc)
    return _numeric(sample, _compute(sample))


def _compute(sample: samples.NumericSample) -> Values:
    values: Values = {}
    for stat in statistics(NUMERIC):
        values.update(stat.numeric(sample))
    return values


def _numeric(sample: samples.NumericSample, values: Values) -> FeatureStats:
    acc, m = sample.acc, sample.n_cur
    out = FeatureStats(NUMERIC, sample.n_ref, m, values, sample.exact, sample.plot())
    for stat in statistics(NUMERIC):
        out.notes.extend(stat.notes(values, sample))
    if not sample.exact:
        bounds = [b for s in statistics(NUMERIC) if (b := s.bound(values))]
        out.notes.append(f"large data: {', '.join(bounds)} (binned on {GRID:,} reference cells)")
    below, above = acc.n_below / m, acc.n_above / m
    if below + above > 0.01:
        out.notes.append(
            f"{below:.1%} of current values below the reference's range, {above:.1%} above"
        )
    return out


def categorical_stats(ref_counts: dict[str, int], cur_counts: dict[str, int]) -> FeatureStats:
    """Statistics over the union of categories seen on either side."""
    sample = samples.CategoricalSample(ref_counts, cur_counts)
    values: Values = {}
    for stat in statistics(CATEGORICAL):
        values.update(stat.categorical(sample))
    out = FeatureStats(CATEGORICAL, sample.n_ref, sample.n_cur, values, True, sample.plot())
    for stat in statistics(CATEGORICAL):
        out.notes.extend(stat.notes(values, sample))
    new = [str(k) for k in sample.categories if ref_counts.get(k, 0) == 0]
    if new:
        shown = ", ".join(repr(c) for c in new[:5])
        share = sum(cur_counts.get(c, 0) for c in new) / max(sample.n_cur, 1)
        out.notes.append(f"new in current: {shown} ({share:.1%} of current values)")
    absent = [str(k) for k in sample.categories if cur_counts.get(k, 0) == 0]
    if absent:
        out.notes.append(f"absent from current: {', '.join(repr(c) for c in absent[:5])}")
    return out
