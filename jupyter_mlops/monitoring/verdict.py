"""The words of a drift verdict: feature statuses and the thresholds that decide them.

Kept apart from the report so that the statistics (which say when their values alarm)
and the report (which applies them) share one vocabulary without importing each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from jupyter_mlops import values

DRIFT, WARNING, OK = "drift", "warning", "ok"
INSUFFICIENT, NOT_COMPUTED = "insufficient", "not computed"
STATUS_ORDER = {DRIFT: 0, WARNING: 1, OK: 2, INSUFFICIENT: 3, NOT_COMPUTED: 4}


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature, and the dataset, count as drifted (see :mod:`.report`)."""

    ks_alpha: float = 0.05
    chi2_alpha: float = 0.05
    psi_warning: float = 0.1
    psi_drift: float = 0.25
    wasserstein_drift: float = 0.1  # in reference standard deviations
    min_samples: int = 30
    missing_change: float = 0.1
    share: float = 0.5  # dataset drift when this share of computed features drifts
    bins: int = 10  # PSI bins (reference quantiles)

    def __post_init__(self) -> None:
        """Each threshold in its range, so no verdict is decided by a NaN or a share of -1
        (a UsageError naming the threshold otherwise)."""
        for name in ("ks_alpha", "chi2_alpha"):
            values.between(getattr(self, name), f"drift threshold {name}", 0, 1, open_low=True)
        for name in ("share", "missing_change"):
            values.between(getattr(self, name), f"drift threshold {name}", 0, 1)
        for name in ("psi_warning", "psi_drift", "wasserstein_drift"):
            values.non_negative(getattr(self, name), f"drift threshold {name}")
        values.whole(self.min_samples, "drift threshold min_samples", 1, 10**9)
        values.whole(self.bins, "drift threshold bins", 2, 1000)

    def replace(self, **changes: Any) -> DriftThresholds:
        """A copy with some thresholds changed; unknown names raise ValueError."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(
                f"Unknown drift threshold(s) {sorted(unknown)}; known: {sorted(known)}"
            )
        return DriftThresholds(**{**asdict(self), **changes})
