"""Conditional sampling requests: fixed values for discrete columns, ranges for ordered ones.

`{"diagnosis": "rare_x", "age": (60, 80)}` asks for rows with that diagnosis and an age between
60 and 80 inclusive; `{"admitted": "2024-01-10"}` asks for rows on that day, whatever the
time. Requests are checked against the schema up front so that an impossible one (a value
outside the domain, a range outside the bounds) fails with a clear message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    NumericalColumn,
    TableSchema,
)
from fedsynth.synth.encoding import bounds, encode


class ConditionError(ValueError):
    """A condition that names no column, an impossible value, or that the model cannot meet."""


@dataclass(frozen=True)
class Condition:
    """One requested column restriction, as an inclusive interval in the encoded scale."""

    column: str
    low: float
    high: float
    label: str
    discrete: bool
    integer: bool

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    def widened(self, step: float) -> tuple[float, float]:
        """The interval of unrounded values that round into this one, for output values `step`
        apart: from half a step below its first output value to half a step above its last."""
        if self.discrete:
            return self.low, self.high
        half = step / 2 * (1 - 1e-9)
        first = np.ceil(self.low / step - 1e-9) * step
        last = np.floor(self.high / step + 1e-9) * step
        if not first <= last:  # no output value inside: let sampling report it unmet
            return self.low - half, self.high + half
        return first - half, last + half

    def holds(self, df: pd.DataFrame, schema: TableSchema) -> np.ndarray:
        values = encode(df[self.column], schema.column(self.column))
        with np.errstate(invalid="ignore"):
            return (values >= self.low - 1e-9) & (values <= self.high + 1e-9)


def parse_conditions(conditions: Mapping[str, Any] | None, schema: TableSchema) -> list[Condition]:
    """Validate a {column: value or (low, high)} mapping against the schema."""
    parsed = []
    for name, value in (conditions or {}).items():
        if name not in schema.names:
            raise ConditionError(f"condition on {name!r}: no such column; columns: {schema.names}")
        column = schema.column(name)
        if not column.modelled:
            raise ConditionError(f"condition on {name!r}: {column.kind} columns are not modelled")
        parsed.append(_parse_one(column, value))
    return parsed


def _parse_one(column: Column, value: Any) -> Condition:
    label = f"{column.name}={_shown(value)}"
    if isinstance(column, CategoricalColumn):
        text = str(value)
        if text not in column.domain:
            raise ConditionError(
                f"condition {label}: {text!r} is not in the domain of {column.name!r}: "
                f"{column.domain}"
            )
        code = float(column.domain.index(text))
        return Condition(column.name, code, code, label, discrete=True, integer=True)
    if isinstance(column, BooleanColumn):
        code = float(_boolean(column, value, label))
        return Condition(column.name, code, code, label, discrete=True, integer=True)
    assert isinstance(column, NumericalColumn | DatetimeColumn)
    integer = isinstance(column, NumericalColumn) and column.dtype == "int"
    if isinstance(value, Mapping):
        low, high = value.get("min"), value.get("max")
    elif isinstance(value, list | tuple):
        if len(value) != 2:
            raise ConditionError(f"condition {label}: a range is two values (low, high)")
        low, high = value
    elif isinstance(column, DatetimeColumn) and _is_day(value):
        day = pd.Timestamp(value)
        low, high = day, day + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)
    elif integer or isinstance(column, DatetimeColumn):
        low = high = value
    else:
        raise ConditionError(
            f"condition {label}: {column.name!r} holds continuous numbers; give a range "
            "(low, high) instead of a single value"
        )
    lo = _encoded(column, low, -np.inf, label)
    hi = _encoded(column, high, np.inf, label)
    lo_b, hi_b = bounds(column)
    if lo > hi or hi < lo_b or lo > hi_b:
        raise ConditionError(
            f"condition {label}: the range is empty or outside the bounds of {column.name!r}"
        )
    return Condition(column.name, lo, hi, label, discrete=False, integer=integer)


def _shown(value: Any) -> str:
    """A condition's value as the CLI takes it: `200..300`, `200..` or `..300` for a range."""
    if isinstance(value, Mapping):
        value = (value.get("min"), value.get("max"))
    if isinstance(value, list | tuple) and len(value) == 2:
        return "..".join("" if end is None else str(end) for end in value)
    return repr(value)


def _is_day(value: Any) -> bool:
    """A date without a time of day: the condition takes in the whole day."""
    if isinstance(value, str):
        return re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()) is not None
    return isinstance(value, date) and not isinstance(value, datetime)


def _boolean(column: BooleanColumn, value: Any, label: str) -> bool:
    if isinstance(value, bool):
        return value
    token = str(value).lower()
    if token in {v.lower() for v in column.true_values}:
        return True
    if token in {v.lower() for v in column.false_values}:
        return False
    raise ConditionError(
        f"condition {label}: not a boolean; use one of {column.true_values + column.false_values}"
    )


def _encoded(column: Column, value: Any, default: float, label: str) -> float:
    if value is None:
        return default
    try:
        if isinstance(column, DatetimeColumn):
            return float(encode(pd.Series([pd.Timestamp(value)]), column)[0])
        return float(value)
    except (TypeError, ValueError) as exc:
        raise ConditionError(f"condition {label}: {value!r} is not a {column.kind} value") from exc
