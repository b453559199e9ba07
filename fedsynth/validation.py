"""Cell-level validation of one column batch against its schema column, vectorized with Arrow.

Each column yields its typed values (null where a cell is invalid) and one rule code per row
(0 = valid). A text cell of whitespace only is empty (null); other cells are read without their
surrounding whitespace, except identifier and text cells, which keep it. A cell breaks at most
one rule: the first of type, finiteness, bounds, integer range, domain, nullability that it
fails. Messages are built only for the cells that failed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedsynth.arrow_text import as_text
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    NumericalColumn,
)

TIMESTAMP = pa.timestamp("us")
_UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")
_INT_RE = r"^[+-]?\d+$"
_FLOAT_RE = r"(?i)^[+-]?((\d+\.?\d*|\.\d+)(e[+-]?\d+)?|inf|infinity|nan)$"
_ISO_LOCAL = (
    "%Y-%m-%d",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)
_ISO_FORMATS = _ISO_LOCAL + tuple(f"{fmt}%z" for fmt in _ISO_LOCAL[1:])
"""Tried in order on ISO text; `%z` reads `Z`, `+02:00` or `+0200`."""
_ISO_FRACTION_RE = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}\.\d{1,6}(Z|[+-]\d{2}:?\d{2})?$"
_ISO_DESCRIPTION = (
    "ISO 8601 (YYYY-MM-DD, or YYYY-MM-DD HH:MM[:SS[.ffffff]] with T or a space, optionally "
    "ending in Z or an offset such as +02:00)"
)
_ZONE = re.compile(r"\d:\d{2}(:\d{2}(\.\d*)?)?(Z|[+-]\d{2}(:?\d{2})?)$")
"""A time of day that ends in `Z` or a UTC offset."""
_DIRECTIVE = re.compile(r"%[EO]?(.)")
_COMPOSITES = {
    "F": "%Y-%m-%d",
    "D": "%m/%d/%y",
    "x": "%m/%d/%y",
    "T": "%H:%M:%S",
    "X": "%H:%M:%S",
    "R": "%H:%M",
    "r": "%I:%M:%S %p",
    "c": "%a %b %e %H:%M:%S %Y",
}
"""Composite strptime directives written out (C locale), so their day and second show."""
_INT64_LIMIT = 2.0**63


class Rule(IntEnum):
    """The rule a cell broke; the name is what reports and quarantine files show."""

    OK = 0
    TYPE = 1
    NOT_INTEGER = 2
    NOT_FINITE = 3
    MINIMUM = 4
    MAXIMUM = 5
    DOMAIN = 6
    NOT_NULL = 7
    OUT_OF_RANGE = 8

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class ColumnResult:
    """Typed values of one column batch and the rule code of every row."""

    values: pa.Array
    codes: np.ndarray


class UnsupportedStorage(TypeError):
    """The file stores a column in a physical type the schema's kind cannot come from."""


def validate_column(raw: pa.Array, column: Column) -> ColumnResult:
    """Parse and check `raw` (text, or an already typed Parquet array) against `column`."""
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    if pa.types.is_large_string(raw.type):
        raw = raw.cast(pa.string())
    raw = blank_as_null(raw)
    if isinstance(column, NumericalColumn):
        values, codes = _numbers(raw, column)
    elif isinstance(column, CategoricalColumn):
        values, codes = _categories(raw, column)
    elif isinstance(column, BooleanColumn):
        values, codes = _booleans(raw, column)
    elif isinstance(column, DatetimeColumn):
        values, codes = _datetimes(raw, column)
    else:
        values = as_text(raw)
        codes = np.zeros(len(raw), dtype=np.uint8)
    if not column.nullable:
        _mark(codes, np.asarray(pc.is_null(raw)), Rule.NOT_NULL)
    return ColumnResult(values, codes)


def blank_cells(raw: pa.Array) -> np.ndarray:
    """Which cells of `raw` are empty: null, or text of whitespace only."""
    empty = np.asarray(pc.is_null(raw))
    if pa.types.is_string(raw.type) or pa.types.is_large_string(raw.type):
        empty |= _bool_mask(pc.utf8_is_space(raw))
    return empty


