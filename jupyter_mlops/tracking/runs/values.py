"""Text that reads as a number: MLflow keeps params and tags as text, but a sweep's
``n_estimators`` of "100" and "20" must compare and sort as numbers. One rule, used by the
``--where`` language, the table's sorting and the comparison charts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd


def as_number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number (booleans and "nan" are not)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    return None if number != number else number  # "nan" is text here


def numbers_of(series: pd.Series) -> np.ndarray:
    """A column's values as floats: NaN where missing or not a number.

    Params and tags are text in MLflow; each distinct text is parsed once (sweeps repeat
    their values), with the same rule as the constants of a filter.
    """
    import numpy as np
    import pandas as pd

    if pd.api.types.is_numeric_dtype(series.dtype) and series.dtype != bool:
        return series.to_numpy(dtype=float, na_value=np.nan)
    codes, uniques = pd.factorize(series)  # -1 for missing values
    parsed = [as_number(u) for u in uniques]
    table = np.array([np.nan if v is None else v for v in parsed] + [np.nan], dtype=float)
    return table[codes]
