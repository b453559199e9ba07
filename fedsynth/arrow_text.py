"""Typed Arrow values as text, written one way everywhere a typed Parquet column meets text:
schema inference, checks against categorical and boolean columns, prep, and quarantine files.

Arrow writes a time or a timestamp with every digit of its unit (`10:30:00.000000000`), which no
date format or domain entry matches. Here a fraction of a second keeps its digits without the
trailing zeros, and a timestamp at midnight is written as its date, as the supplier agent writes
dates. An aware timestamp is written in its own time zone.
"""

from __future__ import annotations

from typing import TypeVar

import pyarrow as pa
import pyarrow.compute as pc

Values = TypeVar("Values", pa.Array, pa.ChunkedArray)


def as_text(values: Values) -> Values:
    """`values` as strings; nulls stay null."""
    kind = values.type
    if pa.types.is_dictionary(kind):
        return as_text(values.dictionary_decode())
    if pa.types.is_string(kind):
        return values
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            values = pc.local_timestamp(values)
        text = _without_zero_fraction(values.cast(pa.string()))
        return pc.replace_substring_regex(text, r" 00:00:00$", "")
    if pa.types.is_time(kind):
        return _without_zero_fraction(values.cast(pa.string()))
    return values.cast(pa.string())


def _without_zero_fraction(text: Values) -> Values:
    text = pc.replace_substring_regex(text, r"(\.\d*?)0+$", r"\1")
    return pc.replace_substring_regex(text, r"\.$", "")
