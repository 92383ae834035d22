"""The numeric reference summary and the current side counted into its grid.

The reference side is summarised once into a :class:`NumericProfile` (sorted values, a fine
uniform grid of counts, PSI bins), which can be cached under the data snapshot's hash. The
current side is never sorted when it is large: each chunk of values is counted into the
reference's grid of ``GRID`` cells with one ``np.bincount`` (counts add up over chunks), in
a :class:`NumericAccumulator`. Every numeric statistic is computed from these two (see
:mod:`jupyter_mlops.monitoring.stats.samples`).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

GRID = 1 << 16  # fine cells between the reference's min and max
PLOT_BINS = 64  # histogram bars drawn per numeric feature (divides GRID)
EXACT_MAX_ROWS = 100_000  # current rows up to which every statistic is exact


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
    infinite: int = 0  # of the missing values, those that are +/-inf (not NaN)

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
        infinite=int(np.count_nonzero(np.isinf(values))) if n < values.size else 0,
    )
    if n == 0:
        return prof
    if not prof.constant:
        prof.grid_counts = grid_counts(ordered, prof.lo, prof.scale)
    if prof.constant:  # bins: below, equal to, above the value
        edges = np.array([ordered[0], np.nextafter(ordered[0], np.inf)])
    else:
        edges = np.unique(_quantiles(ordered, np.linspace(0, 1, bins + 1)[1:-1]))
        edges = edges[edges > ordered[0]]  # a first bin holding nothing says nothing
    prof.psi_edges = edges
    prof.psi_share = shares_sorted(ordered, edges)
    if not prof.constant:
        cells = np.unique(
            np.clip(np.ceil((edges - prof.lo) * prof.scale), 1, GRID).astype(np.int64)
        )
        prof.grid_psi_cells = cells + 1  # +1: cell 0 is "below min"
        prof.grid_psi_share = snapped_shares(prof.grid_counts, prof.grid_psi_cells)
    return prof


def _quantiles(ordered: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``np.quantile(ordered, q)`` (linear) of already sorted values, without a copy."""
    import numpy as np

    pos = q * (ordered.size - 1)
    below = np.floor(pos).astype(np.intp)
    above = np.minimum(below + 1, ordered.size - 1)
    frac = pos - below
    out: np.ndarray = ordered[below] + (ordered[above] - ordered[below]) * frac
    return out


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


def grid_counts(values: np.ndarray, lo: float, scale: float) -> np.ndarray:
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


def shares_sorted(ordered: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of sorted values in the bins ``(-inf, e_0), [e_0, e_1), ..., [e_k, inf)``."""
    import numpy as np

    cuts = np.searchsorted(ordered, edges, side="left")
    counts = np.diff(np.concatenate([[0], cuts, [ordered.size]]))
    return counts / max(ordered.size, 1)


def snapped_shares(counts: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Shares of grid ``counts`` in the bins cut at grid ``cells``."""
    import numpy as np

    cum = np.concatenate([[0], np.cumsum(counts)])
    bounds = np.concatenate([[0], cells, [counts.size]])
    per_bin = np.diff(cum[bounds])
    shares: np.ndarray = per_bin / max(int(counts.sum()), 1)
    return shares


def fold(counts: np.ndarray) -> np.ndarray:
    """Grid counts -> PLOT_BINS shares; outside values go to the outer bars."""
    inner = counts[1:-1].reshape(PLOT_BINS, GRID // PLOT_BINS).sum(axis=1).astype(float)
    inner[0] += counts[0]
    inner[-1] += counts[-1]
    total = inner.sum()
    shares: np.ndarray = inner / total if total else inner
    return shares


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
    infinite: int = 0  # of the missing values, those that are +/-inf
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
            self.infinite += int(np.count_nonzero(np.isinf(values)))
            values = values[finite]
        if values.size == 0:
            return
        self.n += int(values.size)
        prof = self.profile
        if prof.n:
            if prof.constant:
                below = int(np.count_nonzero(values < prof.lo))
            else:
                counts = grid_counts(values, prof.lo, prof.scale)
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
