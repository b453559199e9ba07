"""Reading a source's own file as plain strings: its columns are not the common schema's yet.

Rows that are not records of the header's fields (blank lines, too few or too many fields) stay
out of the table but travel with it as quarantine entries (`rejected_rows`); the table's index
holds each row's 1-based data row number (`source_rows`), so the quarantine points into the file.
The header reads as `fedsynth.io` reads it (delimiter sniffed unless given, a UTF-8 byte-order
mark skipped, an unnamed empty last column dropped with a `DataFileNote`), so a file `prep run`
takes is a file `validate` takes; a file it cannot read is refused with `validate`'s words (an
unknown encoding, undecodable bytes by line and byte offset, a declared delimiter the header does
not use, a byte-order mark of another encoding), which name the `--encoding` and `--delimiter`
options.
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import astuple
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from fedsynth.arrow_text import as_text
from fedsynth.io import (
    BLANK_ROW_RULE,
    FIELD_COUNT_RULE,
    CsvLayout,
    DataFileError,
    check_columns,
    check_declared_delimiter,
    check_encoding,
    check_flat,
    csv_delimiter,
    csv_read_error,
    drop_trailing_column,
    field_count_message,
    header_layout,
    note_dropped_column,
    read_header_line,
    sniff_delimiter,
)
from fedsynth.prep.report import QuarantineEntry

SOURCE_ROW = "source_row"
_REJECTED = "fedsynth.prep.rejected_rows"


class SourceFileError(ValueError):
    """A source file that cannot be read; names the file and the fix."""


def read_raw(
    path: str | Path, *, delimiter: str | None = None, encoding: str = "utf-8"
) -> pd.DataFrame:
    """Every column of a CSV or Parquet file as text (None for empty Parquet cells).

    Data rows are numbered from 1 after the header, as `fedsynth validate` numbers them; a
    record with a quoted line break counts as one row. A CSV delimiter of None is sniffed from
    the header; `encoding` is the CSV file's text encoding (a UTF-8 byte-order mark is skipped).
    """
    path = Path(path)
    if not path.is_file():
        raise SourceFileError(f"{path}: no such file; give the path of a CSV or Parquet file")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            return _read_parquet(path)
        return _read_csv(path, delimiter, encoding)
    except DataFileError as exc:
        raise SourceFileError(str(exc)) from exc


def source_rows(df: pd.DataFrame) -> np.ndarray:
    """The 1-based data row number of each row: the index `read_raw` set, else the position."""
    if df.index.name == SOURCE_ROW:
        return df.index.to_numpy(dtype=np.int64)
    return np.arange(1, len(df) + 1, dtype=np.int64)


def rejected_rows(df: pd.DataFrame) -> list[QuarantineEntry]:
    """The rows `read_raw` left out of `df` (blank, wrong number of fields), with reasons."""
    return [QuarantineEntry(*fields) for fields in df.attrs.get(_REJECTED, [])]


def _read_parquet(path: Path) -> pd.DataFrame:
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise DataFileError(
            path,
            f"not a readable Parquet file ({exc})",
            "re-export the table as Parquet, or give a .csv name if it is CSV text",
        ) from exc
    check_columns(path, table.column_names, None)
    check_flat(path, table.schema)
    columns = {name: as_text(table.column(name)).to_pylist() for name in table.column_names}
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return _with_rows(pd.DataFrame(columns, dtype=object), rows, [])


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> pd.DataFrame:
    layout = _layout(path, delimiter, encoding)
    arrow_encoding = "utf8" if codecs.lookup(encoding).name.startswith("utf-8") else encoding
    with open(path, "rb") as fh:
        fh.readline()
        if fh.tell() == path.stat().st_size:
            note_dropped_column(path, layout)
            empty = pd.DataFrame({name: pd.Series(dtype=object) for name in layout.names})
            return _with_rows(empty, np.empty(0, dtype=np.int64), [])
        table, invalid = _parse_records(path, fh, layout, encoding, arrow_encoding)
    rows = np.arange(1, table.num_rows + len(invalid) + 1, dtype=np.int64)
    rows = np.delete(rows, [r.number - 1 for r in invalid])
    table = drop_trailing_column(path, layout, table, rows)
    note_dropped_column(path, layout)
    blank = _blank(table)
    rejected = [
        QuarantineEntry(
            source_row=int(row),
            column="",
            value="",
            rule=BLANK_ROW_RULE,
            reason="the row is blank: every cell is empty; delete the line or fill in the row",
        )
        for row in rows[blank]
    ]
    rejected += [
        QuarantineEntry(
            source_row=r.number,
            column="",
            value=r.text,
            rule=FIELD_COUNT_RULE,
            reason=f"{field_count_message(r.actual_columns, len(layout.fields))}; check its "
            "delimiters and quoting",
        )
        for r in invalid
    ]
    frame = table.to_pandas()
    if blank.any():
        frame, rows = frame[~blank], rows[~blank]
    return _with_rows(frame, rows, rejected)


def _parse_records(
    path: Path, fh: BinaryIO, layout: CsvLayout, encoding: str, arrow_encoding: str
) -> tuple[pa.Table, list[pacsv.InvalidRow]]:
    """The records that split into the header's fields, and those that do not (in file order).

    A clean file is parsed once. Arrow decodes a bad line as UTF-8 before it calls the handler
    and only prints a failure, so when the first parse stops, the bytes are checked first and
    invalid ones are reported with their line; the parse that collects bad lines comes after.
    """
    start = fh.tell()
    try:
        return _read_records(fh, layout, arrow_encoding, None), []
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        if arrow_encoding == "utf8":
            fh.seek(start)
            _check_utf8(path, fh, encoding, exc)
    invalid: list[pacsv.InvalidRow] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    fh.seek(start)
    try:
        table = _read_records(fh, layout, arrow_encoding, keep_invalid)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise csv_read_error(path, encoding, exc) from exc
    return table, invalid


def _read_records(
    fh: BinaryIO,
    layout: CsvLayout,
    arrow_encoding: str,
    on_invalid: Callable[[pacsv.InvalidRow], str] | None,
) -> pa.Table:
    """Arrow's parser on one thread (it numbers invalid rows only then); without `on_invalid`,
    a line that does not split into the header's fields raises ArrowInvalid."""
    header = layout.fields
    return pacsv.read_csv(
        fh,
        read_options=pacsv.ReadOptions(
            use_threads=False, column_names=header, encoding=arrow_encoding
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=layout.delimiter,
            newlines_in_values=True,
            ignore_empty_lines=False,
            invalid_row_handler=on_invalid,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
        ),
    )


