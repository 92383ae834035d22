"""Drift statistics on numpy arrays: the engine behind :func:`jupyter_mlops.monitoring.drift`.

Numeric features: the two-sample Kolmogorov-Smirnov statistic and p-value (as
``scipy.stats.ks_2samp``), the population stability index on reference quantile bins, and
the Wasserstein-1 distance (as ``scipy.stats.wasserstein_distance``) divided by the
reference's standard deviation (``np.std``, ddof=0). Categorical features: Pearson's
chi-squared test of the 2 x k table of counts (as ``scipy.stats.chi2_contingency``,
including its Yates correction when there are two categories) and PSI.

The reference side is summarised once into a :class:`NumericProfile` (sorted values, a fine
uniform grid of counts, PSI bins), which can be cached under the data snapshot's hash. The
current side is never sorted when it is large: each chunk of values is counted into the
reference's grid of ``GRID`` cells with one ``np.bincount`` (counts add up over chunks).
From the counts:

* the ECDFs of both sides are known exactly at every grid edge, so the KS statistic
  evaluated there, ``D_grid``, is a lower bound of the exact ``D``, and within a cell
  neither ECDF can move by more than that cell's mass, which gives an upper bound ``U``
  (both computed, see :func:`_grid_ks`). Exact ``D`` is in ``[D_grid, U]``; the
  difference is reported as ``ks_bound`` and is typically ~1e-4 for 65,536 cells.
* the Wasserstein integral is bracketed the same way, cell by cell; the parts below the
  reference's minimum and above its maximum are integrated exactly from running sums.
* PSI bins are the reference's quantile edges moved to the nearest grid edge (each edge
  moves by less than one cell).

When a bound is wider than ``ks_tolerance``, or when the p-values at ``D_grid`` and ``U``
fall on both sides of the significance level, the column is computed exactly from its raw
values if they are still at hand. Below ``exact_max_rows`` current rows everything is exact
and equals scipy's results.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

GRID = 1 << 16  # fine cells between the reference's min and max
PLOT_BINS = 64  # histogram bars drawn per numeric feature (divides GRID)
EXACT_MAX_ROWS = 100_000  # current rows up to which every statistic is exact
KS_TOLERANCE = 1e-3  # widest accepted [D_grid, U] before falling back to exact
PSI_EPS = 1e-4  # share given to an empty bin, so PSI stays finite (common practice)
MAX_AUTO_N = 10_000  # as scipy: exact KS p-values when both samples are at most this big
FINITE_N_MAX = 10_000  # kstwo.sf as scipy up to this n*m/(n+m), Kolmogorov's limit beyond


# -- p-values -----------------------------------------------------------------------------


def ks_pvalue(d: float, n: int, m: int) -> float:
    """The two-sided p-value of KS statistic ``d`` for sample sizes ``n`` and ``m``.

    As ``scipy.stats.ks_2samp(method="auto")`` while ``n*m/(n+m)`` is at most 10,000: the
    exact distribution when both samples have at most 10,000 values, else
    ``kstwo.sf(d, round(nm/(n+m)))``. Beyond that, scipy's ``kstwo.sf`` can take a second
    per call (measured: 0.8 s at n = 500,000), so the Kolmogorov limit with Stephens'
    correction, ``kstwobign.sf(d * (sqrt(en) + 0.12 + 0.11/sqrt(en)))``, is used: within
    0.5% (relative) of scipy's value wherever p >= 0.001, far closer near 0.05.
    """
    from scipy.stats import distributions

    if n == 0 or m == 0:
        return math.nan
    if max(n, m) <= MAX_AUTO_N:
        try:  # scipy's own exact routine (private, so guarded)
            from scipy.stats._stats_py import _attempt_exact_2kssamp

            ok, _, prob = _attempt_exact_2kssamp(n, m, math.gcd(n, m), d, "two-sided")
            if ok:
                return float(min(max(prob, 0.0), 1.0))
        except Exception:  # pragma: no cover - a scipy without it: asymptotic below
            pass
    big, small = max(n, m), min(n, m)
    en = float(big) * float(small) / (float(big) + float(small))
    if round(en) <= FINITE_N_MAX:
        prob = distributions.kstwo.sf(d, round(en))
    else:
        root = math.sqrt(en)
        prob = distributions.kstwobign.sf(d * (root + 0.12 + 0.11 / root))
    return float(min(max(prob, 0.0), 1.0))


def ks_statistic(d: float, n: int, m: int) -> float:
    """``d`` as scipy reports it: for samples of at most 10,000 values its exact method
    rounds the statistic to the nearest multiple of 1/lcm(n, m)."""
    if max(n, m) <= MAX_AUTO_N and n and m:
        lcm = (n // math.gcd(n, m)) * m
        return round(d * lcm) * 1.0 / lcm  # half to even, as np.round in scipy
    return d


def chi2_test(counts_ref: np.ndarray, counts_cur: np.ndarray) -> tuple[float, float, int]:
    """Pearson's chi-squared test of the 2 x k table ``[counts_ref, counts_cur]``.

    As ``scipy.stats.chi2_contingency(table)`` (Yates' correction for one degree of
    freedom). Categories absent from both rows must be dropped by the caller.
    """
    import numpy as np
    from scipy.stats import chi2

    observed = np.vstack([counts_ref, counts_cur]).astype(np.float64)
    dof = observed.shape[1] - 1
    if dof <= 0:
        return 0.0, 1.0, 0
    total = observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0)) / total
    if dof == 1:
        diff = expected - observed
        observed = observed + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    stat = float(np.sum((observed - expected) ** 2 / expected))
    return stat, float(chi2.sf(stat, dof)), dof


def psi(ref_share: np.ndarray, cur_share: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))``; empty bins count as ``eps``."""
    import numpy as np

    r = np.maximum(ref_share, eps)
    c = np.maximum(cur_share, eps)
    return float(np.sum((c - r) * np.log(c / r)))


