"""The two-sample Kolmogorov-Smirnov test (numeric features), as ``scipy.stats.ks_2samp``.

Exact from every value; from grid counts, the statistic evaluated at the grid edges,
``D_grid``, is a lower bound of the exact ``D``, and within a cell neither ECDF can move
by more than that cell's mass, which gives an upper bound ``U`` (:func:`grid_ks`). Exact
``D`` is in ``[D_grid, U]``; the difference is reported as ``ks_bound`` (typically ~1e-4
for 65,536 cells). When it is wider than the tolerance, or when the p-values at ``D_grid``
and ``U`` fall on both sides of the significance level, raw values are needed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats.base import NUMERIC, Statistic, Values

if TYPE_CHECKING:
    import numpy as np

    from jupyter_mlops.monitoring.stats.samples import BinnedSample, ConstantSample, ExactSample
    from jupyter_mlops.monitoring.verdict import DriftThresholds

KS_TOLERANCE = 1e-3  # widest accepted [D_grid, U] before falling back to exact
MAX_AUTO_N = 10_000  # as scipy: exact KS p-values when both samples are at most this big
FINITE_N_MAX = 10_000  # kstwo.sf as scipy up to this n*m/(n+m), Kolmogorov's limit beyond


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


def grid_ks(cum_r: np.ndarray, cum_c: np.ndarray) -> tuple[float, float]:
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


class KS(Statistic):
    """Kolmogorov-Smirnov: ``ks_statistic``, ``ks_pvalue``, and ``ks_bound`` (exact D lies
    in ``[ks_statistic, ks_statistic + ks_bound]``)."""

    name = "ks"
    kinds = (NUMERIC,)
    fields = ("ks_statistic", "ks_pvalue", "ks_bound")
    label = short_label = "KS"
    statistic_field, pvalue_field, alpha_threshold = "ks_statistic", "ks_pvalue", "ks_alpha"

    def exact(self, sample: ExactSample) -> Values:
        _, cum_r, cum_c, ends = sample.ecdf
        n, m = sample.n_ref, sample.n_cur
        diffs = cum_r[ends] / n - cum_c[ends] / m
        max_s = float(diffs.max())
        min_s = min(max(float(-diffs.min()), 0.0), 1.0)
        return self._values(ks_statistic(min_s if min_s > max_s else max_s, n, m), n, m, 0.0)

    def binned(self, sample: BinnedSample) -> Values:
        d, upper = grid_ks(*sample.cdfs)
        return self._values(d, sample.n_ref, sample.n_cur, upper - d)

    def constant(self, sample: ConstantSample) -> Values:
        n, m = sample.n_ref, sample.n_cur
        return self._values(ks_statistic(max(sample.below, sample.above), n, m), n, m, 0.0)

    @staticmethod
    def _values(d: float, n: int, m: int, bound: float) -> Values:
        return {"ks_statistic": d, "ks_pvalue": ks_pvalue(d, n, m), "ks_bound": bound}

    def bound(self, values: Mapping[str, Any]) -> str:
        return f"KS within +{values['ks_bound']:.1g}"

    def needs_exact(
        self, values: Mapping[str, Any], sample: BinnedSample, th: DriftThresholds, tolerance: float
    ) -> bool:
        if values["ks_bound"] > tolerance:
            return True
        # The p-values at both ends of the bound on each side of the level: undecided.
        upper = min(values["ks_statistic"] + values["ks_bound"], 1.0)
        upper_p = ks_pvalue(upper, sample.n_ref, sample.n_cur)
        return bool((values["ks_pvalue"] < th.ks_alpha) != (upper_p < th.ks_alpha))