def blank_as_null(raw: pa.Array) -> pa.Array:
    """`raw` with its whitespace-only text cells as null, so that they read as empty cells do."""
    if not pa.types.is_string(raw.type):
        return raw
    spaces = pc.utf8_is_space(raw)
    if not pc.any(spaces).as_py():
        return raw
    return pc.if_else(spaces, pa.scalar(None, raw.type), raw)


def describe(rule: Rule, column: Column) -> str:
    """A sentence for a person: what is wrong with a cell that broke `rule` in `column`."""
    if rule is Rule.TYPE:
        if isinstance(column, NumericalColumn):
            return "not a number"
        if isinstance(column, BooleanColumn):
            tokens = "/".join([*column.true_values, *column.false_values])
            return f"not a boolean (expected one of {tokens})"
        if isinstance(column, DatetimeColumn):
            shown = f"format {column.format}" if column.format else _ISO_DESCRIPTION
            return f"not a date in {shown}, or no such day or time (e.g. 30 February)"
        return "cannot be read as text"
    if rule is Rule.NOT_INTEGER:
        return "not a whole number, but the column holds integers"
    if rule is Rule.NOT_FINITE:
        return "not a finite number (NaN or infinity)"
    if rule is Rule.MINIMUM:
        return f"below the minimum {_shown(column.min)}"  # type: ignore[union-attr]
    if rule is Rule.MAXIMUM:
        return f"above the maximum {_shown(column.max)}"  # type: ignore[union-attr]
    if rule is Rule.DOMAIN:
        domain = column.domain  # type: ignore[union-attr]
        shown = ", ".join(domain[:12]) + (", ..." if len(domain) > 12 else "")
        return f"not one of the declared categories ({shown})"
    if rule is Rule.NOT_NULL:
        return "empty, but the column does not allow nulls"
    if rule is Rule.OUT_OF_RANGE:
        return (
            "a whole number beyond the 64-bit integer range; declare the column as identifier "
            "or text if it holds codes"
        )
    return "valid"


def _shown(bound: object) -> str:
    """A bound as the schema author wrote it: 120, not 120.0."""
    if isinstance(bound, float) and bound.is_integer():
        return str(int(bound))
    return str(bound)


def _mark(codes: np.ndarray, mask: np.ndarray, rule: Rule) -> None:
    """Set `rule` on rows in `mask` that have no earlier rule."""
    codes[mask & (codes == 0)] = rule


def _bool_mask(arr: pa.Array) -> np.ndarray:
    return np.asarray(arr.fill_null(False), dtype=bool)


def _failed_parse(raw: pa.Array, parsed: pa.Array) -> np.ndarray:
    return np.asarray(pc.is_valid(raw)) & np.asarray(pc.is_null(parsed))


def _numbers(raw: pa.Array, column: NumericalColumn) -> tuple[pa.Array, np.ndarray]:
    integer = column.dtype == "int"
    codes = np.zeros(len(raw), dtype=np.uint8)
    if pa.types.is_string(raw.type):
        values, beyond = _parse_numbers(raw, integer, codes)
    elif pa.types.is_integer(raw.type) or pa.types.is_floating(raw.type):
        values, beyond = _typed_numbers(raw, integer, codes)
    elif pa.types.is_boolean(raw.type) or pa.types.is_decimal(raw.type):
        values, beyond = _typed_numbers(raw.cast(pa.float64()), integer, codes)
    else:
        raise UnsupportedStorage(f"stored as {raw.type}, but the schema declares a number")
    _check_bounds(codes, values, beyond, column)
    _mark(codes, ~np.isnan(beyond), Rule.OUT_OF_RANGE)
    return _null_where(values, codes), codes


def _check_bounds(
    codes: np.ndarray, values: pa.Array, beyond: np.ndarray, column: NumericalColumn
) -> None:
    """Mark cells outside [min, max]; integers are compared exactly, not through floats.

    `beyond` holds the whole numbers too wide for int64 (NaN elsewhere), so that a huge value
    still reports the bound it breaks.
    """
    valid = np.asarray(pc.is_valid(values))
    if pa.types.is_integer(values.type):
        exact = np.asarray(values.fill_null(0), dtype=np.int64)
        low = None if column.min is None else math.ceil(column.min)
        high = None if column.max is None else math.floor(column.max)
    else:
        exact = np.asarray(values.fill_null(np.nan), dtype=np.float64)
        low, high = column.min, column.max
    if low is not None:
        _mark(codes, (valid & (exact < low)) | (beyond < low), Rule.MINIMUM)
    if high is not None:
        _mark(codes, (valid & (exact > high)) | (beyond > high), Rule.MAXIMUM)