# -- the reference summary ----------------------------------------------------------------


@dataclass
class NumericProfile:
    """What the drift statistics need to know about one numeric reference column."""

    sorted: np.ndarray  # finite values, ascending
    missing: int  # NaN or infinite values
    std: float  # np.std (ddof=0) of the finite values
    grid_counts: np.ndarray  # GRID + 2 cells: below min, GRID inner cells, at/above max
    psi_edges: np.ndarray  # interior quantile edges (unique), bins are [e_i, e_i+1)
    psi_share: np.ndarray  # reference share per PSI bin
    grid_psi_cells: np.ndarray  # PSI edges as grid cell indices (the large-data path)
    grid_psi_share: np.ndarray  # reference share per grid-snapped PSI bin

    @property
    def n(self) -> int:
        return int(self.sorted.size)

    @property
    def lo(self) -> float:
        return float(self.sorted[0])

    @property
    def hi(self) -> float:
        return float(self.sorted[-1])

    @property
    def constant(self) -> bool:
        return self.n > 0 and self.lo == self.hi

    @property
    def scale(self) -> float:
        return GRID / (self.hi - self.lo) if not self.constant else 0.0

    def plot_edges(self) -> np.ndarray:
        import numpy as np

        if self.n == 0:
            return np.array([0.0, 1.0])
        if self.constant:
            return np.array([self.lo - 0.5, self.lo + 0.5])
        return np.linspace(self.lo, self.hi, PLOT_BINS + 1)


