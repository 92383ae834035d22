"""One feature's drift: its statistics by name, its status, and the rule that decides it.

:class:`FeatureDrift` holds whatever the registered statistics computed (``stats``, by
field name), so a new statistic needs no field here; :func:`classify` applies the parts
the statistics declare in the verdict (see :mod:`jupyter_mlops.monitoring.stats.base`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jupyter_mlops.monitoring.stats import registry
from jupyter_mlops.monitoring.stats.base import Statistic
from jupyter_mlops.monitoring.verdict import (
    DRIFT,
    INSUFFICIENT,
    NOT_COMPUTED,
    OK,
    WARNING,
    DriftThresholds,
)

#: A feature's fields besides its statistics, in the order of its JSON.
HEAD_FIELDS = (
    "name", "kind", "status", "reason", "n_ref", "n_cur", "missing_ref", "missing_cur",
    "infinite_ref", "infinite_cur",
)  # fmt: skip
TAIL_FIELDS = ("exact", "notes", "plot")


@dataclass
class FeatureDrift:
    """One feature (or the prediction): its statistics, status, and why.

    ``stats`` holds the registered statistics' values by field name (``psi``,
    ``ks_pvalue``, ``chi2_dof``...); each is also readable as an attribute
    (``feature.ks_pvalue``), None when that statistic was not computed for the feature.
    """

    name: str
    kind: str | None  # numeric | categorical | None when not computed
    status: str
    reason: str | None = None  # why not computed / why drifted, in words
    n_ref: int = 0
    n_cur: int = 0
    missing_ref: float = 0.0  # shares of values that are not finite (NaN, None or +/-inf)
    missing_cur: float = 0.0
    infinite_ref: float = 0.0  # of those, the shares that are +/-inf
    infinite_cur: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    exact: bool | None = None
    notes: list[str] = field(default_factory=list)
    plot: dict[str, Any] = field(default_factory=dict, repr=False)

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not attributes: a statistic's field.
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        if not name.startswith("__") and name in registry.fields():
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def score(self) -> float:
        """The drift score features are ordered by: PSI (0 when not computed)."""
        psi = self.stats.get("psi")
        return psi if psi is not None and math.isfinite(psi) else 0.0

    @property
    def test(self) -> Statistic | None:
        """The significance test of the feature's kind (KS numeric, chi-squared categorical)."""
        return registry.significance_test(self.kind)

    @property
    def pvalue(self) -> float | None:
        test = self.test
        return self.stats.get(test.pvalue_field) if test and test.pvalue_field else None

    @property
    def computed(self) -> bool:
        """Whether the feature votes in the dataset verdict."""
        return self.status in (DRIFT, WARNING, OK)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (NaN -> None); every registered statistic's fields, None when absent."""
        head = {k: getattr(self, k) for k in HEAD_FIELDS}
        stats = {k: self.stats.get(k) for k in registry.fields()}
        tail = {"exact": self.exact, "notes": list(self.notes), "plot": self.plot}
        out: dict[str, Any] = json_safe({**head, **stats, **tail})
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureDrift:
        known = set(registry.fields())
        stats = {k: v for k, v in data.items() if k in known and v is not None}
        own = {k: v for k, v in data.items() if k in HEAD_FIELDS or k in TAIL_FIELDS}
        return cls(**own, stats=stats)


def absent_values(n_rows: int, infinite: int, side: str) -> str:
    """Why a side has no usable value, saying infinities apart from missing values: "all
    200 current values are infinite (non-finite)" rather than "missing"."""
    if infinite == n_rows and n_rows:
        return f"all {n_rows:,} {side} values are infinite (non-finite)"
    if infinite:
        return f"all {n_rows:,} {side} values are missing or infinite ({infinite:,} infinite)"
    return f"all {n_rows:,} {side} values are missing"


def classify(feature: FeatureDrift, th: DriftThresholds) -> None:
    """Set ``feature.status`` and ``reason`` from its statistics and the thresholds.

    A statistic's alarm at drift level decides alone; otherwise a significant test makes
    a drift when some statistic calls the shift material, else a warning; a warning alarm
    makes a warning.
    """
    if feature.status == NOT_COMPUTED:
        return
    values = feature.stats
    stats = registry.statistics(feature.kind) if feature.kind else []
    alarms = [a for s in stats if (a := s.alarm(values, th)) is not None]
    material = [m for s in stats if (m := s.material(values, th)) is not None]
    test = feature.test
    p = feature.pvalue
    alpha = getattr(th, test.alpha_threshold) if test and test.alpha_threshold else 0.0
    significant = p is not None and p < alpha
    reasons: list[str] = []
    drift_alarm = next((why for level, why in alarms if level == DRIFT), None)
    warning_alarm = next((why for level, why in alarms if level == WARNING), None)
    if drift_alarm is not None:
        status = DRIFT
        reasons.append(drift_alarm)
    elif significant and material:
        assert test is not None
        status = DRIFT
        reasons.append(f"{test.label} p={p:.2g} < {alpha:g} and {material[0]}")
    elif significant:
        assert test is not None
        status = WARNING
        reasons.append(f"{test.label} p={p:.2g} < {alpha:g}, but the shift is small")
    elif warning_alarm is not None:
        status = WARNING
        reasons.append(warning_alarm)
    else:
        status = OK
    if abs(feature.missing_cur - feature.missing_ref) > th.missing_change:
        what = "missing or infinite" if feature.infinite_ref or feature.infinite_cur else "missing"
        reasons.append(f"{what} values {feature.missing_ref:.0%} -> {feature.missing_cur:.0%}")
        if status == OK:
            status = WARNING
    low = min(feature.n_ref, feature.n_cur)
    if low < th.min_samples:
        side = "reference" if feature.n_ref < feature.n_cur else "current"
        status = INSUFFICIENT
        reasons.insert(0, f"only {low} {side} values (need {th.min_samples})")
    feature.status = status
    feature.reason = "; ".join(reasons) or None


def json_safe(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