def _parse_numbers(raw: pa.Array, integer: bool, codes: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Typed values of number text, and the whole numbers too wide for int64 (NaN elsewhere)."""
    target = pa.int64() if integer else pa.float64()
    none_beyond = np.full(len(raw), np.nan)
    try:
        values = pc.cast(raw, target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    else:
        if not integer:
            _mark(
                codes,
                ~_bool_mask(pc.is_finite(values)) & np.asarray(pc.is_valid(values)),
                Rule.NOT_FINITE,
            )
        return values, none_beyond
    text = pc.utf8_trim_whitespace(raw)
    floats = _cast_matching(text, _FLOAT_RE, pa.float64())
    _mark(codes, _failed_parse(raw, floats), Rule.TYPE)
    finite = _bool_mask(pc.is_finite(floats))
    _mark(codes, np.asarray(pc.is_valid(floats)) & ~finite, Rule.NOT_FINITE)
    if not integer:
        return floats, none_beyond
    exact = _cast_matching(text, _INT_RE, pa.int64(), tolerate_overflow=True)
    float_np = np.asarray(floats.fill_null(0.0), dtype=np.float64)
    integral = finite & (np.floor(float_np) == float_np)
    whole = integral & (np.abs(float_np) < _INT64_LIMIT)
    _mark(codes, finite & ~integral, Rule.NOT_INTEGER)
    too_wide = integral & ~whole & np.asarray(pc.is_null(exact))
    from_float = pa.array(np.where(whole, float_np, 0).astype(np.int64), mask=~whole)
    return pc.coalesce(exact, from_float), np.where(too_wide, float_np, np.nan)


def _cast_matching(
    text: pa.Array, pattern: str, target: pa.DataType, *, tolerate_overflow: bool = False
) -> pa.Array:
    """Cast the cells of `text` that match `pattern`; the others become null."""
    ok = pc.match_substring_regex(text, pattern)
    candidates = pc.if_else(ok, text, pa.scalar(None, pa.string()))
    try:
        return pc.cast(candidates, target)
    except pa.ArrowInvalid:
        if not tolerate_overflow:
            raise
    parsed = []
    for value in candidates.to_pylist():
        if value is None:
            parsed.append(None)
            continue
        number = int(value)
        parsed.append(number if -(2**63) <= number < 2**63 else None)
    return pa.array(parsed, type=target)


def _typed_numbers(raw: pa.Array, integer: bool, codes: np.ndarray) -> tuple[pa.Array, np.ndarray]:
    """Stored numbers as the column's type, and the whole numbers too wide for int64."""
    none_beyond = np.full(len(raw), np.nan)
    if pa.types.is_integer(raw.type):
        if not integer:
            return raw.cast(pa.float64(), safe=False), none_beyond
        if raw.type != pa.uint64():
            return raw.cast(pa.int64()), none_beyond
        wide = _bool_mask(pc.greater(raw, pa.scalar(2**63 - 1, pa.uint64())))
        beyond = np.where(wide, np.asarray(raw.cast(pa.float64(), safe=False).fill_null(0)), np.nan)
        return pc.if_else(pa.array(wide), pa.scalar(None, raw.type), raw).cast(pa.int64()), beyond
    floats = raw.cast(pa.float64())
    valid = np.asarray(pc.is_valid(floats))
    float_np = np.asarray(floats.fill_null(0.0), dtype=np.float64)
    finite = np.isfinite(float_np)
    _mark(codes, valid & ~finite, Rule.NOT_FINITE)
    if not integer:
        return floats, none_beyond
    integral = valid & finite & (np.floor(float_np) == float_np)
    whole = integral & (np.abs(float_np) < _INT64_LIMIT)
    _mark(codes, valid & finite & ~integral, Rule.NOT_INTEGER)
    ints = pa.array(np.where(whole, float_np, 0).astype(np.int64), mask=~whole)
    return ints, np.where(integral & ~whole, float_np, np.nan)


def _categories(raw: pa.Array, column: CategoricalColumn) -> tuple[pa.Array, np.ndarray]:
    text = as_text(raw)
    domain = pa.array(column.domain, type=pa.string())
    indices = pc.index_in(text, value_set=domain)
    if _failed_parse(text, indices).any():
        # A padded cell (" a ") is its trimmed value, as for numbers, booleans and dates.
        trimmed = pc.index_in(pc.utf8_trim_whitespace(text), value_set=domain)
        indices = pc.coalesce(indices, trimmed)
    indices = indices.cast(pa.int32())
    codes = np.zeros(len(raw), dtype=np.uint8)
    _mark(codes, _failed_parse(text, indices), Rule.DOMAIN)
    return pa.DictionaryArray.from_arrays(indices, domain), codes


def _booleans(raw: pa.Array, column: BooleanColumn) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(len(raw), dtype=np.uint8)
    if pa.types.is_boolean(raw.type):
        return raw, codes
    text = as_text(raw)
    folded = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    true_set = pa.array([v.lower() for v in column.true_values], type=pa.string())
    false_set = pa.array([v.lower() for v in column.false_values], type=pa.string())
    is_true = pc.is_in(folded, value_set=true_set)
    is_false = pc.is_in(folded, value_set=false_set)
    known = pc.or_(is_true, is_false)
    values = pc.if_else(known, is_true, pa.scalar(None, pa.bool_()))
    _mark(codes, _failed_parse(raw, values), Rule.TYPE)
    return values, codes


def _datetimes(raw: pa.Array, column: DatetimeColumn) -> tuple[pa.Array, np.ndarray]:
    codes = np.zeros(len(raw), dtype=np.uint8)
    if pa.types.is_string(raw.type):
        values = _parse_datetimes(raw, column.format)
        _mark(codes, _failed_parse(raw, values), Rule.TYPE)
    elif pa.types.is_timestamp(raw.type) or pa.types.is_date(raw.type):
        if pa.types.is_timestamp(raw.type) and raw.type.tz is not None:
            raw = raw.cast(pa.timestamp(raw.type.unit, tz="UTC")).cast(pa.timestamp(raw.type.unit))
        # Nanoseconds are truncated to the microseconds every datetime column holds.
        values = raw.cast(TIMESTAMP, safe=not _finer_than_micros(raw.type))
    else:
        raise UnsupportedStorage(f"stored as {raw.type}, but the schema declares a datetime")
    micros = np.asarray(values.cast(pa.int64()).fill_null(0), dtype=np.int64)
    valid = np.asarray(pc.is_valid(values))
    if column.min is not None:
        _mark(codes, valid & (micros < _micros(column.min)), Rule.MINIMUM)
    if column.max is not None:
        _mark(codes, valid & (micros > _micros(column.max)), Rule.MAXIMUM)
    return _null_where(values, codes), codes


def _finer_than_micros(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) and kind.unit == "ns"


def _parse_datetimes(raw: pa.Array, fmt: str | None) -> pa.Array:
    """Text in strptime format `fmt` (ISO 8601 when None) as naive UTC timestamps; null where a
    cell is not one, including impossible days and times."""
    if fmt is None:
        return parse_iso(raw)
    parsed = _strict_strptime(raw, fmt)
    failed = _failed_parse(raw, parsed)
    if not failed.any():
        return parsed
    # Only cells that failed are read again without their surrounding whitespace.
    padded = raw.filter(pa.array(failed))
    trimmed = _strict_strptime(pc.utf8_trim_whitespace(padded), fmt)
    return pc.replace_with_mask(parsed, pa.array(failed), trimmed)


def _strict_strptime(text: pa.Array, fmt: str) -> pa.Array:
    """Cells of `text` in strptime format `fmt` as naive UTC timestamps (an offset read by `%z`
    is applied); null where a cell does not match or names no real moment.

    The C library's strptime accepts any day 1-31 and seconds up to 61, and the conversion rolls
    30/02 over into March and 23:59:60 into the next day. A rolled value has day 1-3 (second 0-1),
    so only those cells are parsed again with the day (second) read as a month (minute): a real
    day 1-3 (second 0-1) passes that, while 29-31 (60-61) cannot.
    """
    parsed = pc.strptime(text, format=fmt, unit="us", error_is_null=True)
    if parsed.type.tz is not None:
        parsed = parsed.cast(TIMESTAMP)
    written = _DIRECTIVE.sub(lambda m: _COMPOSITES.get(m.group(1), m.group(0)), fmt)
    directives = {m.group(1) for m in _DIRECTIVE.finditer(written)}
    impossible = np.zeros(len(text), dtype=bool)
    if directives & {"d", "e"}:
        # An offset moves the UTC day away from the written one, so every cell is checked then.
        suspects = pc.is_valid(parsed) if "z" in directives else pc.less_equal(pc.day(parsed), 3)
        impossible |= _unparsed(text, suspects, _replaced(written, "de", "%m"))
    if "S" in directives:
        impossible |= _unparsed(
            text, pc.less_equal(pc.second(parsed), 1), _replaced(written, "S", "%M")
        )
    if not impossible.any():
        return parsed
    return pc.if_else(pa.array(impossible), pa.scalar(None, TIMESTAMP), parsed)


def _replaced(fmt: str, letters: str, directive: str) -> str:
    """`fmt` with each directive named by one of `letters` replaced by `directive`."""
    return _DIRECTIVE.sub(lambda m: directive if m.group(1) in letters else m.group(0), fmt)


def _unparsed(text: pa.Array, suspects: pa.Array, fmt: str) -> np.ndarray:
    """Which cells of `text` flagged in `suspects` do not parse in format `fmt`."""
    suspect = _bool_mask(suspects)
    if suspect.any():
        checked = pc.strptime(text.filter(suspect), format=fmt, unit="us", error_is_null=True)
        suspect[suspect] = np.asarray(pc.is_null(checked))
    return suspect


def parse_iso(raw: pa.Array) -> pa.Array:
    """ISO 8601 dates and date-times (text) as naive UTC timestamps, null where a cell is not
    one: one with `Z` or an offset is converted to UTC, as the project keeps every datetime (a
    zoned Parquet column too). `fedsynth prep run` reads ISO dates with it as well."""
    # Arrow's cast is strict ISO 8601 and fast; it refuses the whole array for one bad cell.
    # The zoned cast runs only when the first value is zoned: it is slow to fail.
    for target in (TIMESTAMP, _UTC_TIMESTAMP) if _zoned(raw) else (TIMESTAMP,):
        try:
            return pc.cast(raw, target).cast(TIMESTAMP)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    text = pc.utf8_trim_whitespace(raw)
    parsed = pa.nulls(len(text), TIMESTAMP)
    left = np.asarray(pc.is_valid(text))
    for fmt in _ISO_FORMATS:
        if not left.any():
            return parsed
        attempt = _strict_strptime(text.filter(left), fmt)
        parsed = pc.replace_with_mask(parsed, pa.array(left), attempt)
        left[left] = np.asarray(pc.is_null(attempt))
    return _with_fractions(text, parsed, left)


def _zoned(raw: pa.Array) -> bool:
    """Whether the first non-null cell of `raw` is a time that ends in `Z` or a UTC offset."""
    first = pc.index(pc.is_valid(raw), True).as_py()
    return first >= 0 and _ZONE.search(raw[first].as_py().strip()) is not None


def _with_fractions(text: pa.Array, parsed: pa.Array, left: np.ndarray) -> pa.Array:
    """`parsed` plus the cells still `left` that hold a fraction of a second, which strptime
    cannot read: one by one, as they are in a column the vectorized cast refused (few, as a
    rule)."""
    if not left.any():
        return parsed
    candidates = text.filter(left)
    fraction = _bool_mask(pc.match_substring_regex(candidates, _ISO_FRACTION_RE))
    if not fraction.any():
        return parsed
    found = [_from_iso(value) for value in candidates.filter(fraction).to_pylist()]
    left[left] = fraction
    return pc.replace_with_mask(parsed, pa.array(left), pa.array(found, type=TIMESTAMP))


def _from_iso(value: str) -> datetime | None:
    """One ISO 8601 date-time as naive UTC; None when it names no real moment."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _micros(moment: datetime) -> int:
    return int(np.datetime64(moment.replace(tzinfo=None), "us").astype(np.int64))


def _null_where(values: pa.Array, codes: np.ndarray) -> pa.Array:
    bad = codes != 0
    if not bad.any():
        return values
    return pc.if_else(pa.array(bad), pa.scalar(None, values.type), values)
