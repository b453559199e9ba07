"""Cleansing: range rules, the common schema's own checks, and de-duplication.

Checks return a boolean mask of offending cells per rule so the pipeline can quarantine whole
rows with reasons; range rules may instead null or clip the value, as the spec declares.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedsynth.frame import category_texts
from fedsynth.prep.spec import DedupSpec, RangeAction, RangeRule
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    NumericalColumn,
)


@dataclass(frozen=True)
class Violation:
    """Cells of one column that break one rule, with a reason a person can act on."""

    rule: str
    mask: pd.Series
    reason: str


def apply_range(values: pd.Series, rule: RangeRule) -> tuple[pd.Series, pd.Series]:
    """Apply a range rule; returns (values after null/clip, mask of cells outside the range)."""
    outside = pd.Series(False, index=values.index)
    if rule.min is not None:
        outside |= (values < rule.min).fillna(False).astype(bool)
    if rule.max is not None:
        outside |= (values > rule.max).fillna(False).astype(bool)
    if rule.action is RangeAction.NULLIFY:
        values = values.where(~outside)
    elif rule.action is RangeAction.CLIP:
        values = values.clip(lower=rule.min, upper=rule.max)
    return values, outside


def schema_violations(values: pd.Series, column: Column) -> Iterator[Violation]:
    """Every way `values` break the common schema's column: type, integer, bounds, domain, null.

    Infinities (a derivation dividing by zero, an overflowing conversion) break it too:
    `fedsynth validate` refuses them, so prep must quarantine rather than write them.
    """
    present = values.notna()
    if isinstance(column, NumericalColumn):
        yield from _numeric_violations(values, column, present)
    elif isinstance(column, CategoricalColumn):
        text = category_texts(values)
        outside = present & ~text.isin(column.domain)
        yield Violation("domain", outside, f"not one of {column.domain}; map it under 'values'")
    elif isinstance(column, BooleanColumn) and not pd.api.types.is_bool_dtype(values.dtype):
        yield Violation("type", present, "not true/false; declare the column's boolean spellings")
    elif isinstance(column, DatetimeColumn):
        yield from _datetime_violations(values, column, present)
    if not column.nullable:
        yield Violation("not_null", ~present, "empty, but the schema says the column is required")


def _numeric_violations(
    values: pd.Series, column: NumericalColumn, present: pd.Series
) -> Iterator[Violation]:
    if not pd.api.types.is_numeric_dtype(values.dtype) or pd.api.types.is_bool_dtype(values.dtype):
        yield Violation("type", present, "not a number")
        return
    numbers = values.astype("float64")
    yield Violation(
        "not_finite",
        present & ~np.isfinite(numbers),
        "infinite (e.g. a derivation divided by zero); guard the derivation, e.g. "
        "`a / b if b != 0 else None`",
    )
    if column.dtype == "int":
        fraction = present & (numbers != numbers.round())
        yield Violation("not_integer", fraction, "has a fraction, but the column holds integers")
    if column.min is not None:
        yield Violation("minimum", present & (numbers < column.min), f"below {column.min}")
    if column.max is not None:
        yield Violation("maximum", present & (numbers > column.max), f"above {column.max}")


def _datetime_violations(
    values: pd.Series, column: DatetimeColumn, present: pd.Series
) -> Iterator[Violation]:
    if not pd.api.types.is_datetime64_any_dtype(values.dtype):
        yield Violation("type", present, "not a date")
        return
    if column.min is not None:
        low = pd.Timestamp(column.min)
        yield Violation("minimum", present & (values < low), f"before {low.isoformat()}")
    if column.max is not None:
        high = pd.Timestamp(column.max)
        yield Violation("maximum", present & (values > high), f"after {high.isoformat()}")


def duplicates(frame: pd.DataFrame, rule: DedupSpec) -> pd.Series:
    """Mask of rows to drop as duplicates: exact over all columns, or over `rule.keys`.

    Rows with an empty key are never duplicates of each other (nothing says they match).
    """
    keys = rule.keys or list(frame.columns)
    if not rule.keys:
        return frame.astype(object).duplicated(keep=rule.keep)
    complete = frame[keys].notna().all(axis=1).to_numpy()
    dup = np.zeros(len(frame), dtype=bool)
    dup[complete] = frame.loc[complete, keys].astype(object).duplicated(keep=rule.keep).to_numpy()
    return pd.Series(dup, index=frame.index)
