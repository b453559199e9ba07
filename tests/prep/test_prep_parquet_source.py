"""Parquet sources: typed date and time columns reach preparation as the agent writes them."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from fedsynth.prep import PrepSpec, prepare
from fedsynth.prep.source import read_raw
from fedsynth.schema import TableSchema

DAYS = [dt.datetime(2024, 1, 2), dt.datetime(1999, 12, 31), None]


def _parquet(tmp_path: Path, **columns: pa.Array) -> Path:
    path = tmp_path / "source.parquet"
    pq.write_table(pa.table(columns), path)
    return path


def test_parquet_timestamps_read_as_dates_or_iso_without_a_nanosecond_tail(
    tmp_path: Path,
) -> None:
    times = [dt.datetime(2024, 1, 2, 10, 30), dt.datetime(2024, 1, 2, 10, 30, 0, 250000), None]
    path = _parquet(
        tmp_path,
        day=pa.array(DAYS, pa.timestamp("ns")),
        at=pa.array(times, pa.timestamp("us")),
        date=pa.array([dt.date(2024, 1, 2), dt.date(1999, 12, 31), None], pa.date32()),
    )
    raw = read_raw(path)
    assert raw["day"].tolist() == ["2024-01-02", "1999-12-31", None]
    assert raw["at"].tolist() == ["2024-01-02 10:30:00", "2024-01-02 10:30:00.25", None]
    assert raw["date"].tolist() == ["2024-01-02", "1999-12-31", None]


def test_parquet_time_zone_timestamps_keep_their_wall_clock_time(tmp_path: Path) -> None:
    local = pd.Series(pd.to_datetime(["2024-01-02 00:00", "2024-07-01 09:15"])).dt.tz_localize(
        "Europe/Amsterdam"
    )
    path = _parquet(tmp_path, at=pa.Array.from_pandas(local))
    assert read_raw(path)["at"].tolist() == ["2024-01-02", "2024-07-01 09:15:00"]


def test_parquet_timestamp_column_prepares_with_a_date_only_format(tmp_path: Path) -> None:
    schema = TableSchema.from_yaml("name: t\ncolumns:\n  - {name: day, kind: datetime}\n")
    spec = PrepSpec.from_yaml('source: s\ncolumns: {day: {date_formats: ["%Y-%m-%d"]}}\n')
    path = _parquet(tmp_path, day=pa.array(DAYS, pa.timestamp("ns")))
    result = prepare(read_raw(path), spec, schema)
    assert result.quarantine == []
    assert result.prepared["day"].tolist()[:2] == [pd.Timestamp(d) for d in DAYS[:2]]
    assert pd.isna(result.prepared["day"][2])
