"""Typed columns to float arrays and back: the numeric view every model works in.

Numbers stay numbers, datetimes become seconds since the epoch, booleans 0/1 and categories their
position in the declared domain; a null is NaN. Decoding restores the typed pandas form of
`fedsynth.frame`, with bounds applied and the source's rounding (decimals, whole days).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.frame import DATETIME_DTYPE, pandas_dtype
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    NumericalColumn,
    TableSchema,
)

SECONDS_PER_DAY = 86_400.0
MAX_DECIMALS = 6
_EPOCH = np.datetime64(0, "us")


def is_discrete(column: Column) -> bool:
    """Whether a column's values are a finite set of codes (categorical or boolean)."""
    return isinstance(column, CategoricalColumn | BooleanColumn)


def cardinality(column: Column) -> int:
    """Number of codes of a discrete column."""
    if isinstance(column, CategoricalColumn):
        return len(column.domain)
    return 2


def encode(series: pd.Series, column: Column) -> np.ndarray:
    """The column as float64, NaN for null."""
    if isinstance(column, CategoricalColumn):
        codes = pd.Categorical(series, categories=column.domain).codes.astype(np.float64)
        codes[codes < 0] = np.nan
        return codes
    if isinstance(column, BooleanColumn):
        return series.astype("boolean").astype("Float64").to_numpy(np.float64, na_value=np.nan)
    if isinstance(column, DatetimeColumn):
        stamps = pd.to_datetime(series).astype(DATETIME_DTYPE).to_numpy()
        seconds = (stamps - _EPOCH).astype("timedelta64[us]").astype(np.float64) / 1e6
        seconds[np.isnat(stamps)] = np.nan
        return seconds
    return pd.to_numeric(series).astype("Float64").to_numpy(np.float64, na_value=np.nan)


def bounds(column: Column) -> tuple[float, float]:
    """Declared bounds in the encoded scale (infinite where the schema is silent)."""
    if isinstance(column, NumericalColumn):
        lo = -np.inf if column.min is None else float(column.min)
        hi = np.inf if column.max is None else float(column.max)
        return lo, hi
    if isinstance(column, DatetimeColumn):
        lo = -np.inf if column.min is None else _seconds(column.min)
        hi = np.inf if column.max is None else _seconds(column.max)
        return lo, hi
    return 0.0, float(cardinality(column) - 1)


def observed_decimals(values: np.ndarray) -> int:
    """Fewest decimals (up to MAX_DECIMALS) that represent every finite value exactly."""
    finite = values[np.isfinite(values)]
    for decimals in range(MAX_DECIMALS + 1):
        if np.allclose(np.round(finite, decimals), finite, rtol=0, atol=1e-9):
            return decimals
    return MAX_DECIMALS


def observed_step(seconds: np.ndarray) -> float:
    """A datetime column's resolution: whole days when every value is a midnight, else seconds."""
    finite = seconds[np.isfinite(seconds)]
    if finite.size and np.all(np.mod(finite, SECONDS_PER_DAY) == 0):
        return SECONDS_PER_DAY
    return 1.0


