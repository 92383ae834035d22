"""The drift statistics by name, in a stable order (the order they were registered).

The order is the order of their fields in a report's JSON and table, and of their reasons
in a verdict. Built-in statistics are registered by :mod:`jupyter_mlops.monitoring.stats`.
"""

from __future__ import annotations

from jupyter_mlops.errors import MonitoringError
from jupyter_mlops.monitoring.stats.base import Statistic

_STATISTICS: dict[str, Statistic] = {}


def register(stat: Statistic) -> Statistic:
    """Compute ``stat`` for every feature of its kinds from now on; returns it.

    Registering a name again replaces that statistic in place (its order is kept).
    """
    if not isinstance(stat, Statistic) or not stat.name or not stat.kinds:
        raise MonitoringError("register(stat): a Statistic with a name and kinds")
    taken = {f: s.name for s in _STATISTICS.values() if s.name != stat.name for f in s.fields}
    clash = [f for f in stat.fields if f in taken]
    if clash:
        raise MonitoringError(
            f"Statistic {stat.name!r}: fields {clash} belong to {taken[clash[0]]!r}"
        )
    _STATISTICS[stat.name] = stat
    return stat


def unregister(name: str) -> None:
    """Stop computing the statistic registered as ``name``."""
    get(name)
    del _STATISTICS[name]


def get(name: str) -> Statistic:
    """The statistic registered as ``name``."""
    try:
        return _STATISTICS[name]
    except KeyError:
        known = ", ".join(_STATISTICS) or "none"
        raise MonitoringError(f"No drift statistic {name!r} (known: {known})") from None


def statistics(kind: str | None = None) -> list[Statistic]:
    """The registered statistics (those for ``kind`` when given), in registration order."""
    return [s for s in _STATISTICS.values() if kind is None or kind in s.kinds]


def fields() -> list[str]:
    """Every statistic's fields, in order: the per-feature columns of a report."""
    return [f for s in _STATISTICS.values() for f in s.fields]


def table_fields() -> list[str]:
    """The fields :meth:`DriftReport.to_frame` has a column for."""
    return [f for s in _STATISTICS.values() for f in s.table]


def significance_test(kind: str | None) -> Statistic | None:
    """The significance test of a kind of feature (the first registered), or None."""
    for stat in statistics(kind) if kind else ():
        if stat.pvalue_field is not None:
            return stat
    return None
