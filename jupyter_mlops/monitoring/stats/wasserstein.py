"""The Wasserstein-1 distance (numeric features), as ``scipy.stats.wasserstein_distance``,
and divided by the reference's standard deviation (``np.std``, ddof=0) to be comparable
across features.

From grid counts, each inner cell's part of the integral is bracketed by the CDFs at its
edges (``wasserstein_bound``); the parts below the reference's minimum and above its
maximum are integrated exactly from running sums.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats.base import NUMERIC, Statistic, Values
from jupyter_mlops.monitoring.stats.samples import ConstantSample

if TYPE_CHECKING:
    from jupyter_mlops.monitoring.stats.samples import BinnedSample, ExactSample
    from jupyter_mlops.monitoring.verdict import DriftThresholds


class Wasserstein(Statistic):
    """``wasserstein``, ``wasserstein_norm`` (in reference standard deviations; None for a
    constant reference) and ``wasserstein_bound`` (exact W lies within +- this)."""

    name = "wasserstein"
    kinds = (NUMERIC,)
    fields = ("wasserstein", "wasserstein_norm", "wasserstein_bound")
    table_fields = ("wasserstein", "wasserstein_norm")

    def exact(self, sample: ExactSample) -> Values:
        import numpy as np

        z, cum_r, cum_c, _ = sample.ecdf
        n, m = sample.n_ref, sample.n_cur
        # The integral of |F_R - F_C| between consecutive merged values.
        w = float(np.sum(np.multiply(np.abs(cum_r[:-1] / n - cum_c[:-1] / m), np.diff(z))))
        return self._values(w, sample.profile.std, 0.0)

    def binned(self, sample: BinnedSample) -> Values:
        import numpy as np

        cum_r, cum_c = sample.cdfs
        lo_r, hi_r, lo_c, hi_c = cum_r[:-1], cum_r[1:], cum_c[:-1], cum_c[1:]
        low = np.maximum(np.maximum(lo_r - hi_c, lo_c - hi_r), 0.0)
        high = np.maximum(hi_r - lo_c, hi_c - lo_r)
        trapezoid = np.clip((np.abs(lo_r - lo_c) + np.abs(hi_r - hi_c)) / 2.0, low, high)
        acc, width = sample.acc, sample.cell_width
        w = float(np.sum(trapezoid)) * width + (acc.below + acc.above) / acc.n
        return self._values(w, sample.profile.std, float(np.sum(high - low)) * width)

    def constant(self, sample: ConstantSample) -> Values:
        acc = sample.acc
        return {
            "wasserstein": (acc.below + acc.above) / acc.n,
            "wasserstein_norm": None,
            "wasserstein_bound": 0.0,
        }

    @staticmethod
    def _values(w: float, std: float, bound: float) -> Values:
        norm = w / std if std > 0 else None
        return {"wasserstein": w, "wasserstein_norm": norm, "wasserstein_bound": bound}

    def notes(self, values: Mapping[str, Any], sample: object) -> list[str]:
        if not isinstance(sample, ConstantSample):
            return []
        value = sample.profile.lo
        return [
            f"the reference is constant ({value:g}), so its spread is 0: Wasserstein is "
            "not normalised"
        ]

    def bound(self, values: Mapping[str, Any]) -> str:
        return f"Wasserstein within +-{values['wasserstein_bound']:.1g}"

    def material(self, values: Mapping[str, Any], th: DriftThresholds) -> str | None:
        norm = values.get("wasserstein_norm")
        if norm is not None and norm >= th.wasserstein_drift:
            return f"Wasserstein {norm:.3g} sd"
        return None
