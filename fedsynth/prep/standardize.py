"""Standardization: one spelling, one coding scheme and one unit per column, typed values.

Works on the text of a source column (trim, case, missing tokens, value maps), then parses it
into numbers, dates or booleans and converts units by declared linear transforms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from fedsynth.prep.spec import ColumnSpec, PrepSpecError, UnitConversion, ValueType
from fedsynth.schema import DEFAULT_FALSE_VALUES, DEFAULT_TRUE_VALUES
from fedsynth.validation import TIMESTAMP, parse_iso

KNOWN_UNITS: dict[tuple[str, str, str | None], tuple[float, float]] = {
    ("lb", "kg", None): (0.45359237, 0.0),
    ("kg", "lb", None): (1 / 0.45359237, 0.0),
    ("oz", "g", None): (28.349523125, 0.0),
    ("g", "kg", None): (0.001, 0.0),
    ("in", "cm", None): (2.54, 0.0),
    ("cm", "in", None): (1 / 2.54, 0.0),
    ("ft", "m", None): (0.3048, 0.0),
    ("m", "cm", None): (100.0, 0.0),
    ("cm", "m", None): (0.01, 0.0),
    ("F", "C", None): (5 / 9, -32 * 5 / 9),
    ("C", "F", None): (9 / 5, 32.0),
    ("mg/dL", "mmol/L", "glucose"): (1 / 18.0156, 0.0),
    ("mmol/L", "mg/dL", "glucose"): (18.0156, 0.0),
    ("mg/dL", "mmol/L", "cholesterol"): (1 / 38.67, 0.0),
    ("mmol/L", "mg/dL", "cholesterol"): (38.67, 0.0),
    ("mg/dL", "mmol/L", "triglycerides"): (1 / 88.57, 0.0),
    ("mg/dL", "umol/L", "creatinine"): (88.42, 0.0),
    ("umol/L", "mg/dL", "creatinine"): (1 / 88.42, 0.0),
}
"""(from, to, substance) -> (factor, offset): value_to = value_from * factor + offset."""


@dataclass(frozen=True)
class Parsed:
    """Typed values of a column and the mask of cells whose text could not be parsed."""

    values: pd.Series
    failed: pd.Series


def clean_text(
    series: pd.Series, rules: ColumnSpec, missing: Sequence[str]
) -> dict[str, tuple[pd.Series, int]]:
    """Trim, null missing tokens, fold case and apply the value map, in that order.

    Missing tokens are compared with the trimmed text as written, before case folding, so a
    cell is null or not whatever the `case` option (`NA` stays a token under `case: lower`).
    Returns each step's result and how many cells it changed, keyed by rule name; the last
    entry holds the final text. An empty cell nulled by the empty token is not counted: it held
    no value to lose.
    """
    steps: dict[str, tuple[pd.Series, int]] = {}
    text = series.astype(object).where(series.notna(), None)
    present = text.notna()
    if rules.trim:
        trimmed = text.where(~present, text[present].str.strip())
        steps["trim"] = (trimmed, int((trimmed != text)[present].sum()))
        text = trimmed
    tokens = set(missing) | set(rules.missing)
    is_missing = text.isin(tokens) & present
    held = int((is_missing & (text != "")).sum())
    text = text.where(~is_missing, None)
    steps["missing_token"] = (text, held)
    present = text.notna()
    if rules.case:
        folded = text.where(~present, getattr(text[present].str, rules.case)())
        steps["case"] = (folded, int((folded != text)[present].sum()))
        text = folded
    if rules.values:
        hit = text.isin(list(rules.values)) & text.notna()
        mapped = text.where(~hit, text.map(rules.values))
        steps["value_map"] = (mapped, int((hit & (mapped != text)).sum()))
        text = mapped
    steps["final"] = (text, 0)
    return steps


def parse_numbers(text: pd.Series, *, decimal_comma: bool, integer: bool) -> Parsed:
    """Numbers from text; non-numbers, NaN/inf words and (for integers) fractions fail."""
    present = text.notna()
    source = text
    if decimal_comma:
        source = text.where(~present, text[present].str.replace(",", ".", regex=False))
    values = pd.to_numeric(source, errors="coerce").astype("float64")
    failed = present & ~np.isfinite(values)
    values = values.where(~failed)
    if integer:
        fraction = values.notna() & (values != values.round())
        failed = failed | fraction
        values = values.where(~fraction)
    return Parsed(values, failed)


def parse_dates(text: pd.Series, formats: Sequence[str]) -> Parsed:
    """Dates from text, trying each strptime format in order (ISO 8601 when none is given, read
    as `fedsynth validate` reads it). A value with an offset (`%z`, or `Z` in ISO) becomes naive
    UTC, as every datetime is kept; an impossible date (30 February) is not a date."""
    present = text.notna()
    values = pd.Series(pd.NaT, index=text.index, dtype="datetime64[ns]")
    remaining = present.copy()
    for fmt in formats or [None]:
        if not remaining.any():
            break
        cells = text[remaining]
        if fmt is None:
            parsed = _iso_dates(cells)
        else:
            parsed = pd.to_datetime(cells, format=fmt, errors="coerce", utc=True)
            parsed = parsed.dt.tz_localize(None)
        values.loc[parsed.index] = values.loc[parsed.index].where(parsed.isna(), parsed)
        remaining = remaining & values.isna()
    return Parsed(values, present & values.isna())


def _iso_dates(text: pd.Series) -> pd.Series:
    """ISO 8601 text as nanosecond timestamps (pandas' unit); NaT beyond that unit's years."""
    stamps = parse_iso(pa.array(text.tolist(), type=pa.string()))
    low = pa.scalar(pd.Timestamp.min.ceil("us").to_pydatetime(), TIMESTAMP)
    high = pa.scalar(pd.Timestamp.max.floor("us").to_pydatetime(), TIMESTAMP)
    inside = pc.and_(pc.greater_equal(stamps, low), pc.less_equal(stamps, high))
    stamps = pc.if_else(inside, stamps, pa.scalar(None, TIMESTAMP))
    return pd.Series(stamps.to_pandas(coerce_temporal_nanoseconds=True).array, index=text.index)


def parse_booleans(
    text: pd.Series,
    true_values: Sequence[str] = DEFAULT_TRUE_VALUES,
    false_values: Sequence[str] = DEFAULT_FALSE_VALUES,
) -> Parsed:
    """Booleans from the declared true/false spellings, compared case-insensitively."""
    lowered = text.where(text.isna(), text.astype(str).str.lower())
    truths = {v.lower() for v in true_values}
    falses = {v.lower() for v in false_values}
    values = pd.Series(pd.NA, index=text.index, dtype="boolean")
    values[lowered.isin(truths)] = True
    values[lowered.isin(falses)] = False
    return Parsed(values, text.notna() & values.isna())


def parse_as(text: pd.Series, value_type: ValueType, rules: ColumnSpec) -> Parsed:
    """Parse text as `value_type` (TEXT keeps it as is)."""
    if value_type in (ValueType.NUMBER, ValueType.INTEGER):
        return parse_numbers(
            text, decimal_comma=rules.decimal_comma, integer=value_type is ValueType.INTEGER
        )
    if value_type is ValueType.DATE:
        return parse_dates(text, rules.date_formats)
    if value_type is ValueType.BOOLEAN:
        return parse_booleans(text)
    return Parsed(text, pd.Series(False, index=text.index))


def unit_factor(conversion: UnitConversion) -> tuple[float, float]:
    """(factor, offset) of a conversion: as declared, or from the known table."""
    if conversion.factor is not None:
        return conversion.factor, conversion.offset
    key = (conversion.from_unit, conversion.to_unit, conversion.substance)
    if key not in KNOWN_UNITS:
        known = sorted(f"{a} -> {b}" + (f" ({s})" if s else "") for a, b, s in KNOWN_UNITS)
        raise PrepSpecError(
            f"unknown unit conversion {conversion.from_unit} -> {conversion.to_unit}"
            + (f" for {conversion.substance}" if conversion.substance else "")
            + f"; declare 'factor' (and 'offset'), or use one of: {known}"
        )
    return KNOWN_UNITS[key]


def convert_units(values: pd.Series, conversion: UnitConversion) -> pd.Series:
    """Apply `value * factor + offset` to a numeric series."""
    factor, offset = unit_factor(conversion)
    return values * factor + offset
