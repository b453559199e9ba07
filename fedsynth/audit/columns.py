"""Numeric views of typed columns shared by every audit metric: floats for continuous, codes for
discrete columns.

Datetimes become microseconds since the epoch (metrics are invariant to the unit); booleans are
discrete with the labels ``false`` / ``true``. Missing values are NaN or code -1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.schema import BooleanColumn, CategoricalColumn, Column, DatetimeColumn

BOOLEAN_LABELS = ("false", "true")


def is_discrete(column: Column) -> bool:
    """Whether `column` holds labels (categorical, boolean) rather than magnitudes."""
    return isinstance(column, CategoricalColumn | BooleanColumn)


def labels(column: Column) -> list[str]:
    """The labels a discrete column can take, in code order."""
    if isinstance(column, CategoricalColumn):
        return list(column.domain)
    return list(BOOLEAN_LABELS)


def as_float(series: pd.Series, column: Column) -> np.ndarray:
    """Float values of a continuous (numerical or datetime) column; NaN where missing."""
    if isinstance(column, DatetimeColumn):
        stamps = series.to_numpy(dtype="datetime64[us]")
        out = stamps.astype(np.int64).astype(np.float64)
        out[np.isnat(stamps)] = np.nan
        return out
    return series.astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)


def as_codes(series: pd.Series, column: Column) -> np.ndarray:
    """Integer codes of a discrete column (positions in `labels`); -1 where missing."""
    if isinstance(column, CategoricalColumn):
        return series.cat.codes.to_numpy(dtype=np.int64)
    values = series.astype("boolean")
    return np.where(values.isna().to_numpy(), -1, values.fillna(False).to_numpy(dtype=np.int64))
