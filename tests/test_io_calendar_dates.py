"""Dates are read as the calendar has them: an impossible day or time (30 February, 23:59:60)
is quarantined with the type reason, never rolled over into another date, by `fedsynth validate`
and every reader that shares its parser (schema inference, prep); ISO date-times with `Z` or an
offset are read as naive UTC, as the project keeps every datetime."""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedsynth.cli import app
from fedsynth.io import validate_file
from fedsynth.prep.standardize import parse_dates
from fedsynth.schema import DatetimeColumn, TableSchema
from fedsynth.schema_inference import infer_schema
from fedsynth.validation import Rule, describe, validate_column

FORMATS = [None, "%Y-%m-%d", "%d/%m/%Y", "%m/%d/%Y", "%d.%m.%Y", "%Y%m%d", "%d-%m-%Y"]

day_fields = st.tuples(
    st.integers(1900, 2100), st.integers(1, 12), st.integers(1, 31), st.booleans()
)


def written(year: int, month: int, day: int, padded: bool, fmt: str | None) -> str:
    """The date as a person would write it in `fmt`, zero-padded or not where `fmt` allows."""
    if fmt is None or fmt == "%Y%m%d":
        padded = True
    d, m = (f"{day:02d}", f"{month:02d}") if padded else (str(day), str(month))
    return (fmt or "%Y-%m-%d").replace("%Y", str(year)).replace("%d", d).replace("%m", m)


def real(year: int, month: int, day: int) -> datetime | None:
    """The date, or None when the month has no such day."""
    return datetime(year, month, day) if day <= calendar.monthrange(year, month)[1] else None


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FORMATS), st.lists(day_fields, min_size=1, max_size=40))
def test_a_cell_is_accepted_exactly_when_its_day_exists_and_keeps_its_date(
    fmt: str | None, cells: list[tuple[int, int, int, bool]]
) -> None:
    text = [written(y, m, d, p, fmt) for y, m, d, p in cells]
    expected = [real(y, m, d) for y, m, d, _ in cells]
    result = validate_column(pa.array(text), DatetimeColumn(name="d", format=fmt))
    assert result.values.to_pylist() == expected
    assert result.codes.tolist() == [0 if e else Rule.TYPE for e in expected]
    prepared = parse_dates(pd.Series(text, dtype=object), [fmt] if fmt else [])
    assert [None if pd.isna(v) else v.to_pydatetime() for v in prepared.values] == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(1, 28), st.integers(0, 23), st.integers(0, 59), st.integers(0, 61)),
        min_size=1,
        max_size=30,
    )
)
def test_a_second_past_59_is_not_a_time(cells: list[tuple[int, int, int, int]]) -> None:
    text = [f"2021-03-{d:02d} {h:02d}:{m:02d}:{s:02d}" for d, h, m, s in cells]
    expected = [datetime(2021, 3, d, h, m, s) if s < 60 else None for d, h, m, s in cells]
    for fmt in ("%Y-%m-%d %H:%M:%S", "%F %T", None):
        result = validate_column(pa.array(text), DatetimeColumn(name="d", format=fmt))
        assert result.values.to_pylist() == expected, fmt


def test_the_reported_impossible_dates_are_quarantined_not_moved() -> None:
    cases = {
        "%d/%m/%Y": ["30/02/2020", "29/02/2020"],
        None: ["1970-02-30", "2021-02-29", "2021-04-31", "2020-02-29"],
    }
    for fmt, text in cases.items():
        result = validate_column(pa.array(text), DatetimeColumn(name="d", format=fmt))
        accepted = [v for v in result.values.to_pylist() if v is not None]
        assert accepted == [datetime(2020, 2, 29)], fmt


def test_an_offset_in_the_format_is_applied_and_impossible_days_still_refused() -> None:
    text = ["2021-03-01T01:00:00+03:00", "2021-02-30T01:00:00-03:00", "2021-01-01T00:00:00Z"]
    column = DatetimeColumn(name="d", format="%Y-%m-%dT%H:%M:%S%z")
    assert validate_column(pa.array(text), column).values.to_pylist() == [
        datetime(2021, 2, 28, 22),
        None,
        datetime(2021, 1, 1),
    ]


