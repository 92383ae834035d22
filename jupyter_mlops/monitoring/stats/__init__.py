"""Drift statistics: a registry of them, and the engine that computes them per feature.

Built in, in this order (the order of their fields in a report): PSI (numeric and
categorical; the drift score), Kolmogorov-Smirnov and Wasserstein-1 (numeric),
chi-squared (categorical), each as scipy computes it. One module per statistic
(:mod:`.psi`, :mod:`.ks`, :mod:`.wasserstein`, :mod:`.chi2`); a new one subclasses
:class:`Statistic` and is :func:`register`-ed, and from then on every report carries its
fields and, if it declares a part in the verdict, votes (see :mod:`.base`).

The reference side is summarised once (:mod:`.grid`); large current data is counted into
the reference's grid and the statistics bracketed within reported bounds (:mod:`.compute`).
numpy and scipy are imported inside the functions that need them.
"""

from __future__ import annotations

from jupyter_mlops.monitoring.stats.base import CATEGORICAL, NUMERIC, Statistic
from jupyter_mlops.monitoring.stats.chi2 import Chi2, chi2_test
from jupyter_mlops.monitoring.stats.compute import FeatureStats, categorical_stats, numeric_stats
from jupyter_mlops.monitoring.stats.grid import (
    EXACT_MAX_ROWS,
    GRID,
    NumericAccumulator,
    NumericProfile,
    numeric_profile,
)
from jupyter_mlops.monitoring.stats.ks import KS, KS_TOLERANCE, ks_pvalue, ks_statistic
from jupyter_mlops.monitoring.stats.psi import PSI, psi
from jupyter_mlops.monitoring.stats.registry import (
    fields,
    get,
    register,
    significance_test,
    statistics,
    table_fields,
    unregister,
)
from jupyter_mlops.monitoring.stats.wasserstein import Wasserstein

for _builtin in (PSI(), KS(), Wasserstein(), Chi2()):
    register(_builtin)

__all__ = [
    "CATEGORICAL",
    "EXACT_MAX_ROWS",
    "GRID",
    "KS",
    "KS_TOLERANCE",
    "NUMERIC",
    "PSI",
    "Chi2",
    "FeatureStats",
    "NumericAccumulator",
    "NumericProfile",
    "Statistic",
    "Wasserstein",
    "categorical_stats",
    "chi2_test",
    "fields",
    "get",
    "ks_pvalue",
    "ks_statistic",
    "numeric_profile",
    "numeric_stats",
    "psi",
    "register",
    "significance_test",
    "statistics",
    "table_fields",
    "unregister",
]