def decode(values: np.ndarray, column: Column, rounding: float) -> pd.Series:
    """Floats (NaN = null) back to the column's typed series.

    `rounding` is the decimals of a numerical column or the step in seconds of a datetime column.
    """
    values = np.asarray(values, dtype=np.float64).copy()
    null = np.isnan(values)
    lo, hi = bounds(column)
    values = np.clip(values, lo, hi)
    if isinstance(column, CategoricalColumn | BooleanColumn):
        codes = np.clip(np.rint(np.nan_to_num(values)), 0, cardinality(column) - 1).astype(int)
        if isinstance(column, BooleanColumn):
            out = pd.array(codes.astype(bool), dtype="boolean")
            out[null] = pd.NA
            return pd.Series(out, name=column.name)
        codes[null] = -1
        cat = pd.Categorical.from_codes(codes, dtype=pandas_dtype(column))
        return pd.Series(cat, name=column.name)
    if isinstance(column, DatetimeColumn):
        step = output_step(column, rounding)
        seconds = np.round(values / step) * step
        seconds = _clip_rounded(seconds, lo, hi, step)
        micros = np.where(null, 0, np.round(seconds * 1e6)).astype(np.int64)
        stamps = (_EPOCH + micros.astype("timedelta64[us]")).astype(DATETIME_DTYPE)
        stamps[null] = np.datetime64("NaT")
        return pd.Series(stamps, name=column.name, dtype=DATETIME_DTYPE)
    assert isinstance(column, NumericalColumn)
    decimals = _decimals(column, rounding)
    values = _clip_rounded(np.round(values, decimals), lo, hi, 10.0**-decimals)
    if column.dtype == "int":
        out = pd.array(np.where(null, 0, values).astype(np.int64), dtype="Int64")
        out[null] = pd.NA
        return pd.Series(out, name=column.name)
    values[null] = np.nan
    return pd.Series(values, name=column.name, dtype="float64")


def output_step(column: Column, rounding: float) -> float:
    """Spacing of the values `decode` gives: seconds of a datetime, 10^-decimals of a number, 1
    between codes. Conditions widen by half of it to take in the values that round into them."""
    if isinstance(column, DatetimeColumn):
        return max(rounding, 1.0)
    if isinstance(column, NumericalColumn):
        return 10.0 ** -_decimals(column, rounding)
    return 1.0


def _decimals(column: NumericalColumn, rounding: float) -> int:
    if column.dtype == "int":
        return 0
    return int(rounding) if column.decimals is None else column.decimals


def null_series(column: Column, n: int) -> pd.Series:
    """An all-null column of the right dtype (for the columns no model fills)."""
    return pd.Series(pd.array([pd.NA] * n, dtype="string"), name=column.name).astype(
        pandas_dtype(column)
    )


def assemble(columns: dict[str, pd.Series], schema: TableSchema, n: int) -> pd.DataFrame:
    """A frame in schema order: modelled columns from `columns`, the others all null."""
    out = {}
    for column in schema.columns:
        series = columns.get(column.name)
        out[column.name] = (
            null_series(column, n) if series is None else series.reset_index(drop=True)
        )
    return pd.DataFrame(out)


SURROGATE_PREFIX = "syn-"
"""Marks a surrogate as synthetic, and keeps it from reading as a number: a bare hex token such
as 12345e6789012345 is a float literal to spreadsheets, and pandas 2.3.3's CSV reader crashes
(segmentation fault) on such a value at the top of a column."""


def surrogate_identifiers(n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` distinct fresh tokens, SURROGATE_PREFIX and 16 hex characters, drawn from `rng`.

    Identifier columns are never modelled, so synthetic rows get new surrogate values: unique,
    as a non-nullable identifier column demands, and unrelated to any real identifier.
    """
    tokens = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    while True:
        _, first = np.unique(tokens, return_index=True)
        if first.size == n:
            break
        again = np.setdiff1d(np.arange(n), first)
        tokens[again] = rng.integers(0, 2**64, size=again.size, dtype=np.uint64)
    text = tokens.astype(">u8").tobytes().hex().encode("ascii")
    return np.char.add(SURROGATE_PREFIX, np.frombuffer(text, dtype="S16").astype(str))


def _clip_rounded(values: np.ndarray, lo: float, hi: float, step: float) -> np.ndarray:
    """Rounding may step just past a bound that is not on the grid; step back inside."""
    values = np.where(values < lo, values + step, values)
    values = np.where(values > hi, values - step, values)
    return values


def _seconds(moment: object) -> float:
    stamp = np.datetime64(pd.Timestamp(moment).tz_localize(None).to_datetime64(), "us")
    return float((stamp - _EPOCH).astype("timedelta64[us]").astype(np.int64)) / 1e6
