"""Propose a `TableSchema` from a data file, for a person to review before it is shared.

Kinds come from what every value of a column parses as (with the same parsers validation uses,
so a proposed schema accepts the file it came from); a date column may hold a few values that are
no dates, which a note counts and validation quarantines. Bounds are widened to round numbers and
whole years: the schema is public, and exact extremes would reveal single records. Columns that
look like direct identifiers (unique strings, names, emails, phone numbers, record numbers) or
strong quasi-identifiers (dates of birth, postcodes) are flagged with a finding.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fedsynth.arrow_text import as_text
from fedsynth.io import DataFileError, read_raw
from fedsynth.schema import (
    DEFAULT_FALSE_VALUES,
    DEFAULT_TRUE_VALUES,
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    IdentifierColumn,
    NumericalColumn,
    PrivacyRole,
    TableSchema,
    TextColumn,
)
from fedsynth.validation import Rule, validate_column

DAY_FORMAT = "%Y-%m-%d"
"""ISO dates without a time of day, declared so that models which cannot learn it from the rows
(DP ones) give whole days; ISO (None) remains for date-times."""
DATE_FORMATS = (
    DAY_FORMAT,
    None,
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%d-%m-%Y",
    "%Y%m%d",
)
"""Tried in order: the first that reads every value wins, else the one that reads the most."""
MOSTLY_DATES = 0.95
"""Share of the values a date format must read for a column to be proposed as dates."""
MAX_CATEGORIES = 50
RARE_CATEGORY = 5
"""Domain values seen fewer times than this are flagged: the public domain would reveal them."""
MAX_DECIMALS = 6
"""Numbers finer than this get no `decimals` (no rounding), not a rounding that loses them."""
MIN_ROWS_FOR_UNIQUE = 20
EXACT_FLOAT_LIMIT = 2**53
_MAX_COARSER = 20
"""Powers of ten `_round_outward` may coarsen its step by before it gives up."""

_INTEGER_RE = r"^[+-]?\d+$"
_LEADING_ZERO_RE = r"^[+-]?0\d"
_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
_PHONE_RE = r"^\+?[\d\s().-]{7,20}$"
_DATE_SHAPE_RE = r"^(\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{2,4})$"
"""Digits shaped like a date (2021-02-30, 30.02.2021), which `_PHONE_RE` also matches."""
_PERSON_NAME_RE = r"^[A-Z][a-z'\-]+( [A-Z][a-z'\-]+){0,3}$"
_NAME_HINT = re.compile(
    r"(^|_)(first|last|given|family|middle|full|sur|maiden)?_?name$|^surname$|^forename$", re.I
)
_ID_HINT = re.compile(
    r"(^|_)((id|uuid|guid|mrn|ssn|nhs|nin|passport|account|record)(_?(no|nr|num|number))?"
    r"|no|nr|num|number)$",
    re.I,
)
_CODE_HINT = re.compile(r"(^|_)(zip|zipcode|postcode|postal|post_code|code)($|_)", re.I)
_CONTACT_HINT = re.compile(r"e-?mail|phone|mobile|tel(ephone)?$|fax|address|street", re.I)
_BIRTH_HINT = re.compile(r"(^|_)(dob|birth|born)|birth_?date|date_?of_?birth", re.I)
_QUASI_HINT = re.compile(
    r"(^|_)(zip|zipcode|postcode|postal|post_code|age|sex|gender|ethnicity|race)($|_)", re.I
)


@dataclass(frozen=True)
class Finding:
    """Something a reviewer should look at in a proposed column."""

    column: str
    message: str


def infer_schema(
    path: str | Path,
    *,
    name: str | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    sample_rows: int | None = 1_000_000,
) -> tuple[TableSchema, list[Finding]]:
    """Propose a schema for the file at `path` from its first `sample_rows` rows."""
    path = Path(path)
    if sample_rows is not None and sample_rows < 1:
        raise DataFileError(
            path,
            f"cannot infer a schema from {sample_rows} sample rows",
            "give --sample-rows a positive number of rows (the default reads 1000000)",
        )
    table = read_raw(path, delimiter=delimiter, encoding=encoding, max_rows=sample_rows)
    return infer_from_table(table, name=name or path.stem)


def infer_from_table(table: pa.Table, *, name: str) -> tuple[TableSchema, list[Finding]]:
    """Propose a schema for an Arrow table of text (CSV) or typed (Parquet) columns."""
    columns: list[Column] = []
    findings: list[Finding] = []
    for field_name in table.column_names:
        raw = table.column(field_name).combine_chunks()
        column, notes = _infer_column(field_name, raw)
        findings.extend(Finding(field_name, n) for n in notes)
        if notes:
            column = column.model_copy(update={"description": "; ".join(notes)})
        columns.append(column)
    return TableSchema(name=name, columns=columns), findings


def _infer_column(name: str, raw: pa.Array) -> tuple[Column, list[str]]:
    if pa.types.is_dictionary(raw.type):
        raw = raw.dictionary_decode()
    notes: list[str] = []
    if pa.types.is_floating(raw.type):
        raw = _nan_as_null(raw, notes)
    nullable = raw.null_count > 0
    values = raw.drop_null()
    if len(values) == 0:
        notes.append("every value is empty: kind guessed as text, review it")
        return TextColumn(name=name, nullable=True), notes
    common = {"name": name, "nullable": nullable}

    if _is_boolean(values):
        return BooleanColumn(**common), notes
    numeric = _as_number(name, values, common, notes)
    if numeric is not None:
        return numeric, notes
    moment = _as_datetime(name, values, common, notes)
    if moment is not None:
        return moment, notes

    text = as_text(values)
    distinct = pc.count_distinct(text).as_py()
    identifier_reason = _identifier_reason(name, text, distinct)
    if identifier_reason:
        notes.append(f"likely direct identifier ({identifier_reason}): never modelled")
        return IdentifierColumn(name=name, nullable=nullable), notes
    if distinct <= MAX_CATEGORIES:
        domain = sorted(pc.unique(text).to_pylist())
        _note_rare_values(text, notes)
        role = _quasi_role(name, notes)
        return CategoricalColumn(domain=domain, role=role, **common), notes
    notes.append(f"{distinct} distinct values: treated as free text, not modelled")
    return TextColumn(**common), notes


def _note_rare_values(text: pa.Array, notes: list[str]) -> None:
    """Count the domain values seen fewer than RARE_CATEGORY times: the schema is public, so
    such a value can point at the few records that hold it."""
    counts = pc.value_counts(text).field("counts")
    rare = pc.sum(pc.less(counts, RARE_CATEGORY)).as_py()
    if rare:
        notes.append(
            f"{rare} of the {len(counts)} domain values occur fewer than {RARE_CATEGORY} times: "
            "the schema is public, so review them (merge each into another value in the prep "
            "spec) before sharing"
        )


def _nan_as_null(raw: pa.Array, notes: list[str]) -> pa.Array:
    """Stored floats with NaN made null: NaN marks a missing value there, and read as a value it
    would turn a number column into raw floats as categories."""
    nan = pc.is_nan(raw)
    count = pc.sum(nan).as_py() or 0
    if not count:
        return raw
    notes.append(
        f"{count} values are NaN: read as empty here, but validation quarantines their rows as "
        "not finite; store them as nulls"
    )
    return pc.if_else(nan, pa.scalar(None, raw.type), raw)


def _is_boolean(values: pa.Array) -> bool:
    if pa.types.is_boolean(values.type):
        return True
    if not pa.types.is_string(values.type):
        return False
    folded = set(pc.unique(pc.utf8_lower(pc.utf8_trim_whitespace(values))).to_pylist())
    words = set(DEFAULT_TRUE_VALUES + DEFAULT_FALSE_VALUES) - {"0", "1"}
    return folded <= words and bool(folded - {"y", "n", "t", "f"})


def _as_number(
    name: str, values: pa.Array, common: dict, notes: list[str]
) -> NumericalColumn | IdentifierColumn | None:
    """A number column for `values`, an identifier column for unique whole numbers named like a
    record key, or None when the values are not (only) numbers."""
    if not _stores_numbers(values.type):
        return None
    if _CODE_HINT.search(name):
        notes.append("digits named like a code: kept as text, not as a number")
        return None
    if _has_wide_integers(values):
        notes.append(
            "whole numbers beyond 2^53 (IDs, card or account numbers?): a number column "
            "cannot hold them exactly, kept as text"
        )
        return None
    parsed = _parse_numbers(name, values, notes)
    if parsed is None:
        return None
    dtype, numbers = parsed
    padded = _leading_zero_example(values)
    if padded is not None:
        notes.append(
            f"digits with leading zeros (e.g. {padded!r}): an identifier-like code, kept as "
            "text so the zeros are not lost"
        )
        return None
    if dtype == "int" and _ID_HINT.search(name) and len(np.unique(numbers)) == len(numbers):
        notes.append(
            "likely direct identifier (unique whole numbers named like a record key): never "
            "modelled"
        )
        return IdentifierColumn(name=name, nullable=common["nullable"])
    low, high = float(numbers.min()), float(numbers.max())
    rounded = _round_outward(low, high)
    if rounded is None:
        notes.append(
            f"bounds are the data's own extremes [{_fmt(low)}, {_fmt(high)}] (too large to "
            "round outward): they come from single records, replace them before sharing"
        )
    else:
        low, high = rounded
        notes.append(f"bounds widened from the data to [{_fmt(low)}, {_fmt(high)}]: confirm them")
    decimals = _decimals(values, numbers) if dtype == "float" else None
    role = _quasi_role(name, notes)
    return NumericalColumn(dtype=dtype, min=low, max=high, decimals=decimals, role=role, **common)


MOSTLY = 0.8
"""Share of number-like values above which a text column is flagged as a likely number column."""
_DECIMAL_COMMA = re.compile(r"^\s*[-+]?\d+,\d+\s*$")


def _parse_numbers(
    name: str, values: pa.Array, notes: list[str]
) -> tuple[Literal["int", "float"], np.ndarray] | None:
    """The dtype and finite values of a column whose every value is a number, or None.

    NaN, infinity and numbers with a decimal comma count as numbers (with a note), so that such
    a column is proposed as numbers rather than as raw floats in a categorical domain.
    """
    dtype: Literal["int", "float"]
    for dtype in ("int", "float"):
        result = validate_column(values, NumericalColumn(name=name, dtype=dtype))
        if not result.codes.any():
            return dtype, np.asarray(result.values.cast(pa.float64(), safe=False))
    text = as_text(values)
    comma = (result.codes == Rule.TYPE) & _bool_mask(
        pc.match_substring_regex(text, _DECIMAL_COMMA.pattern)
    )
    not_finite = result.codes == Rule.NOT_FINITE
    if (~comma & ~not_finite & (result.codes != 0)).any():
        _note_mostly_numbers(values, result.codes != 0, notes)
        return None
    numbers = np.array(result.values.cast(pa.float64()).fill_null(np.nan))
    if comma.any():
        dotted = pc.replace_substring(pc.utf8_trim_whitespace(text.filter(comma)), ",", ".")
        numbers[comma] = np.asarray(dotted.cast(pa.float64()))
    numbers = numbers[np.isfinite(numbers)]
    if not len(numbers):
        return None
    if comma.any():
        example = text.filter(comma)[0].as_py()
        notes.append(
            f"numbers written with a decimal comma (e.g. {example!r}): proposed as numbers; set "
            "decimal_comma: true for the column in the prep spec, as validation reads a '.'"
        )
    if not_finite.any():
        notes.append(
            f"{int(not_finite.sum())} of {len(values)} values are not finite numbers (NaN or "
            "infinity): validation quarantines their rows; null them in the prep spec"
        )
    whole = not comma.any() and bool(np.all(numbers == np.floor(numbers)))
    return ("int" if whole else "float"), numbers


def _bool_mask(mask: pa.Array) -> np.ndarray:
    """An Arrow boolean array as a NumPy mask, null read as False."""
    return np.asarray(mask.fill_null(False), dtype=bool)


def _note_mostly_numbers(values: pa.Array, bad: np.ndarray, notes: list[str]) -> None:
    """Say so when a column kept as text is mostly numbers: a few typos (or a decimal comma)
    should not silently turn a measurement into unmodelled text."""
    texts = as_text(values).to_pylist()
    others = [t for t, b in zip(texts, bad, strict=True) if b]
    commas = sum(1 for t in others if _DECIMAL_COMMA.match(t))
    if commas > len(others) / 2:
        example = next(t for t in others if _DECIMAL_COMMA.match(t))
        notes.append(
            f"numbers written with a decimal comma (e.g. {example!r}): declare the column "
            "numerical and set decimal_comma: true for it in the prep spec"
        )
        return
    numbers = len(texts) - len(others)
    if numbers >= MOSTLY * len(texts):
        examples = ", ".join(repr(t) for t in sorted(set(others))[:3])
        notes.append(
            f"{_percent(numbers, len(texts))} of the values are numbers; the rest are not (e.g. "
            f"{examples}): if those are errors, declare the column numerical so validation "
            "quarantines them"
        )


def _percent(part: int, whole: int) -> str:
    """`part` as a whole percentage of `whole`, rounded down: 1998 of 2000 is 99%, not 100%."""
    return f"{part * 100 // max(whole, 1)}%"


def _stores_numbers(kind: pa.DataType) -> bool:
    """Whether a column stored as `kind` could be a number column (text or numeric storage)."""
    return (
        pa.types.is_string(kind)
        or pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_decimal(kind)
    )


def _leading_zero_example(values: pa.Array) -> str | None:
    """A value written with a leading zero ('0123', not '0' or '0.5'), which a number drops."""
    if not pa.types.is_string(values.type):
        return None
    text = pc.utf8_trim_whitespace(values)
    padded = pc.filter(text, pc.match_substring_regex(text, _LEADING_ZERO_RE))
    return padded[0].as_py() if len(padded) else None


def _has_wide_integers(values: pa.Array) -> bool:
    """Whether whole numbers (integer text or storage) exceed 2^53, where floats lose digits."""
    if pa.types.is_integer(values.type):
        extremes = pc.min_max(values).as_py()
        return max(abs(extremes["min"]), abs(extremes["max"])) > EXACT_FLOAT_LIMIT
    if not pa.types.is_string(values.type):
        return False
    text = pc.utf8_trim_whitespace(values)
    if not pc.all(pc.match_substring_regex(text, _INTEGER_RE)).as_py():
        return False
    long = pc.filter(text, pc.greater(pc.utf8_length(text), 15)).to_pylist()
    return any(abs(int(v)) > EXACT_FLOAT_LIMIT for v in long)


def _as_datetime(
    name: str, values: pa.Array, common: dict, notes: list[str]
) -> DatetimeColumn | None:
    if not (
        pa.types.is_string(values.type)
        or pa.types.is_timestamp(values.type)
        or pa.types.is_date(values.type)
    ):
        return None
    if pa.types.is_string(values.type):
        formats: tuple[str | None, ...] = DATE_FORMATS
    else:
        formats = (DAY_FORMAT,) if pa.types.is_date(values.type) else (None,)
    best: tuple[int, str | None, pa.Array] | None = None
    for fmt in formats:
        result = validate_column(values, DatetimeColumn(name=name, format=fmt))
        unread = int(np.count_nonzero(result.codes))
        if best is None or unread < best[0]:
            best = (unread, fmt, result.values)
        if not unread:
            break
    unread, fmt, stamps = best
    if unread > (1 - MOSTLY_DATES) * len(values):
        return None
    try:
        low = pc.min(stamps).as_py()
        high = pc.max(stamps).as_py()
    except (OverflowError, ValueError):  # digits a format read as a year Python cannot hold
        return None
    low = datetime(low.year, 1, 1)
    high = datetime(high.year, 12, 31, 23, 59, 59)
    notes.append(f"bounds widened from the data to whole years {low.year}-{high.year}: confirm")
    if unread:
        shown = f"the format {fmt}" if fmt else "ISO 8601"
        notes.append(
            f"{unread} of {len(values)} values are not dates in {shown} (or no real day, such "
            "as 30 February): validation quarantines their rows; fix or null them in the prep spec"
        )
    role = PrivacyRole.OTHER
    if _BIRTH_HINT.search(name):
        role = PrivacyRole.QUASI_IDENTIFIER
        notes.append(
            "looks like a date of birth: a strong quasi-identifier; consider deriving an age "
            "or birth year in the prep spec instead of sharing the date"
        )
    elif _QUASI_HINT.search(name):
        role = _quasi_role(name, notes)
    return DatetimeColumn(format=fmt, min=low, max=high, role=role, **common)


def _identifier_reason(name: str, text: pa.Array, distinct: int) -> str | None:
    n = len(text)
    matches = {
        "email addresses": _count(text, _EMAIL_RE),
        "phone numbers": _phone_count(text),
    }
    for label, count in matches.items():
        if count >= 0.9 * n:
            return f"{_percent(count, n)} of values look like {label}"
    if _NAME_HINT.search(name):
        return "named like a person's name"
    if _CONTACT_HINT.search(name):
        return "named like contact details"
    if _ID_HINT.search(name) and distinct >= 0.9 * n:
        return "named like a record key, values (nearly) unique"
    person_like = _count(text, _PERSON_NAME_RE)
    if person_like >= 0.9 * n and distinct > MAX_CATEGORIES:
        return f"{_percent(person_like, n)} of values look like personal names"
    spaced = _count(text, r"\s")
    if n >= MIN_ROWS_FOR_UNIQUE and distinct == n and spaced < 0.5 * n:
        return "every value is unique"
    return None


def _quasi_role(name: str, notes: list[str]) -> PrivacyRole:
    if _QUASI_HINT.search(name):
        notes.append("named like a quasi-identifier (postcode, age, sex...): role set, confirm")
        return PrivacyRole.QUASI_IDENTIFIER
    return PrivacyRole.OTHER


def _phone_count(text: pa.Array) -> int:
    """How many values are shaped like phone numbers, not counting digits shaped like dates."""
    trimmed = pc.utf8_trim_whitespace(text)
    dated = pc.match_substring_regex(trimmed, _DATE_SHAPE_RE)
    phone = pc.and_(pc.match_substring_regex(trimmed, _PHONE_RE), pc.invert(dated))
    return pc.sum(phone).as_py() or 0


def _count(text: pa.Array, pattern: str) -> int:
    """How many values match `pattern`."""
    return pc.sum(pc.match_substring_regex(text, pattern)).as_py() or 0


def _round_outward(low: float, high: float) -> tuple[float, float] | None:
    """Widen [low, high] to multiples of a power of ten a tenth the size of the range (coarser
    where the values are too close for float arithmetic to round them); None when no finite
    round range holds them (values near the largest float)."""
    span = high - low
    if span <= 0:
        span = max(abs(high), 1.0)
    if not math.isfinite(span):
        return None
    exponent = max(math.floor(math.log10(span)), -300)
    for _ in range(_MAX_COARSER):
        if exponent > sys.float_info.max_10_exp:
            return None
        step = 10.0**exponent
        rounded_low = _times_power(math.floor(low / step), exponent)
        rounded_high = _times_power(math.ceil(high / step), exponent)
        if low >= 0 > rounded_low:
            rounded_low = 0.0
        if not (math.isfinite(rounded_low) and math.isfinite(rounded_high)):
            return None
        if rounded_low <= low and rounded_high >= high:
            return rounded_low, rounded_high
        exponent += 1
    return None


def _times_power(multiple: int, exponent: int) -> float:
    """`multiple` * 10 ** `exponent` as the float nearest it: dividing by 10 ** -exponent, as
    0.1 is inexact, gives 2.3 where 23 * 0.1 gives 2.3000000000000003."""
    if exponent >= 0:
        return float(multiple * 10.0**exponent)
    return multiple / 10.0**-exponent


def _decimals(values: pa.Array, numbers: np.ndarray) -> int | None:
    """The fewest decimals that keep every parsed number as it is, so output rounding loses
    nothing; None (no rounding) when a value is written with an exponent or needs more than
    MAX_DECIMALS."""
    if pa.types.is_string(values.type):
        if pc.any(pc.match_substring_regex(values, "[eE]")).as_py():
            return None
    elif pa.types.is_floating(values.type):
        numbers = np.asarray(values)  # in the stored precision: a float32 0.1 has 1 decimal
    distinct = np.unique(numbers)
    with np.errstate(over="ignore"):  # a huge value scaled past the float range is not kept
        for places in range(MAX_DECIMALS + 1):
            if np.array_equal(np.round(distinct, places), distinct):
                return places
    return None


def _fmt(value: float) -> str:
    """A bound as a person writes it: whole numbers without '.0', huge ones in exponent form."""
    if float(value).is_integer() and abs(value) < EXACT_FLOAT_LIMIT:
        return str(int(value))
    return str(value)
