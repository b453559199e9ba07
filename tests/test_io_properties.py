"""Properties: for any table and any corruption, accepted + quarantined = input, exactly; and
every reader reads a file as it reads its plain comma-separated twin."""

from __future__ import annotations

import csv
import io
import json
import warnings

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth import io as fio
from fedsynth.io import DataFileNote, read_table
from fedsynth.io import read_raw as inference_read
from fedsynth.prep.source import read_raw as prep_read
from fedsynth.prep.source import rejected_rows
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    NumericalColumn,
    TableSchema,
    TextColumn,
)

SCHEMA = TableSchema(
    name="t",
    columns=[
        NumericalColumn(name="n", dtype="int", min=-50, max=50, nullable=False),
        NumericalColumn(name="x", min=0, max=1),
        CategoricalColumn(name="c", domain=["a", "b", "c"]),
        BooleanColumn(name="b"),
        DatetimeColumn(name="d", max="2030-01-01"),
        TextColumn(name="t"),
    ],
)

GOOD_CELLS = {
    "n": st.integers(-50, 50).map(str),
    "x": st.floats(0, 1).map(repr),
    "c": st.sampled_from(["a", "b", "c", "", " a", "  "]),
    "b": st.sampled_from(["true", "False", "yes", "0", ""]),
    "d": st.dates(max_value=pd.Timestamp("2029-12-31").date()).map(str),
    "t": st.text(alphabet="abc ,\"'", max_size=6),
}
BAD_CELLS = {
    "n": st.sampled_from(["", "51", "-51", "1.5", "x", "1e400", "99999999999999999999"]),
    "x": st.sampled_from(["2", "-0.1", "nan", "inf", "one"]),
    "c": st.sampled_from(["d", "A", "a a"]),
    "b": st.sampled_from(["maybe", "2", "yess"]),
    "d": st.sampled_from(["2031-01-01", "yesterday", "2020-13-01"]),
}


@st.composite
def corrupted_tables(draw: st.DrawFn) -> tuple[list[list[str] | str], set[int]]:
    """Rows of cells (or raw broken lines) and the 1-based numbers of the rows that are bad."""
    rows: list[list[str] | str] = []
    bad: set[int] = set()
    for number in range(1, draw(st.integers(0, 40)) + 1):
        cells = [draw(GOOD_CELLS[c]) for c in SCHEMA.names]
        damage = draw(st.sampled_from(["none"] * 4 + ["cell", "cells", "short", "long"]))
        if damage in ("cell", "cells"):
            for column in draw(st.sets(st.sampled_from(list(BAD_CELLS)), min_size=1, max_size=3)):
                cells[SCHEMA.names.index(column)] = draw(BAD_CELLS[column])
                if damage == "cell":
                    break
            bad.add(number)
        elif damage in ("short", "long"):
            rows.append(_line(cells[:3]) if damage == "short" else _line(cells) + ",extra")
            bad.add(number)
            continue
        rows.append(cells)
    return rows, bad


def _line(cells: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(cells)
    return buffer.getvalue()


def render(rows: list[list[str] | str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(SCHEMA.names)
    for row in rows:
        if isinstance(row, str):
            buffer.write(row + "\n")
        else:
            writer.writerow(row)
    return buffer.getvalue()


@settings(max_examples=120, deadline=None)
@given(table=corrupted_tables(), block=st.sampled_from([37, 211, 1 << 20]))
def test_accepted_plus_quarantined_is_input_and_quarantine_is_exactly_the_bad_rows(
    table: tuple[list[list[str] | str], set[int]], block: int, tmp_path_factory
) -> None:
    rows, bad = table
    folder = tmp_path_factory.mktemp("p")
    path = folder / "data.csv"
    path.write_text(render(rows), encoding="utf-8")
    q = folder / "q.csv"
    original = fio.BLOCK_SIZE
    fio.BLOCK_SIZE = block
    try:
        df, report = read_table(path, SCHEMA, quarantine=q)
    finally:
        fio.BLOCK_SIZE = original
    quarantined = pd.read_csv(q, dtype=str, keep_default_na=False)
    assert report.rows_in == len(rows)
    assert len(df) + len(quarantined) == len(rows)
    assert report.rows_accepted == len(df) and report.rows_quarantined == len(quarantined)
    assert set(quarantined["_row"].astype(int)) == bad
    for reasons in quarantined["_reasons"]:
        assert json.loads(reasons), "every quarantined row carries at least one reason"


def _cells(row: list[str] | str) -> list[str]:
    """The cells of a generated row; a raw broken line is split back into its cells."""
    return row if isinstance(row, list) else next(csv.reader([row]))


def render_as(rows: list[list[str] | str], delimiter: str, trailing: bool) -> str:
    """`rows` as CSV split on `delimiter`; `trailing` ends the header and every row in one."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    end = [""] if trailing else []
    writer.writerow([*SCHEMA.names, *end])
    for row in rows:
        writer.writerow([*_cells(row), *end])
    return buffer.getvalue()


def _quarantine(path) -> list[tuple[int, list[str]]]:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return [
        (int(row), [issue["rule"] for issue in json.loads(reasons)])
        for row, reasons in zip(frame["_row"], frame["_reasons"], strict=True)
    ]


@settings(max_examples=60, deadline=None)
@given(
    table=corrupted_tables(),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
    bom=st.booleans(),
    trailing=st.booleans(),
)
def test_a_bom_a_trailing_delimiter_or_another_delimiter_reads_as_the_plain_comma_file(
    table: tuple[list[list[str] | str], set[int]],
    delimiter: str,
    bom: bool,
    trailing: bool,
    tmp_path_factory,
) -> None:
    """Every reader (validated, schema inference, prep) sniffs the delimiter, skips a UTF-8 BOM
    and drops an empty trailing column with a note: the rows, the quarantine and the row count
    are those of the plain file."""
    rows, bad = table
    folder = tmp_path_factory.mktemp("v")
    plain, variant = folder / "plain.csv", folder / "variant.csv"
    plain.write_text(render(rows), encoding="utf-8")
    variant.write_bytes(
        (b"\xef\xbb\xbf" if bom else b"") + render_as(rows, delimiter, trailing).encode()
    )
    expected, expected_report = read_table(plain, SCHEMA, quarantine=folder / "q1.csv")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataFileNote)
        got, report = read_table(variant, SCHEMA, quarantine=folder / "q2.csv")
        inferred = inference_read(variant)
        prepped = prep_read(variant)
    notes = [
        w
        for w in caught
        if issubclass(w.category, DataFileNote) and "wrong number of fields" not in str(w.message)
    ]
    assert len(notes) == (3 if trailing else 0)
    pd.testing.assert_frame_equal(got, expected)
    assert report.rows_in == expected_report.rows_in == len(rows)
    assert report.rows_accepted + report.rows_quarantined == len(rows)
    assert _quarantine(folder / "q2.csv") == _quarantine(folder / "q1.csv")
    assert {row for row, _ in _quarantine(folder / "q2.csv")} == bad
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataFileNote)  # the same notes, counted above
        assert inferred.equals(inference_read(plain))
    prep_plain = prep_read(plain)
    pd.testing.assert_frame_equal(prepped, prep_plain)
    assert [(e.source_row, e.rule) for e in rejected_rows(prepped)] == [
        (e.source_row, e.rule) for e in rejected_rows(prep_plain)
    ]