def numeric_profile(values: np.ndarray, bins: int = 10) -> NumericProfile:
    """Summarise one reference column (any float array; NaN/inf count as missing)."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    kept = values if finite.all() else values[finite]
    ordered = np.sort(kept)
    n = ordered.size
    prof = NumericProfile(
        sorted=ordered,
        missing=int(values.size - n),
        std=_std(ordered) if n else math.nan,
        grid_counts=np.zeros(GRID + 2, dtype=np.int64),
        psi_edges=np.empty(0),
        psi_share=np.ones(1),
        grid_psi_cells=np.empty(0, dtype=np.int64),
        grid_psi_share=np.ones(1),
    )
    if n == 0:
        return prof
    if not prof.constant:
        prof.grid_counts = _grid_counts(ordered, prof.lo, prof.scale)
    if prof.constant:  # bins: below, equal to, above the value
        edges = np.array([ordered[0], np.nextafter(ordered[0], np.inf)])
    else:
        edges = np.unique(_quantiles(ordered, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = edges[edges > ordered[0]]  # a first bin holding nothing says nothing
    prof.psi_edges = edges
    prof.psi_share = _shares_sorted(ordered, edges)
    if not prof.constant:
        cells = np.unique(
            np.clip(np.ceil((edges - prof.lo) * prof.scale), 1, GRID).astype(np.int64)
        )
        prof.grid_psi_cells = cells + 1  # +1: cell 0 is "below min"
        prof.grid_psi_share = _snapped_shares(prof.grid_counts, prof.grid_psi_cells)
    return prof


def _quantiles(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(ordered, q)`` (linear) of already sorted values, without a copy."""
    import numpy as np

    pos = q * (ordered.size - 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, ordered.size - 1)
    frac = pos - below
    return ordered[below] + (ordered[above] - ordered[below]) * frac


def _std(values: np.ndarray) -> float:
    """``np.std(values)`` (ddof=0), two passes over cache-sized blocks."""
    import numpy as np

    mean = float(np.sum(values)) / values.size
    total = 0.0
    for start in range(0, values.size, _BLOCK):
        block = values[start : start + _BLOCK]
        buf, _ = _work(block.size)
        np.subtract(block, mean, out=buf)
        np.multiply(buf, buf, out=buf)
        total += float(np.sum(buf))
    return math.sqrt(total / values.size)


_BLOCK = 1 << 17  # values binned per step: the work buffers stay in the CPU's cache
_buffers = threading.local()


