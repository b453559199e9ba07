"""Edge cases of reading and inferring: huge integers, stored timestamps, quoted line breaks."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from fedsynth import io as fio
from fedsynth.cli import app
from fedsynth.io import DataFileError, read_table, validate_file
from fedsynth.schema import IdentifierColumn, NumericalColumn, TableSchema, TextColumn
from fedsynth.schema_inference import infer_schema

BOUNDED = TableSchema(name="t", columns=[NumericalColumn(name="n", dtype="int", min=0, max=100)])


def reasons(quarantine: Path) -> dict[int, list[tuple[str, str]]]:
    """Quarantined row number -> (rule, message) of each reason."""
    q = pd.read_csv(quarantine, dtype=str, keep_default_na=False)
    return {
        int(row): [(i["rule"], i["message"]) for i in json.loads(text)]
        for row, text in zip(q["_row"], q["_reasons"], strict=True)
    }


def test_integer_beyond_float_precision_is_quarantined_as_above_the_maximum(
    tmp_path: Path,
) -> None:
    path = tmp_path / "n.csv"
    path.write_text("n\n5\n9007199254740993\n")
    df, report = read_table(path, BOUNDED, quarantine=tmp_path / "q.csv")
    assert df["n"].tolist() == [5] and report.rows_quarantined == 1
    assert reasons(tmp_path / "q.csv") == {2: [("maximum", "above the maximum 100")]}


def test_integer_beyond_64_bits_reports_the_maximum_it_breaks(tmp_path: Path) -> None:
    schema = TableSchema(
        name="t", columns=[NumericalColumn(name="age", dtype="int", min=0, max=120)]
    )
    path = tmp_path / "age.csv"
    path.write_text("age\n5\n1000000000000000000000\n-1000000000000000000000\n")
    report = validate_file(path, schema, quarantine=tmp_path / "q.csv")
    assert report.rows_accepted == 1
    assert reasons(tmp_path / "q.csv") == {
        2: [("maximum", "above the maximum 120")],
        3: [("minimum", "below the minimum 0")],
    }


def test_unbounded_integer_beyond_64_bits_is_out_of_range_not_a_fraction(tmp_path: Path) -> None:
    schema = TableSchema(name="t", columns=[NumericalColumn(name="n", dtype="int")])
    path = tmp_path / "n.csv"
    path.write_text("n\n9223372036854775807\n9223372036854775808\n")
    df, _ = read_table(path, schema, quarantine=tmp_path / "q.csv")
    assert df["n"].tolist() == [2**63 - 1]
    [(rule, message)] = reasons(tmp_path / "q.csv")[2]
    assert rule == "out_of_range" and "64-bit integer range" in message


def test_integers_near_a_bound_above_2_53_are_compared_exactly(tmp_path: Path) -> None:
    schema = TableSchema(
        name="t", columns=[NumericalColumn(name="n", dtype="int", max=float(2**53))]
    )
    path = tmp_path / "n.csv"
    path.write_text(f"n\n{2**53}\n{2**53 + 1}\n")
    df, report = read_table(path, schema)
    assert df["n"].tolist() == [2**53] and report.rows_quarantined == 1


def test_wide_parquet_integers_are_checked_exactly_not_crashed_on(tmp_path: Path) -> None:
    schema = TableSchema(
        name="t",
        columns=[
            NumericalColumn(name="i", dtype="int", min=0, max=100),
            NumericalColumn(name="u", dtype="int"),
            NumericalColumn(name="f"),
        ],
    )
    path = tmp_path / "n.parquet"
    pq.write_table(
        pa.table(
            {
                "i": pa.array([5, 2**53 + 1], pa.int64()),
                "u": pa.array([7, 2**64 - 1], pa.uint64()),
                "f": pa.array([1, 2**53 + 1], pa.int64()),
            }
        ),
        path,
    )
    df, _ = read_table(path, schema, quarantine=tmp_path / "q.csv")
    assert df["i"].tolist() == [5] and df["u"].tolist() == [7] and df["f"].tolist() == [1.0]
    assert [r for r, _ in reasons(tmp_path / "q.csv")[2]] == ["maximum", "out_of_range"]


@pytest.mark.parametrize("digits", [19, 22])
def test_long_digit_strings_are_not_proposed_as_a_number_column(
    tmp_path: Path, digits: int
) -> None:
    path = tmp_path / "cards.csv"
    values = [str(10 ** (digits - 1) + 7919 * i) for i in range(30)]
    path.write_text("card\n" + "\n".join(values) + "\n")
    schema, findings = infer_schema(path)
    assert isinstance(schema.columns[0], IdentifierColumn | TextColumn)
    assert any("beyond 2^53" in f.message for f in findings)
    df, report = read_table(path, schema)
    assert report.clean and df["card"].tolist() == values


def test_wide_parquet_integers_are_not_proposed_as_a_number_column(tmp_path: Path) -> None:
    path = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"account": pa.array([2**60 + i for i in range(30)])}), path)
    schema, _ = infer_schema(path)
    assert schema.columns[0].kind in {"identifier", "text"}


def test_stored_timestamps_and_dates_are_inferred_as_datetime(tmp_path: Path) -> None:
    path = tmp_path / "ts.parquet"
    moments = [datetime(2020, 1, 1, 0, 0, 0, 1), datetime(2021, 5, 3)]
    pq.write_table(
        pa.table(
            {
                "ns": pa.array(moments, pa.timestamp("ns")),
                "day": pa.array([date(2020, 1, 1), date(2021, 1, 1)], pa.date32()),
                "zoned": pa.array(moments, pa.timestamp("us", tz="Europe/Paris")),
            }
        ),
        path,
    )
    schema, _ = infer_schema(path)
    assert [c.kind for c in schema.columns] == ["datetime"] * 3
    _, report = read_table(path, schema)
    assert report.clean


def test_nanosecond_timestamps_validate_truncated_to_microseconds(tmp_path: Path) -> None:
    path = tmp_path / "ns.parquet"
    stamp = pa.array([1_577_836_800_123_456_789], pa.timestamp("ns"))
    pq.write_table(pa.table({"t": stamp}), path)
    schema, _ = infer_schema(path)
    df, _ = read_table(path, schema)
    assert df["t"][0] == pd.Timestamp("2020-01-01 00:00:00.123456")


@pytest.mark.parametrize("rows", [0, -3])
def test_sample_rows_below_one_is_refused_with_a_clear_error(tmp_path: Path, rows: int) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a\n1\n")
    with pytest.raises(DataFileError, match="positive number of rows"):
        infer_schema(path, sample_rows=rows)
    result = CliRunner().invoke(
        app,
        [
            "schema",
            "infer",
            str(path),
            "--out",
            str(tmp_path / "s.yaml"),
            "--sample-rows",
            str(rows),
        ],
    )
    assert result.exit_code == 2 and "--sample-rows" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


QUOTED = TableSchema(
    name="q",
    columns=[
        NumericalColumn(name="n", dtype="int", min=0, max=100),
        TextColumn(name="note"),
    ],
)


def test_quoted_line_break_at_any_block_boundary_stays_one_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = 'n,note\n1,"two\nlines"\n2,"say ""hi""\nthere"\n3,plain\n'
    path = tmp_path / "q.csv"
    path.write_text(body)
    for block in range(1, len(body) + 1):
        monkeypatch.setattr(fio, "BLOCK_SIZE", block)
        df, report = read_table(path, QUOTED)
        assert report.clean, block
        assert df["note"].tolist() == ["two\nlines", 'say "hi"\nthere', "plain"], block


def test_row_numbers_count_records_not_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "q.csv"
    path.write_text('n,note\n1,"a\nb\nc"\n999,x\n2,y,extra\n3,"d\ne"\n500,z\n')
    for block in (5, 1 << 20):
        monkeypatch.setattr(fio, "BLOCK_SIZE", block)
        validate_file(path, QUOTED, quarantine=tmp_path / "out.csv")
        assert sorted(reasons(tmp_path / "out.csv")) == [2, 3, 5], block


def test_unclosed_quote_running_past_the_record_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "q.csv"
    path.write_text('n,note\n1,ok\n2,"never closed\n' + "3,more\n" * 50)
    monkeypatch.setattr(fio, "BLOCK_SIZE", 16)
    monkeypatch.setattr(fio, "MAX_RECORD_BYTES", 100)
    with pytest.raises(DataFileError, match=r"record starting on line 3 .* never closed"):
        read_table(path, QUOTED)


NOTES = st.text(alphabet='ab,"\n\r ', max_size=8)


def cell(text: str, quoted: bool) -> str:
    """A CSV field: quoted when asked or when it must be (Python's csv leaves a CR bare)."""
    if quoted or any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


@settings(max_examples=100, deadline=None)
@given(
    notes=st.lists(st.tuples(NOTES, st.booleans()), max_size=25),
    ending=st.sampled_from(["\n", "\r\n"]),
    block=st.integers(1, 64),
)
def test_any_block_size_reads_the_same_records_as_one_block(
    notes: list[tuple[str, bool]], ending: str, block: int, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = tmp_path_factory.mktemp("b") / "d.csv"
    lines = ["n,note", *(f"{i},{cell(text, quoted)}" for i, (text, quoted) in enumerate(notes))]
    path.write_bytes((ending.join(lines) + ending).encode("utf-8"))
    original = fio.BLOCK_SIZE
    fio.BLOCK_SIZE = block
    try:
        df, report = read_table(path, QUOTED)
    finally:
        fio.BLOCK_SIZE = original
    assert report.rows_in == len(notes)
    assert df["note"].fillna("").tolist() == ["" if text.isspace() else text for text, _ in notes]