def _check_utf8(path: Path, fh: BinaryIO, encoding: str, cause: Exception) -> None:
    """Raise the file's encoding error, naming the line, if its records are not valid UTF-8."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        while chunk := fh.read(1 << 20):
            decoder.decode(chunk)
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise csv_read_error(path, encoding, exc) from cause


def _layout(path: Path, delimiter: str | None, encoding: str) -> CsvLayout:
    """How the header splits, refused as `fedsynth validate` refuses it: an unknown encoding,
    an empty file or a blank first line, undecodable bytes, a foreign byte-order mark, unnamed or
    repeated names, or a declared delimiter that leaves the header one field where the sniffed
    one splits it."""
    check_encoding(path, encoding)
    line = read_header_line(path, encoding)
    if not line.strip():
        raise DataFileError(
            path,
            "the first line is blank",
            "delete the blank line(s) above the header row; a CSV file starts with a header "
            "row naming its columns",
        )
    if delimiter is None:
        return header_layout(path, line, sniff_delimiter(line))
    declared = csv_delimiter(path, delimiter)
    check_declared_delimiter(path, line, declared)
    return header_layout(path, line, declared)


def _blank(table: pa.Table) -> np.ndarray:
    """Rows in which every cell is empty: blank lines, or lines of delimiters only."""
    blank = np.ones(table.num_rows, dtype=bool)
    for column in table.columns:
        blank &= pc.equal(pc.binary_length(column), 0).to_numpy(zero_copy_only=False)
        if not blank.any():
            break
    return blank


def _with_rows(
    frame: pd.DataFrame, rows: np.ndarray, rejected: list[QuarantineEntry]
) -> pd.DataFrame:
    """`frame` indexed by data row number, carrying the rows that were left out of it."""
    frame.index = pd.Index(rows, name=SOURCE_ROW)
    # Plain lists, so the attrs survive pandas writing them into Parquet metadata as JSON.
    frame.attrs[_REJECTED] = [
        list(astuple(e)) for e in sorted(rejected, key=lambda e: e.source_row)
    ]
    return frame
