"""The population stability index (numeric and categorical features): the drift score.

Numeric features are binned at the reference's quantiles (``bins`` of
:class:`~jupyter_mlops.monitoring.DriftThresholds`); from grid counts the quantile edges
are moved to the nearest grid edge (each moves by less than one cell). Categorical
features use one bin per category. PSI < 0.1 is stable, 0.1-0.25 a moderate shift,
>= 0.25 a major shift (common practice; the thresholds are ``psi_warning`` and
``psi_drift``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats.base import CATEGORICAL, NUMERIC, Statistic, Values
from jupyter_mlops.monitoring.stats.grid import shares_sorted, snapped_shares
from jupyter_mlops.monitoring.verdict import DRIFT, WARNING

if TYPE_CHECKING:
    import numpy as np

    from jupyter_mlops.monitoring.stats.samples import (
        BinnedSample,
        CategoricalSample,
        ConstantSample,
        ExactSample,
    )
    from jupyter_mlops.monitoring.verdict import DriftThresholds

PSI_EPS = 1e-4  # share given to an empty bin, so PSI stays finite (common practice)


def psi(ref_share: np.ndarray, cur_share: np.ndarray, eps: float = PSI_EPS) -> float:
    """Population stability index ``sum((c - r) * ln(c / r))``; empty bins count as ``eps``."""
    import numpy as np

    r = np.maximum(ref_share, eps)
    c = np.maximum(cur_share, eps)
    return float(np.sum((c - r) * np.log(c / r)))


class PSI(Statistic):
    """Population stability index: ``psi``."""

    name = "psi"
    kinds = (NUMERIC, CATEGORICAL)
    fields = ("psi",)

    def exact(self, sample: ExactSample) -> Values:
        prof = sample.profile
        return {"psi": psi(prof.psi_share, shares_sorted(sample.current, prof.psi_edges))}

    def binned(self, sample: BinnedSample) -> Values:
        prof = sample.profile
        current = snapped_shares(sample.acc.counts, prof.grid_psi_cells)
        return {"psi": psi(prof.grid_psi_share, current)}

    def constant(self, sample: ConstantSample) -> Values:
        import numpy as np

        below, above = sample.below, sample.above
        shares = np.asarray([below, 1.0 - below - above, above], dtype=np.float64)
        return {"psi": psi(sample.profile.psi_share, shares)}

    def categorical(self, sample: CategoricalSample) -> Values:
        return {"psi": psi(sample.ref_share, sample.cur_share)}

    def alarm(self, values: Mapping[str, Any], th: DriftThresholds) -> tuple[str, str] | None:
        value = values.get("psi") or 0.0
        if value >= th.psi_drift:
            return DRIFT, f"PSI {value:.3g} >= {th.psi_drift:g}"
        if value >= th.psi_warning:
            return WARNING, f"PSI {value:.3g} >= {th.psi_warning:g}"
        return None

    def material(self, values: Mapping[str, Any], th: DriftThresholds) -> str | None:
        value = values.get("psi") or 0.0
        return f"PSI {value:.3g}" if value >= th.psi_warning else None
