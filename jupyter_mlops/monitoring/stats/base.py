"""What a drift statistic is: the fields it computes, for which kinds of feature, and how
it takes part in a feature's verdict.

A statistic computes a few named values (its :attr:`Statistic.fields`, e.g. KS gives
``ks_statistic``, ``ks_pvalue`` and ``ks_bound``) from a sample of
:mod:`~jupyter_mlops.monitoring.stats.samples`; they land in
:attr:`FeatureDrift.stats <jupyter_mlops.monitoring.report.FeatureDrift.stats>` and, by
name, in the report's JSON, table and DataFrame. Its part in the verdict is declared:

* a *test* (``pvalue_field`` and ``alpha_threshold``): a p-value below the threshold is a
  significant difference (one test per kind of feature: KS numeric, chi-squared
  categorical);
* an *alarm* (:meth:`Statistic.alarm`): a value that alone makes a warning or a drift;
* *material* (:meth:`Statistic.material`): a shift large enough that a significant test
  means drift, not just a warning.

Adding a statistic is one module with a subclass and a call to
:func:`jupyter_mlops.monitoring.stats.register`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_mlops.monitoring.stats.samples import (
    BinnedSample,
    CategoricalSample,
    ConstantSample,
    ExactSample,
    NumericSample,
)

if TYPE_CHECKING:
    from jupyter_mlops.monitoring.verdict import DriftThresholds

NUMERIC, CATEGORICAL = "numeric", "categorical"
Values = dict[str, Any]


class Statistic:
    """A drift statistic (subclass it; override the methods of the kinds it applies to)."""

    #: Registry name, e.g. ``"ks"``.
    name: str = ""
    #: Kinds of feature it applies to: ``"numeric"``, ``"categorical"``.
    kinds: tuple[str, ...] = ()
    #: The values it computes, in the order the report shows them.
    fields: tuple[str, ...] = ()
    #: The fields :meth:`DriftReport.to_frame` has a column for (default: all).
    table_fields: tuple[str, ...] | None = None

    # -- as a significance test ---------------------------------------------------------
    #: Name of the test in reasons (``"KS"``) and in the HTML table (``short_label``).
    label: str = ""
    short_label: str = ""
    #: The field holding the test statistic and its p-value, and the name of the
    #: :class:`DriftThresholds` field that is its significance level.
    statistic_field: str | None = None
    pvalue_field: str | None = None
    alpha_threshold: str | None = None

    # -- computing ----------------------------------------------------------------------
    def exact(self, sample: ExactSample) -> Values:
        """From every current value (numeric features)."""
        raise NotImplementedError

    def binned(self, sample: BinnedSample) -> Values:
        """From grid counts (large numeric data); exact within the bounds it reports."""
        raise NotImplementedError

    def constant(self, sample: ConstantSample) -> Values:
        """Against a constant reference."""
        raise NotImplementedError

    def categorical(self, sample: CategoricalSample) -> Values:
        """From category counts."""
        raise NotImplementedError

    def numeric(self, sample: NumericSample) -> Values:
        """Dispatch on the way the numeric feature is seen."""
        if isinstance(sample, ExactSample):
            return self.exact(sample)
        if isinstance(sample, BinnedSample):
            return self.binned(sample)
        return self.constant(sample)

    def notes(self, values: Mapping[str, Any], sample: object) -> list[str]:
        """Remarks on the values (shown with the feature)."""
        return []

    def bound(self, values: Mapping[str, Any]) -> str | None:
        """How far a binned value may be from the exact one, in words (``KS within +1e-4``)."""
        return None

    def needs_exact(
        self, values: Mapping[str, Any], sample: BinnedSample, th: DriftThresholds, tolerance: float
    ) -> bool:
        """Whether binned values are too loose to decide on, so raw values are needed."""
        return False

    # -- the verdict --------------------------------------------------------------------
    def alarm(self, values: Mapping[str, Any], th: DriftThresholds) -> tuple[str, str] | None:
        """``(status, reason)`` when the value alone makes a drift or warning status."""
        return None

    def material(self, values: Mapping[str, Any], th: DriftThresholds) -> str | None:
        """The shift in words (``"PSI 0.13"``) when it is material, else None."""
        return None

    @property
    def table(self) -> tuple[str, ...]:
        return self.fields if self.table_fields is None else self.table_fields

    def __repr__(self) -> str:
        return f"<Statistic {self.name}: {', '.join(self.fields)}>"
