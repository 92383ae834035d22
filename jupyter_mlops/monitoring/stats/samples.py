"""The two sides of one feature, in the form the statistics read them.

A numeric feature is seen one of three ways, and every numeric statistic has a method for
each (:class:`~jupyter_mlops.monitoring.stats.base.Statistic`):

* :class:`ExactSample`: the sorted reference and the sorted current values. One linear
  merge of the two gives both ECDFs at every value (:attr:`ExactSample.ecdf`), shared by
  the statistics that need it, so it is computed once per feature.
* :class:`BinnedSample`: large current data, known only as counts in the reference's
  grid. The ECDFs are known exactly at every grid edge (:attr:`BinnedSample.cdfs`); the
  statistics bracket their exact values between bounds.
* :class:`ConstantSample`: a constant reference; below/equal/above counts say everything.

A categorical feature is a :class:`CategoricalSample`: counts per category on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats.grid import (
    NumericAccumulator,
    NumericProfile,
    fold,
    grid_counts,
)

if TYPE_CHECKING:
    import numpy as np


@dataclass
class ExactSample:
    """A numeric feature with every current value at hand (sorted)."""

    profile: NumericProfile
    current: np.ndarray  # finite current values, ascending
    acc: NumericAccumulator
    exact = True

    @property
    def n_ref(self) -> int:
        return int(self.profile.sorted.size)

    @property
    def n_cur(self) -> int:
        return int(self.current.size)

    @cached_property
    def ecdf(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(z, cum_r, cum_c, ends)``: the merged values, the running counts of reference
        and current values up to each, and where a run of equal values ends.

        Where a run ends, the running counts are #r <= z and #c <= z, the values scipy's
        ks_2samp evaluates (formed the same way, so the statistics are identical).
        """
        import numpy as np

        r, c = self.profile.sorted, self.current
        n, m = r.size, c.size
        merged = np.concatenate([r, c])
        order = np.argsort(merged, kind="stable")
        z = merged[order]
        cum_r = np.cumsum(order < n)
        cum_c = np.arange(1, n + m + 1) - cum_r
        ends = np.empty(n + m, dtype=bool)
        np.not_equal(z[1:], z[:-1], out=ends[:-1])
        ends[-1] = True
        return z, cum_r, cum_c, ends

    def plot(self) -> dict[str, Any]:
        prof, acc = self.profile, self.acc
        counts = (
            acc.counts if acc.counts is not None else grid_counts(self.current, prof.lo, prof.scale)
        )
        return _hist(prof.plot_edges().tolist(), fold(prof.grid_counts), fold(counts))


@dataclass
class CountedSample:
    """A numeric feature known through its accumulator (grid counts, tails, raw values)."""

    acc: NumericAccumulator

    @property
    def profile(self) -> NumericProfile:
        return self.acc.profile

    @property
    def n_ref(self) -> int:
        return self.acc.profile.n

    @property
    def n_cur(self) -> int:
        return self.acc.n


class BinnedSample(CountedSample):
    """A numeric feature whose current values are known as grid counts only."""

    exact = False

    @cached_property
    def cdfs(self) -> tuple[np.ndarray, np.ndarray]:
        """Left-limit CDFs of reference and current at the edges e_0 = min, ..., e_G = max."""
        import numpy as np

        return (
            np.cumsum(self.profile.grid_counts[:-1]) / self.n_ref,
            np.cumsum(self.acc.counts[:-1]) / self.n_cur,
        )

    @property
    def cell_width(self) -> float:
        return 1.0 / self.profile.scale

    def plot(self) -> dict[str, Any]:
        prof = self.profile
        return _hist(prof.plot_edges().tolist(), fold(prof.grid_counts), fold(self.acc.counts))


class ConstantSample(CountedSample):
    """A numeric feature whose reference holds one value."""

    exact = True

    @property
    def below(self) -> float:
        """Share of current values below the reference's value."""
        return self.acc.n_below / self.acc.n

    @property
    def above(self) -> float:
        return self.acc.n_above / self.acc.n

    def plot(self) -> dict[str, Any]:
        value = self.profile.lo
        below, above = self.below, self.above
        return {
            "type": "hist",
            "edges": [value - 1.5, value - 0.5, value + 0.5, value + 1.5],
            "ref": [0.0, 1.0, 0.0],
            "cur": [below, 1.0 - below - above, above],
        }


NumericSample = ExactSample | BinnedSample | ConstantSample


class CategoricalSample:
    """Counts per category on both sides, over the union of categories seen.

    Categories are ordered by reference count (most frequent first), then by name.
    """

    exact = True

    def __init__(self, ref_counts: dict[str, int], cur_counts: dict[str, int]) -> None:
        import numpy as np

        self.ref_counts, self.cur_counts = ref_counts, cur_counts
        self.categories = sorted(
            set(ref_counts) | set(cur_counts), key=lambda c: (-ref_counts.get(c, 0), c)
        )
        self.ref = np.array([ref_counts.get(c, 0) for c in self.categories], dtype=np.int64)
        self.cur = np.array([cur_counts.get(c, 0) for c in self.categories], dtype=np.int64)
        self.n_ref, self.n_cur = int(self.ref.sum()), int(self.cur.sum())
        self.ref_share = self.ref / self.n_ref
        self.cur_share = self.cur / self.n_cur

    def plot(self) -> dict[str, Any]:
        return {
            "type": "bar",
            "categories": [str(k) for k in self.categories][:50],
            "ref": self.ref_share.tolist()[:50],
            "cur": self.cur_share.tolist()[:50],
        }


def _hist(edges: list[float], ref: np.ndarray, cur: np.ndarray) -> dict[str, Any]:
    return {"type": "hist", "edges": edges, "ref": ref.tolist(), "cur": cur.tolist()}