def test_iso_with_z_or_an_offset_reads_as_naive_utc_in_any_mix() -> None:
    column = DatetimeColumn(name="d")
    zoned = ["2021-01-01T00:00:00Z", "2021-01-01T02:00:00+02:00", "2021-01-01T00:00:00.5Z"]
    assert validate_column(pa.array(zoned), column).values.to_pylist() == [
        datetime(2021, 1, 1),
        datetime(2021, 1, 1),
        datetime(2021, 1, 1, 0, 0, 0, 500000),
    ]
    mixed = [*zoned, "2021-01-01 10:00", "2021-01-01 10:00:00.25", "2021-02-30T00:00:00Z", "x"]
    result = validate_column(pa.array(mixed), column)
    assert result.values.to_pylist() == [
        datetime(2021, 1, 1),
        datetime(2021, 1, 1),
        datetime(2021, 1, 1, 0, 0, 0, 500000),
        datetime(2021, 1, 1, 10),
        datetime(2021, 1, 1, 10, 0, 0, 250000),
        None,
        None,
    ]
    prepared = parse_dates(pd.Series(mixed, dtype=object), [])
    assert prepared.values.tolist()[:5] == result.values.to_pylist()[:5]
    assert prepared.failed.tolist() == [False] * 5 + [True, True]


def test_a_naive_time_after_a_zoned_one_keeps_its_own_clock_in_prep() -> None:
    """pandas' ISO parser lends a naive value the offset of the one before; prep does not."""
    text = pd.Series(["2021-01-01T02:00:00+02:00", "2021-01-01 10:00:00"], dtype=object)
    values = parse_dates(text, []).values.tolist()
    assert values == [pd.Timestamp("2021-01-01 00:00"), pd.Timestamp("2021-01-01 10:00")]


def test_the_type_reason_says_what_iso_accepts_and_that_the_day_must_exist() -> None:
    iso = describe(Rule.TYPE, DatetimeColumn(name="d"))
    assert "ISO 8601" in iso and "Z" in iso and "+02:00" in iso and "30 February" in iso
    dmy = describe(Rule.TYPE, DatetimeColumn(name="d", format="%d/%m/%Y"))
    assert dmy.startswith("not a date in format %d/%m/%Y") and "30 February" in dmy


def test_validate_quarantines_an_impossible_date_and_exits_3(tmp_path: Path) -> None:
    data = tmp_path / "visits.csv"
    data.write_text("day\n29/02/2020\n30/02/2020\n01/03/2020\n")
    schema = tmp_path / "schema.yaml"
    TableSchema(name="v", columns=[DatetimeColumn(name="day", format="%d/%m/%Y")]).save(schema)
    report = validate_file(data, TableSchema.load(schema))
    assert (report.rows_accepted, report.rows_quarantined) == (2, 1)
    (issue,) = report.examples
    assert (issue.row, issue.value, issue.rule) == (2, "30/02/2020", "type")
    result = CliRunner().invoke(app, ["validate", str(data), "--schema", str(schema)])
    assert result.exit_code == 3, result.output


def test_inference_proposes_no_date_format_that_takes_an_impossible_date(tmp_path: Path) -> None:
    start = datetime(2020, 1, 1)
    days = [(start + timedelta(days=i)).strftime("%d/%m/%Y") for i in range(40)]
    isos = [(start + timedelta(days=i)).strftime("%Y-%m-%d") for i in range(40)]
    path = tmp_path / "t.csv"
    pd.DataFrame({"seen": [*days, "30/02/2020"], "iso": [*isos, "1970-02-30"]}).to_csv(
        path, index=False
    )
    schema, _ = infer_schema(path)
    assert schema.column("seen").format == "%d/%m/%Y"
    assert schema.column("iso").format == "%Y-%m-%d"
    report = validate_file(path, schema)
    assert (report.rows_accepted, report.rows_quarantined) == (40, 1)
    good = tmp_path / "good.csv"
    pd.DataFrame({"seen": days, "iso": isos}).to_csv(good, index=False)
    schema, _ = infer_schema(good)
    assert schema.column("seen").format == "%d/%m/%Y"
    assert schema.column("iso").format == "%Y-%m-%d"