def _work(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reused float and index buffers (fresh large arrays cost page faults every time)."""
    import numpy as np

    have = getattr(_buffers, "pair", None)
    if have is None or have[0].size < size:
        have = _buffers.pair = (np.empty(size), np.empty(size, dtype=np.intp))
    return have[0][:size], have[1][:size]


def _grid_counts(values: np.ndarray, lo: float, scale: float) -> np.ndarray:
    """Counts of finite ``values`` in cells [below lo, GRID inner cells, at/above hi]."""
    import numpy as np

    counts = np.zeros(GRID + 2, dtype=np.int64)
    for start in range(0, values.size, _BLOCK):
        block = values[start : start + _BLOCK]
        idx, cells = _work(block.size)
        # (x - lo) * scale + 1 is >= 1 inside the range; truncating after the clip to
        # [0, GRID + 1] is the floor there, and sends everything below lo to cell 0.
        np.subtract(block, lo, out=idx)
        idx *= scale
        idx += 1.0
        np.clip(idx, 0.0, GRID + 1, out=idx)
        np.copyto(cells, idx, casting="unsafe")
        counts += np.bincount(cells, minlength=GRID + 2)
    return counts


def _shares_sorted(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    import numpy as np

    cuts = np.searchsorted(ordered, edges, side="left")
    counts = np.diff(np.concatenate([[0], cuts, [ordered.size]]))
    return counts / max(ordered.size, 1)


def _snapped_shares(counts: np.ndarray, cells: np.ndarray) -> np.ndarray:
    import numpy as np

    cum = np.concatenate([[0], np.cumsum(counts)])
    bounds = np.concatenate([[0], cells, [counts.size]])
    per_bin = np.diff(cum[bounds])
    return per_bin / max(int(counts.sum()), 1)


# -- the current side ---------------------------------------------------------------------


@dataclass
class NumericAccumulator:
    """Counts of current values in a reference profile's grid; chunks add up.

    Raw values are kept while there are at most ``exact_max_rows`` of them, so small
    current data gets exact statistics.
    """

    profile: NumericProfile
    exact_max_rows: int = EXACT_MAX_ROWS
    counts: Any = None
    n: int = 0
    missing: int = 0
    n_below: int = 0  # values below the reference's minimum
    n_above: int = 0  # values above its maximum
    below: float = 0.0  # sum of (min - x) over those below
    above: float = 0.0  # sum of (x - max) over those above
    raw: list[Any] | None = field(default_factory=list)

    def add(self, values: np.ndarray) -> None:
        """Count one chunk of current values (NaN and infinities count as missing)."""
        import numpy as np

        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        if not finite.all():
            self.missing += int(values.size - np.count_nonzero(finite))
            values = values[finite]
        if values.size == 0:
            return
        self.n += int(values.size)
        prof = self.profile
        if prof.n:
            if prof.constant:
                below = int(np.count_nonzero(values < prof.lo))
            else:
                counts = _grid_counts(values, prof.lo, prof.scale)
                self.counts = counts if self.counts is None else self.counts + counts
                below = int(counts[0])
            above = int(np.count_nonzero(values > prof.hi))
            # The tails are integrated exactly; usually few values are out there.
            if below:
                self.n_below += below
                self.below += float(np.sum(prof.lo - values[values < prof.lo]))
            if above:
                self.n_above += above
                self.above += float(np.sum(values[values > prof.hi] - prof.hi))
        if self.raw is not None:
            self.raw.append(values)
            if self.n > self.exact_max_rows:
                self.raw = None

    def values(self) -> np.ndarray | None:
        """The raw current values, while they were few enough to keep."""
        import numpy as np

        if self.raw is None:
            return None
        return np.concatenate(self.raw) if self.raw else np.empty(0)


@dataclass
class NumericStats:
    """The statistics of one numeric feature."""

    n_ref: int
    n_cur: int
    ks_statistic: float
    ks_pvalue: float
    ks_bound: float  # exact D lies in [ks_statistic, ks_statistic + ks_bound]
    psi: float
    wasserstein: float
    wasserstein_bound: float  # exact W lies within +- this of wasserstein
    wasserstein_norm: float | None
    exact: bool
    ref_hist: list[float]
    cur_hist: list[float]
    hist_edges: list[float]
    cur_below: float  # share of current values below the reference's minimum
    cur_above: float  # share above its maximum
    note: str | None = None


def numeric_stats(
    acc: NumericAccumulator,
    *,
    raw: np.ndarray | None = None,
    ks_alpha: float = 0.05,
    ks_tolerance: float = KS_TOLERANCE,
) -> NumericStats:
    """Statistics of the accumulated current values against the reference profile.

    ``raw``: all current values of the column, for the exact fallback when the accumulator
    no longer holds them and the grid's bounds are too wide to decide.
    """
    import numpy as np

    prof = acc.profile
    if prof.constant:
        return _constant(acc)
    values = acc.values()
    if values is None:
        stats = _binned(acc)
        too_wide = stats.ks_bound > ks_tolerance or _straddles(stats, acc, ks_alpha)
        if not too_wide or raw is None:
            return stats
        raw = np.asarray(raw, dtype=np.float64)
        values = raw[np.isfinite(raw)]
    return _exact(prof, np.sort(values), acc)


def _straddles(stats: NumericStats, acc: NumericAccumulator, alpha: float) -> bool:
    upper = ks_pvalue(min(stats.ks_statistic + stats.ks_bound, 1.0), acc.profile.n, acc.n)
    return (stats.ks_pvalue < alpha) != (upper < alpha)


def _fold(counts: np.ndarray) -> np.ndarray:
    """Grid counts -> PLOT_BINS shares; outside values go to the outer bars."""
    inner = counts[1:-1].reshape(PLOT_BINS, GRID // PLOT_BINS).sum(axis=1).astype(float)
    inner[0] += counts[0]
    inner[-1] += counts[-1]
    total = inner.sum()
    return inner / total if total else inner


def _exact(prof: NumericProfile, c: np.ndarray, acc: NumericAccumulator) -> NumericStats:
    """Exact KS, PSI and Wasserstein from the sorted reference and sorted current values."""
    import numpy as np

    r = prof.sorted
    n, m = r.size, c.size
    # One linear merge of the two sorted samples gives both ECDFs at every value: where a
    # run of equal values ends, the running counts are #r <= z and #c <= z, the values
    # scipy's ks_2samp evaluates (formed the same way, so the statistic is identical).
    merged = np.concatenate([r, c])
    order = np.argsort(merged, kind="stable")
    z = merged[order]
    cum_r = np.cumsum(order < n)
    cum_c = np.arange(1, n + m + 1) - cum_r
    ends = np.empty(n + m, dtype=bool)
    np.not_equal(z[1:], z[:-1], out=ends[:-1])
    ends[-1] = True
    diffs = cum_r[ends] / n - cum_c[ends] / m
    max_s = float(diffs.max())
    min_s = min(max(float(-diffs.min()), 0.0), 1.0)
    d = ks_statistic(min_s if min_s > max_s else max_s, n, m)
    # Wasserstein-1: the integral of |F_R - F_C| between consecutive merged values.
    w = float(np.sum(np.multiply(np.abs(cum_r[:-1] / n - cum_c[:-1] / m), np.diff(z))))
    counts = acc.counts if acc.counts is not None else _grid_counts(c, prof.lo, prof.scale)
    return NumericStats(
        n_ref=n,
        n_cur=m,
        ks_statistic=d,
        ks_pvalue=ks_pvalue(d, n, m),
        ks_bound=0.0,
        psi=psi(prof.psi_share, _shares_sorted(c, prof.psi_edges)),
        wasserstein=w,
        wasserstein_bound=0.0,
        wasserstein_norm=w / prof.std if prof.std > 0 else None,
        exact=True,
        ref_hist=_fold(prof.grid_counts).tolist(),
        cur_hist=_fold(counts).tolist(),
        hist_edges=prof.plot_edges().tolist(),
        cur_below=acc.n_below / m,
        cur_above=acc.n_above / m,
    )


def _grid_ks(cum_r: np.ndarray, cum_c: np.ndarray) -> tuple[float, float]:
    """(D at the grid edges, an upper bound of D) from left-limit CDFs at the edges."""
    import numpy as np

    d_low = float(np.max(np.abs(cum_r - cum_c)))
    # Within cell [e_j, e_j+1): F_R - F_C <= R(e_j+1) - C(e_j), and the other way round.
    r_next = np.concatenate([cum_r, [1.0]])
    c_next = np.concatenate([cum_c, [1.0]])
    r_prev = np.concatenate([[0.0], cum_r])
    c_prev = np.concatenate([[0.0], cum_c])
    upper = float(max(np.max(r_next - c_prev), np.max(c_next - r_prev)))
    return d_low, max(upper, d_low)


def _binned(acc: NumericAccumulator) -> NumericStats:
    """Statistics from grid counts: KS and Wasserstein within computed bounds."""
    import numpy as np

    prof = acc.profile
    n, m = prof.n, acc.n
    rc, cc = prof.grid_counts, acc.counts
    # Left-limit CDFs at the edges e_0 = min, ..., e_G = max.
    cum_r = np.cumsum(rc[:-1]) / n
    cum_c = np.cumsum(cc[:-1]) / m
    d, upper = _grid_ks(cum_r, cum_c)
    # Wasserstein: each inner cell bracketed by the CDFs at its edges; the tails are exact.
    width = 1.0 / prof.scale
    lo_r, hi_r, lo_c, hi_c = cum_r[:-1], cum_r[1:], cum_c[:-1], cum_c[1:]
    low = np.maximum(np.maximum(lo_r - hi_c, lo_c - hi_r), 0.0)
    high = np.maximum(hi_r - lo_c, hi_c - lo_r)
    trapezoid = np.clip((np.abs(lo_r - lo_c) + np.abs(hi_r - hi_c)) / 2.0, low, high)
    w = float(np.sum(trapezoid)) * width + (acc.below + acc.above) / m
    return NumericStats(
        n_ref=n,
        n_cur=m,
        ks_statistic=d,
        ks_pvalue=ks_pvalue(d, n, m),
        ks_bound=upper - d,
        psi=psi(prof.grid_psi_share, _snapped_shares(cc, prof.grid_psi_cells)),
        wasserstein=w,
        wasserstein_bound=float(np.sum(high - low)) * width,
        wasserstein_norm=w / prof.std if prof.std > 0 else None,
        exact=False,
        ref_hist=_fold(rc).tolist(),
        cur_hist=_fold(cc).tolist(),
        hist_edges=prof.plot_edges().tolist(),
        cur_below=acc.n_below / m,
        cur_above=acc.n_above / m,
    )


def _constant(acc: NumericAccumulator) -> NumericStats:
    """A constant reference: every statistic is exact from the below/equal/above counts."""
    prof = acc.profile
    n, m = prof.n, acc.n
    below, above = acc.n_below / m, acc.n_above / m
    equal = 1.0 - below - above
    d = ks_statistic(max(below, above), n, m)
    w = (acc.below + acc.above) / m
    value = prof.lo
    return NumericStats(
        n_ref=n,
        n_cur=m,
        ks_statistic=d,
        ks_pvalue=ks_pvalue(d, n, m),
        ks_bound=0.0,
        psi=psi(prof.psi_share, _array([below, equal, above])),
        wasserstein=w,
        wasserstein_bound=0.0,
        wasserstein_norm=None,
        exact=True,
        ref_hist=[0.0, 1.0, 0.0],
        cur_hist=[below, equal, above],
        hist_edges=[value - 1.5, value - 0.5, value + 0.5, value + 1.5],
        cur_below=below,
        cur_above=above,
        note=f"the reference is constant ({value:g}), so its spread is 0: Wasserstein is "
        "not normalised",
    )


def _array(values: list[float]) -> np.ndarray:
    import numpy as np

    return np.asarray(values, dtype=np.float64)


# -- categorical --------------------------------------------------------------------------


@dataclass
class CategoricalStats:
    """The statistics of one categorical feature."""

    n_ref: int
    n_cur: int
    chi2_statistic: float
    chi2_pvalue: float
    chi2_dof: int
    psi: float
    categories: list[str]
    ref_share: list[float]
    cur_share: list[float]
    new_categories: list[str]
    missing_categories: list[str]


def categorical_stats(ref_counts: dict[str, int], cur_counts: dict[str, int]) -> CategoricalStats:
    """Chi-squared and PSI over the union of categories seen on either side."""
    import numpy as np

    cats = sorted(set(ref_counts) | set(cur_counts), key=lambda c: (-ref_counts.get(c, 0), c))
    r = np.array([ref_counts.get(c, 0) for c in cats], dtype=np.int64)
    c = np.array([cur_counts.get(k, 0) for k in cats], dtype=np.int64)
    n, m = int(r.sum()), int(c.sum())
    stat, p, dof = chi2_test(r, c)
    r_share, c_share = r / n, c / m
    return CategoricalStats(
        n_ref=n,
        n_cur=m,
        chi2_statistic=stat,
        chi2_pvalue=p,
        chi2_dof=dof,
        psi=psi(r_share, c_share),
        categories=[str(k) for k in cats],
        ref_share=r_share.tolist(),
        cur_share=c_share.tolist(),
        new_categories=[str(k) for k in cats if ref_counts.get(k, 0) == 0],
        missing_categories=[str(k) for k in cats if cur_counts.get(k, 0) == 0],
    )


def merge_counts(into: dict[str, int], values: Sequence[Any]) -> None:
    """Add the category counts of ``values`` (strings; None/NaN skipped) to ``into``."""
    for key, count in _value_counts(values).items():
        into[key] = into.get(key, 0) + count


def _value_counts(values: Sequence[Any]) -> dict[str, int]:
    import numpy as np

    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return {}
    keys, counts = np.unique(arr.astype(str), return_counts=True)
    return {str(k): int(v) for k, v in zip(keys, counts, strict=True)}
