"""Pearson's chi-squared test (categorical features), as ``scipy.stats.chi2_contingency``
of the 2 x k table of counts (with Yates' correction when there are two categories)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jupyter_mlops.monitoring.stats.base import CATEGORICAL, Statistic, Values

if TYPE_CHECKING:
    import numpy as np

    from jupyter_mlops.monitoring.stats.samples import CategoricalSample


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


class Chi2(Statistic):
    """Chi-squared: ``chi2_statistic``, ``chi2_pvalue``, ``chi2_dof``."""

    name = "chi2"
    kinds = (CATEGORICAL,)
    fields = ("chi2_statistic", "chi2_pvalue", "chi2_dof")
    label, short_label = "chi-squared", "chi2"
    statistic_field, pvalue_field, alpha_threshold = "chi2_statistic", "chi2_pvalue", "chi2_alpha"

    def categorical(self, sample: CategoricalSample) -> Values:
        stat, p, dof = chi2_test(sample.ref, sample.cur)
        return {"chi2_statistic": stat, "chi2_pvalue": p, "chi2_dof": dof}
