"""Reading a source's own file as plain strings: its columns are not the common schema's yet.

Rows that are not records of the header's fields (blank lines, too few or too many fields) stay
out of the table but travel with it as quarantine entries (`rejected_rows`); the table's index
holds each row's 1-based data row number (`source_rows`), so the quarantine points into the file.
The header reads as `fedsynth.io` reads it (delimiter sniffed unless given, a UTF-8 byte-order
mark skipped, an unnamed empty last column dropped with a `DataFileNote`), so a file `prep run`
takes is a file `validate` takes.
"""

from __future__ import annotations

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
    csv_delimiter,
    drop_trailing_column,
    field_count_message,
    header_layout,
    note_dropped_column,
    sniff_delimiter,
)
from fedsynth.prep.report import QuarantineEntry

SOURCE_ROW = "source_row"
_REJECTED = "fedsynth.prep.rejected_rows"
_NOT_UTF8 = "re-export it as UTF-8 CSV, or name its encoding (e.g. cp1252)"


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
    if path.suffix.lower() in (".parquet", ".pq"):
        return _read_parquet(path)
    if delimiter is not None:
        try:
            delimiter = csv_delimiter(path, delimiter)
        except DataFileError as exc:
            raise SourceFileError(str(exc)) from exc
    return _read_csv(path, delimiter, encoding)


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
        raise SourceFileError(
            f"{path}: not a readable Parquet file ({exc}); re-export the table as Parquet, "
            "or give the file a .csv name if it holds CSV text"
        ) from exc
    _check_header(path, table.column_names)
    columns = {name: as_text(table.column(name)).to_pylist() for name in table.column_names}
    rows = np.arange(1, table.num_rows + 1, dtype=np.int64)
    return _with_rows(pd.DataFrame(columns, dtype=object), rows, [])


def _read_csv(path: Path, delimiter: str | None, encoding: str) -> pd.DataFrame:
    utf8 = encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    with open(path, "rb") as fh:
        layout = _header(path, fh.readline(), delimiter, encoding, utf8)
        if fh.tell() == path.stat().st_size:
            note_dropped_column(path, layout)
            empty = pd.DataFrame({name: pd.Series(dtype=object) for name in layout.names})
            return _with_rows(empty, np.empty(0, dtype=np.int64), [])
        table, invalid = _parse_records(
            path, fh, layout.fields, layout.delimiter, "utf8" if utf8 else encoding
        )
    rows = np.arange(1, table.num_rows + len(invalid) + 1, dtype=np.int64)
    rows = np.delete(rows, [r.number - 1 for r in invalid])
    try:
        table = drop_trailing_column(path, layout, table, rows)
    except DataFileError as exc:
        raise SourceFileError(str(exc)) from exc
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
    path: Path, fh: BinaryIO, header: list[str], delimiter: str, encoding: str
) -> tuple[pa.Table, list[pacsv.InvalidRow]]:
    """The records that split into the header's fields, and those that do not (in file order)."""
    invalid: list[pacsv.InvalidRow] = []

    def keep_invalid(row: pacsv.InvalidRow) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            fh,
            # One thread: the parser numbers invalid rows only then.
            read_options=pacsv.ReadOptions(
                use_threads=False, column_names=header, encoding=encoding
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter,
                newlines_in_values=True,
                ignore_empty_lines=False,
                invalid_row_handler=keep_invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()), strings_can_be_null=False
            ),
        )
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc):
            raise SourceFileError(
                f"{path}: not a readable UTF-8 CSV file ({exc}); {_NOT_UTF8}"
            ) from exc
        raise SourceFileError(
            f"{path}: the CSV parser stopped ({exc}); check the quoting near that row"
        ) from exc
    return table, invalid


def _header(path: Path, line: bytes, delimiter: str | None, encoding: str, utf8: bool) -> CsvLayout:
    """How the first line splits, on `delimiter` (sniffed when None); refuses an empty file and
    unnamed or repeated names as `fedsynth.io` does."""
    try:
        text = line.decode("utf-8-sig" if utf8 else encoding).rstrip("\r\n")
    except LookupError as exc:
        raise SourceFileError(
            f"{path}: {encoding!r} is not a text encoding Python knows; name one such as "
            "utf-8 or cp1252"
        ) from exc
    except UnicodeDecodeError as exc:
        raise SourceFileError(
            f"{path}: not a readable {encoding} CSV file (the header has bytes that are not "
            f"{encoding}); {_NOT_UTF8}"
        ) from exc
    if not text.strip():
        problem = "the file is empty" if not line else "the first line is blank"
        raise SourceFileError(
            f"{path}: {problem}; a CSV source starts with a header row naming its columns"
        )
    try:
        return header_layout(path, text, delimiter or sniff_delimiter(text))
    except DataFileError as exc:
        raise SourceFileError(str(exc)) from exc


def _check_header(path: Path, names: list[str]) -> None:
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceFileError(
            f"{path}: the header repeats column(s) {repeated}; give every column a unique name"
        )


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
