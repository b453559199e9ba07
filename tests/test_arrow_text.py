"""Typed Arrow values are written as text one way everywhere: without Arrow's zero digits, and
back to the same value when read."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from fedsynth.arrow_text import as_text
from fedsynth.io import read_table
from fedsynth.prep.source import read_raw
from fedsynth.schema_inference import infer_schema

MOMENTS = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 1, 1))


@given(st.lists(MOMENTS, min_size=1, max_size=20), st.sampled_from(["s", "ms", "us", "ns"]))
def test_timestamps_read_back_to_the_same_moment_from_their_text(
    moments: list[dt.datetime], unit: str
) -> None:
    values = pa.array(moments, pa.timestamp("us")).cast(pa.timestamp(unit), safe=False)
    text = as_text(values)
    assert text.cast(pa.timestamp(unit)).equals(values)
    assert not any(t.endswith((".0", ":00.000")) for t in text.to_pylist())


@given(st.lists(st.times(), min_size=1, max_size=20))
def test_times_read_back_to_the_same_time_from_their_text(times: list[dt.time]) -> None:
    values = pa.array(times, pa.time64("us"))
    text = as_text(values).to_pylist()
    assert [dt.time.fromisoformat(t) for t in text] == times
    assert all(t.count(".") == 0 or not t.endswith("0") for t in text)


def test_a_parquet_time_column_is_inferred_validated_and_read_without_zero_digits(
    tmp_path: Path,
) -> None:
    path = tmp_path / "visits.parquet"
    slots = [dt.time(10, 30), dt.time(8, 0, 5, 250000)] * 10
    pq.write_table(pa.table({"slot": pa.array(slots, pa.time64("ns"))}), path)
    schema, _ = infer_schema(path)
    assert schema.columns[0].domain == ["08:00:05.25", "10:30:00"]
    frame, report = read_table(path, schema)
    assert report.rows_quarantined == 0
    assert sorted(set(frame["slot"].astype(str))) == ["08:00:05.25", "10:30:00"]
    assert read_raw(path)["slot"].tolist()[:2] == ["10:30:00", "08:00:05.25"]
