"""Read CSV or Parquet files against a `TableSchema`: typed rows out, bad rows to quarantine.

Files stream in batches, so validating a file larger than memory works in bounded memory.
File-level problems (missing or unexpected columns, an empty file, undecodable bytes, a wrong
delimiter, a UTF-16 byte-order mark) raise `DataFileError`; row-level problems send the row to the
quarantine with one reason per offending cell. Accepted + quarantined rows = input rows, always.

Every CSV reader (this module's and `fedsynth.prep.source`) reads a file the same way: the
delimiter is sniffed from the header unless given, a UTF-8 byte-order mark is skipped, and an
unnamed last column that holds no value (a header and rows ending in a delimiter, as some exports
write them) is dropped with a `DataFileNote`.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
import warnings
from collections import Counter
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from fedsynth.arrow_text import as_text
from fedsynth.files import atomic_path
from fedsynth.schema import TableSchema
from fedsynth.validation import (
    ColumnResult,
    Rule,
    UnsupportedStorage,
    blank_cells,
    describe,
    validate_column,
)

BLOCK_SIZE = 16 << 20
READ_BLOCK_SIZE = 1 << 20
MAX_RECORD_BYTES = 64 << 20
PARQUET_BATCH_ROWS = 131_072
MAX_EXAMPLES = 20
FIELD_COUNT_RULE = "field_count"
BLANK_ROW_RULE = "blank_row"
_BOMS = {
    codecs.BOM_UTF8: "UTF-8",
    codecs.BOM_UTF16_LE: "UTF-16 LE",
    codecs.BOM_UTF16_BE: "UTF-16 BE",
}
_CANDIDATE_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_ESCAPES = {"\\t": "\t"}
_QUARANTINE_ROW = "_row"
_QUARANTINE_REASONS = "_reasons"

Progress = Callable[[int, int], None]
"""Called with (units done, units in all): bytes for CSV, rows for Parquet."""


class DataFileError(ValueError):
    """A file that cannot be read at all; says which file, what is wrong and how to fix it."""

    def __init__(self, path: str | Path, problem: str, fix: str) -> None:
        self.path = str(path)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{path}: {problem}. Fix: {fix}")


class DataFileNote(UserWarning):
    """Something a reader did to a file that its user should hear of (an empty column dropped);
    the CLIs print these as notes."""


@dataclass(frozen=True)
class CsvLayout:
    """How a CSV header splits: the delimiter, the header's fields as written and whether the
    last field is an unnamed column to drop (its values must all be empty)."""

    delimiter: str
    fields: list[str]
    trailing_unnamed: bool

    @property
    def names(self) -> list[str]:
        """The column names the table has: the fields less a dropped trailing one."""
        return self.fields[:-1] if self.trailing_unnamed else self.fields


class CellIssue(BaseModel):
    """One offending cell: where it is, what it held and which rule it broke."""

    row: int = Field(description="1-based data row in the source; the header is not counted.")
    column: str
    value: str | None
    rule: str
    message: str


class ValidationReport(BaseModel):
    """What validating one file found; counts are exact, examples are the first few issues."""

    source: str
    rows_in: int = 0
    rows_accepted: int = 0
    rows_quarantined: int = 0
    issues_by_column: dict[str, dict[str, int]] = Field(default_factory=dict)
    examples: list[CellIssue] = Field(default_factory=list)
    quarantine: str | None = None

    @property
    def clean(self) -> bool:
        return self.rows_quarantined == 0

    @property
    def issues_by_rule(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for rules in self.issues_by_column.values():
            totals.update(rules)
        return dict(totals)


@dataclass
class ValidatedBatch:
    """The accepted rows of one batch (typed) and the quarantined rows with their reasons."""

    accepted: pa.RecordBatch
    quarantined: pa.RecordBatch


@dataclass
class _Tally:
    report: ValidationReport
    by_column: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, issue: CellIssue) -> None:
        self.by_column.setdefault(issue.column, Counter())[issue.rule] += 1
        if len(self.report.examples) < MAX_EXAMPLES:
            self.report.examples.append(issue)

    def finish(self) -> ValidationReport:
        self.report.issues_by_column = {c: dict(r) for c, r in self.by_column.items()}
        return self.report


def iter_validated(
    path: str | Path,
    schema: TableSchema,
    report: ValidationReport,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    progress: Progress | None = None,
) -> Iterator[ValidatedBatch]:
    """Stream `path` in validated batches, filling `report` as it goes.

    CSV text is parsed per the schema, split on `delimiter` (sniffed from the header when
    None); Parquet columns may already be typed. Raises DataFileError before the first batch
    for file-level problems, or when undecodable bytes or values under an unnamed trailing
    column are met later (callers that write outputs must then discard them, as
    `validate_file` does).
    """
    path = Path(path)
    tally = _Tally(report)
    layout = None
    if _is_parquet(path):
        chunks = _parquet_chunks(path, schema, progress)
    else:
        check_encoding(path, encoding)
        layout = _csv_layout(path, schema, delimiter, encoding)
        chunks = _prefetch(_csv_chunks(path, schema, layout, encoding, progress))
    for chunk in chunks:
        yield _validate_batch(path, chunk, schema, tally)
    if layout is not None:
        note_dropped_column(path, layout)
    tally.finish()


def validate_file(
    path: str | Path,
    schema: TableSchema,
    *,
    quarantine: str | Path | None = None,
    out: str | Path | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    progress: Progress | None = None,
) -> ValidationReport:
    """Validate `path` in bounded memory; write accepted rows to `out` and bad ones to `quarantine`.

    Output formats follow the extensions (.parquet, otherwise CSV). Both files appear only when
    the whole input was read; an error leaves no partial file behind.
    """
    report = ValidationReport(source=str(path))
    with ExitStack() as stack:
        q_sink = _open_sink(stack, quarantine, _quarantine_arrow_schema(schema))
        out_sink = _open_sink(stack, out, None)
        for batch in iter_validated(
            path, schema, report, delimiter=delimiter, encoding=encoding, progress=progress
        ):
            if q_sink is not None and batch.quarantined.num_rows:
                q_sink.write(batch.quarantined)
            if out_sink is not None:
                out_sink.write(batch.accepted)
        if out_sink is not None:
            out_sink.finish(_empty_typed_batch(schema))
        if q_sink is not None:
            q_sink.finish(_empty_quarantine_batch(schema))
    if quarantine is not None:
        report.quarantine = str(quarantine)
    return report


def read_table(
    path: str | Path,
    schema: TableSchema,
    *,
    quarantine: str | Path | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    progress: Progress | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Read and validate a whole file into a typed DataFrame (see `fedsynth.frame` for dtypes)."""
    report = ValidationReport(source=str(path))
    accepted: list[pa.RecordBatch] = []
    with ExitStack() as stack:
        q_sink = _open_sink(stack, quarantine, _quarantine_arrow_schema(schema))
        for batch in iter_validated(
            path, schema, report, delimiter=delimiter, encoding=encoding, progress=progress
        ):
            accepted.append(batch.accepted)
            if q_sink is not None and batch.quarantined.num_rows:
                q_sink.write(batch.quarantined)
        if q_sink is not None:
            q_sink.finish(_empty_quarantine_batch(schema))
    if quarantine is not None:
        report.quarantine = str(quarantine)
    table = pa.Table.from_batches(accepted or [_empty_typed_batch(schema)])
    return to_pandas(table, schema), report


def to_pandas(table: pa.Table, schema: TableSchema) -> pd.DataFrame:
    """Convert a typed Arrow table to the pandas form of `fedsynth.frame`."""
    mapping = {
        pa.int64(): pd.Int64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype(),
    }
    df = table.to_pandas(types_mapper=mapping.get, coerce_temporal_nanoseconds=False)
    return df[schema.names]


@dataclass
class _BrokenRow:
    """A CSV line the parser could not split into the header's fields."""

    row: int
    fields: int
    text: str


@dataclass
class _RawChunk:
    """Consecutive source rows as stored, with their row numbers, the broken rows among them and
    how many fields a row must have (the header's)."""

    batch: pa.RecordBatch
    rows: np.ndarray
    broken: list[_BrokenRow]
    fields: int


def _csv_chunks(
    path: Path, schema: TableSchema, layout: CsvLayout, encoding: str, progress: Progress | None
) -> Iterator[_RawChunk]:
    """Parse the CSV in blocks of whole records, so memory stays bounded by the block size."""
    total = path.stat().st_size
    for table, rows, broken, done in _csv_tables(path, layout, encoding):
        batch = table.select(schema.names).combine_chunks().to_batches()
        raw = batch[0] if batch else pa.RecordBatch.from_pylist([], _raw_arrow_schema(schema))
        if progress is not None:
            progress(done, total)
        yield _RawChunk(raw, rows, broken, len(layout.fields))


def _csv_tables(
    path: Path, layout: CsvLayout, encoding: str
) -> Iterator[tuple[pa.Table, np.ndarray, list[_BrokenRow], int]]:
    """Each block of whole records after the header as text columns of `layout.names`, with
    the data row number of each row, the rows that did not split into the header's fields and
    the bytes read so far. Refuses a value under an unnamed trailing column."""
    first_row = 1
    for text, done in _record_blocks(path, encoding, layout.delimiter):
        broken: list[_BrokenRow] = []
        try:
            table = _parse_block(text, first_row, layout.fields, layout.delimiter, broken)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise csv_read_error(path, encoding, exc) from exc
        records = table.num_rows + len(broken)
        rows = np.arange(first_row, first_row + records, dtype=np.int64)
        first_row += records
        if broken:
            rows = rows[~np.isin(rows, [b.row for b in broken])]
        yield drop_trailing_column(path, layout, table, rows), rows, broken, done


def _record_ends(delimiter: str) -> re.Pattern[bytes]:
    """Matches the longest run of complete CSV records at the start of a block.

    Mirrors Arrow's parser: a quote opens a quoted field only at the start of a field (else it
    is a literal), a doubled quote inside one is a literal quote, and a line break inside one
    belongs to the field.
    """
    other = rb"[^" + re.escape(delimiter.encode("utf-8")) + rb"\r\n]"
    token = rb'[^"\r\n]++|(?<!' + other + rb')"(?:[^"]++|"")*+"|(?<=' + other + rb')"'
    return re.compile(rb"(?:(?:" + token + rb")*+(?:\r\n|\n|\r(?=[^\n])))*+")


def _complete_records(data: bytes, records: re.Pattern[bytes]) -> int:
    """Length of the complete records at the start of `data`; unquoted text cuts at a newline."""
    if b'"' not in data:
        return data.rfind(b"\n") + 1
    return records.match(data).end()


def _record_blocks(path: Path, encoding: str, delimiter: str) -> Iterator[tuple[bytes, int]]:
    """UTF-8 blocks of whole records after the header: (bytes, bytes read so far).

    A block never ends inside a quoted field, so a line break in a value does not split its
    record; a record that grows past MAX_RECORD_BYTES is refused as an unclosed quote.
    """
    decoder = (
        None if _arrow_encoding(encoding) == "utf8" else codecs.getincrementaldecoder(encoding)()
    )
    records = _record_ends(delimiter)
    with open(path, "rb") as fh:
        head = fh.readline()
        done = len(head)
        carry = b""
        line = 2
        while True:
            block = fh.read(BLOCK_SIZE)
            done += len(block)
            if decoder is not None:
                try:
                    block = decoder.decode(block, final=not block).encode("utf-8")
                except UnicodeDecodeError as exc:
                    raise _undecodable(path, encoding) from exc
            if not block:
                if carry:
                    yield carry, done
                return
            data = carry + block
            cut = _complete_records(data, records)
            text, carry = data[:cut], data[cut:]
            if len(carry) > MAX_RECORD_BYTES:
                raise DataFileError(
                    path,
                    f"the record starting on line {line} runs over {MAX_RECORD_BYTES >> 20} MiB "
                    "without ending: a quoted field is never closed",
                    'close the quote; a quote inside a quoted field is written twice ("")',
                )
            if text:
                yield text, done
                line += text.count(b"\n")


def _parse_block(
    text: bytes, first_row: int, header: list[str], delimiter: str, broken: list[_BrokenRow]
) -> pa.Table:
    """Parse one block of whole records as text columns; unsplittable ones go to `broken`.

    The parser numbers bad lines only when it runs on one thread, so a block that has any is
    parsed again single-threaded (bad lines are rare; clean blocks keep the parallel parse).
    Arrow decodes a bad line as UTF-8 before it calls the handler and only prints a failure,
    so such a block is decoded here first and invalid bytes are reported as in a full line.
    """
    try:
        return _read_block(text, header, delimiter, use_threads=True, on_invalid=None)
    except pa.ArrowInvalid:
        text.decode("utf-8")  # raises UnicodeDecodeError on bytes Arrow would choke on

    def on_invalid(row: Any) -> str:
        broken.append(_BrokenRow(first_row + int(row.number) - 1, row.actual_columns, row.text))
        return "skip"

    return _read_block(text, header, delimiter, use_threads=False, on_invalid=on_invalid)


def _read_block(
    text: bytes,
    header: list[str],
    delimiter: str,
    *,
    use_threads: bool,
    on_invalid: Callable[[Any], str] | None,
) -> pa.Table:
    """Arrow's CSV parser on one block; without `on_invalid` a line that does not split into
    the header's fields raises ArrowInvalid."""
    return pacsv.read_csv(
        pa.py_buffer(text),
        read_options=pacsv.ReadOptions(
            use_threads=use_threads, column_names=header, block_size=READ_BLOCK_SIZE
        ),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter,
            invalid_row_handler=on_invalid,
            ignore_empty_lines=False,
            newlines_in_values=True,
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )


def _prefetch(chunks: Iterator[_RawChunk]) -> Iterator[_RawChunk]:
    """Read and parse the next block on a worker thread while the caller validates this one."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedsynth-read") as pool:
        pending = pool.submit(next, chunks, None)
        while (chunk := pending.result()) is not None:
            pending = pool.submit(next, chunks, None)
            yield chunk


def _parquet_chunks(
    path: Path, schema: TableSchema, progress: Progress | None
) -> Iterator[_RawChunk]:
    try:
        pf = pq.ParquetFile(path)
    except FileNotFoundError as exc:
        raise DataFileError(path, "file not found", "check the path") from exc
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataFileError(
            path,
            f"not a readable Parquet file ({exc})",
            "re-export the table as Parquet, or give a .csv name if it is CSV text",
        ) from exc
    check_columns(path, list(pf.schema_arrow.names), schema)
    check_flat(path, pf.schema_arrow)
    total = pf.metadata.num_rows
    done = 0
    for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=schema.names):
        rows = np.arange(done + 1, done + 1 + batch.num_rows, dtype=np.int64)
        done += batch.num_rows
        if progress is not None:
            progress(done, total)
        yield _RawChunk(batch, rows, [], len(schema.names))


def _validate_batch(
    path: Path, chunk: _RawChunk, schema: TableSchema, tally: _Tally
) -> ValidatedBatch:
    raw = chunk.batch
    results = {}
    for column in schema.columns:
        try:
            results[column.name] = validate_column(raw.column(column.name), column)
        except UnsupportedStorage as exc:
            raise DataFileError(
                path,
                f"column {column.name!r} is {exc}",
                f"store {column.name!r} as text or change its kind in the schema",
            ) from exc
    bad = np.zeros(raw.num_rows, dtype=bool)
    for result in results.values():
        bad |= result.codes != 0
    blank = _blank_rows(raw)
    keep = pa.array(~(bad | blank))
    accepted = pa.RecordBatch.from_arrays(
        [results[c.name].values.filter(keep) for c in schema.columns], names=schema.names
    )
    quarantined = _quarantine_batch(chunk, bad, blank, results, schema, tally)
    tally.report.rows_in += raw.num_rows + len(chunk.broken)
    tally.report.rows_accepted += accepted.num_rows
    tally.report.rows_quarantined += quarantined.num_rows
    return ValidatedBatch(accepted, quarantined)


def _blank_rows(raw: pa.RecordBatch) -> np.ndarray:
    """Rows in which every cell is empty or whitespace (blank lines in a CSV)."""
    blank = np.ones(raw.num_rows, dtype=bool)
    for array in raw.columns:
        blank &= blank_cells(array)
        if not blank.any():
            break
    return blank


def _quarantine_batch(
    chunk: _RawChunk,
    bad: np.ndarray,
    blank: np.ndarray,
    results: dict[str, ColumnResult],
    schema: TableSchema,
    tally: _Tally,
) -> pa.RecordBatch:
    """The rejected rows as text, each with its source row number and one reason per bad cell."""
    raw = chunk.batch
    positions = np.flatnonzero(bad | blank)
    texts = {
        c.name: as_text(raw.column(c.name)).take(positions).to_pylist() for c in schema.columns
    }
    records: list[tuple[int, list[CellIssue], dict[str, str | None]]] = []
    for i, pos in enumerate(positions):
        row = int(chunk.rows[pos])
        if blank[pos]:
            issues = [
                CellIssue(
                    row=row,
                    column="",
                    value="",
                    rule=BLANK_ROW_RULE,
                    message="the row is blank: every cell is empty",
                )
            ]
        else:
            issues = [
                CellIssue(
                    row=row,
                    column=column.name,
                    value=texts[column.name][i],
                    rule=Rule(int(code)).label,
                    message=describe(Rule(int(code)), column),
                )
                for column in schema.columns
                if (code := results[column.name].codes[pos])
            ]
        records.append((row, issues, {n: texts[n][i] for n in schema.names}))
    for broken in chunk.broken:
        issue = CellIssue(
            row=broken.row,
            column="",
            value=broken.text,
            rule=FIELD_COUNT_RULE,
            message=field_count_message(broken.fields, chunk.fields),
        )
        records.append((broken.row, [issue], dict.fromkeys(schema.names)))
    records.sort(key=lambda r: r[0])
    for _, issues, _ in records:
        for issue in issues:
            tally.add(issue)
    columns: dict[str, list[Any]] = {
        _QUARANTINE_ROW: [r[0] for r in records],
        _QUARANTINE_REASONS: [
            json.dumps([i.model_dump(exclude={"row"}) for i in r[1]], ensure_ascii=False)
            for r in records
        ],
    }
    for name in schema.names:
        columns[name] = [r[2][name] for r in records]
    return pa.RecordBatch.from_pydict(columns, schema=_quarantine_arrow_schema(schema))


def _raw_arrow_schema(schema: TableSchema) -> pa.Schema:
    return pa.schema([(n, pa.string()) for n in schema.names])


def _quarantine_arrow_schema(schema: TableSchema) -> pa.Schema:
    return pa.schema(
        [(_QUARANTINE_ROW, pa.int64()), (_QUARANTINE_REASONS, pa.string())]
        + [(n, pa.string()) for n in schema.names]
    )


def _empty_quarantine_batch(schema: TableSchema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=_quarantine_arrow_schema(schema))


def _empty_typed_batch(schema: TableSchema) -> pa.RecordBatch:
    raw = pa.RecordBatch.from_pylist([], schema=_raw_arrow_schema(schema))
    arrays = [validate_column(raw.column(c.name), c).values for c in schema.columns]
    return pa.RecordBatch.from_arrays(arrays, names=schema.names)


class _Sink:
    """Writes record batches to a Parquet or CSV file; the file is opened on the first batch."""

    def __init__(self, path: Path, parquet: bool, arrow_schema: pa.Schema | None) -> None:
        self.path = path
        self.parquet = parquet
        self.arrow_schema = arrow_schema
        self.writer: pq.ParquetWriter | pacsv.CSVWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if not self.parquet:
            batch = _decode_dictionaries(batch)
        if self.writer is None:
            schema = self.arrow_schema or batch.schema
            self.writer = (
                pq.ParquetWriter(self.path, schema)
                if self.parquet
                else pacsv.CSVWriter(self.path, schema)
            )
        self.writer.write_batch(batch)

    def finish(self, empty: pa.RecordBatch) -> None:
        """Make sure the file exists with its header even when no batch was written."""
        if self.writer is None:
            self.write(empty)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _decode_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    if not any(pa.types.is_dictionary(t) for t in batch.schema.types):
        return batch
    arrays = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)


def _open_sink(
    stack: ExitStack, target: str | Path | None, arrow_schema: pa.Schema | None
) -> _Sink | None:
    """A sink writing to a temporary file that replaces `target` only if the stack exits cleanly."""
    if target is None:
        return None
    tmp = stack.enter_context(atomic_path(target))
    sink = _Sink(tmp, _is_parquet(target), arrow_schema)
    stack.callback(sink.close)
    return sink


def _is_parquet(path: Path | str) -> bool:
    return Path(path).suffix.lower() in {".parquet", ".pq"}


def _arrow_encoding(encoding: str) -> str:
    """Arrow decodes UTF-8 natively; other encodings are transcoded through Python's codecs."""
    name = codecs.lookup(encoding).name
    return "utf8" if name == "utf-8" else encoding


def read_header_line(path: Path, encoding: str) -> str:
    """The decoded first line, less a UTF-8 byte-order mark; refuses missing, empty or
    undecodable files, a UTF-16 byte-order mark, and a UTF-8 one when `encoding` is not UTF-8
    (a file that says it is UTF-8 read as, say, cp1252 would come out garbled)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(1 << 20)
    except FileNotFoundError as exc:
        raise DataFileError(path, "file not found", "check the path") from exc
    except IsADirectoryError as exc:
        raise DataFileError(path, "is a directory, not a file", "name the data file") from exc
    if not head.strip():
        raise DataFileError(
            path,
            "the file is empty",
            "export the table again with a header row naming the columns",
        )
    check_encoding(path, encoding)
    utf8 = codecs.lookup(encoding).name in ("utf-8", "utf-8-sig")
    for bom, name in _BOMS.items():
        if head.startswith(bom) and not (bom == codecs.BOM_UTF8 and utf8):
            fix = (
                "read it as UTF-8 (--encoding utf-8, the default)"
                if bom == codecs.BOM_UTF8
                else f"convert the file to UTF-8 (e.g. iconv -f {name.replace(' ', '')} -t UTF-8)"
            )
            raise DataFileError(path, f"the file starts with a {name} byte-order mark (BOM)", fix)
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = codecs.decode(first_line, encoding)
    except UnicodeDecodeError as exc:
        raise _undecodable(path, encoding) from exc
    return text.removeprefix("\ufeff")


def sniff_delimiter(header_line: str) -> str:
    """The candidate delimiter that splits the header into the most fields (',' on a tie)."""
    return max(
        _CANDIDATE_DELIMITERS, key=lambda d: len(next(csv.reader([header_line], delimiter=d)))
    )


def _split_header(line: str, delimiter: str) -> list[str]:
    return next(csv.reader([line], delimiter=delimiter))


def header_layout(path: Path, line: str, delimiter: str) -> CsvLayout:
    """Split the decoded header `line` on `delimiter`; refuse unnamed or repeated names, except
    one unnamed last field when every other field is named (a header ending in a delimiter)."""
    fields = _split_header(line, delimiter)
    trailing = len(fields) > 1 and not fields[-1] and all(fields[:-1])
    layout = CsvLayout(delimiter, fields, trailing)
    check_columns(path, layout.names, None)
    return layout


def drop_trailing_column(
    path: Path, layout: CsvLayout, table: pa.Table, rows: np.ndarray
) -> pa.Table:
    """`table` (parsed on `layout.fields`) without the unnamed trailing column; DataFileError
    naming its position and the first data row (numbered as in `rows`) that holds a value."""
    if not layout.trailing_unnamed:
        return table
    column = table.column(len(layout.fields) - 1)
    filled = pc.fill_null(pc.greater(pc.binary_length(column), 0), False)
    if pc.any(filled).as_py():
        at = int(np.flatnonzero(filled.to_numpy(zero_copy_only=False))[0])
        raise DataFileError(
            path,
            f"the header gives column(s) {len(layout.fields)} (counting from 1) no name, but "
            f"data row {rows[at]} holds {column[at].as_py()!r} there",
            "name that column in the header row, or delete its values",
        )
    return table.remove_column(len(layout.fields) - 1)


def note_dropped_column(path: Path, layout: CsvLayout) -> None:
    """Warn (DataFileNote) that the unnamed, empty trailing column of `layout` was dropped."""
    if layout.trailing_unnamed:
        warnings.warn(
            DataFileNote(
                f"{path}: column {len(layout.fields)} has no name in the header and no value in "
                "any row (every line ends in the delimiter); it was left out"
            ),
            stacklevel=2,
        )


def check_declared_delimiter(
    path: Path, line: str, delimiter: str, expected: Collection[str] | None = None
) -> None:
    """Refuse a declared delimiter that leaves the header one field where the sniffed one
    splits it (into some `expected` names, when they are known)."""
    if len(_split_header(line, delimiter)) != 1:
        return
    other = sniff_delimiter(line)
    fields = _split_header(line, other)
    if other == delimiter or len(fields) < 2:
        return
    if expected is not None and (len(expected) < 2 or not set(fields) & set(expected)):
        return
    raise DataFileError(
        path,
        f"the header is delimited by {other!r}, not the declared {delimiter!r}",
        f"declare the delimiter {other!r} (--delimiter {other!r}), or leave "
        "--delimiter out to have it sniffed",
    )


def _csv_layout(path: Path, schema: TableSchema, delimiter: str | None, encoding: str) -> CsvLayout:
    """Refuse files that cannot be read as the declared CSV; the delimiter is sniffed from the
    header when None."""
    line = read_header_line(path, encoding)
    if delimiter is None:
        delimiter = sniff_delimiter(line)
    else:
        delimiter = csv_delimiter(path, delimiter)
        check_declared_delimiter(path, line, delimiter, schema.names)
    layout = header_layout(path, line, delimiter)
    check_columns(path, layout.names, schema)
    return layout


def read_raw(
    path: str | Path,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    max_rows: int | None = None,
) -> pa.Table:
    """The first `max_rows` rows as stored, unvalidated: text for CSV, stored types for Parquet.

    For schema inference. Rows that do not split into the header's fields are skipped, and a
    note (DataFileNote) counts those among the first `max_rows`; a delimiter of None is sniffed
    from the header.
    """
    path = Path(path)
    if _is_parquet(path):
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DataFileError(
                path, f"not a readable Parquet file ({exc})", "re-export it"
            ) from exc
        arrow_schema = pf.schema_arrow
        check_columns(path, list(arrow_schema.names), None)
        check_flat(path, arrow_schema)
        batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS)
    else:
        check_encoding(path, encoding)
        line = read_header_line(path, encoding)
        delimiter = csv_delimiter(path, delimiter) if delimiter else sniff_delimiter(line)
        layout = header_layout(path, line, delimiter)
        arrow_schema = pa.schema([(name, pa.string()) for name in layout.names])
        taken: list[pa.RecordBatch] = []
        count = broken = 0
        for table, rows, bad, _ in _csv_tables(path, layout, encoding):
            full = max_rows is not None and count + len(rows) >= max_rows
            keep = max_rows - count if max_rows is not None and full else len(rows)
            last = rows[keep - 1] if keep else 0
            broken += sum(1 for b in bad if not full or b.row < last)
            taken.extend(table.slice(0, keep).to_batches())
            count += keep
            if full:
                break
        note_dropped_column(path, layout)
        if broken:
            rows_text = "1 row" if broken == 1 else f"{broken} rows"
            were = "was" if broken == 1 else "were"
            message = f"{path}: {rows_text} with the wrong number of fields {were} left out"
            warnings.warn(DataFileNote(message), stacklevel=2)
        return pa.Table.from_batches(taken, schema=arrow_schema)
    return pa.Table.from_batches(_take_rows(batches, max_rows), schema=arrow_schema)


def _take_rows(batches: Any, max_rows: int | None) -> list[pa.RecordBatch]:
    taken: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        if max_rows is not None and count + batch.num_rows >= max_rows:
            taken.append(batch.slice(0, max_rows - count))
            break
        taken.append(batch)
        count += batch.num_rows
    return taken


def check_columns(path: Path, header: list[str], schema: TableSchema | None) -> None:
    """Refuse unnamed or repeated header names and, given a schema, missing or unexpected
    columns."""
    unnamed = [i for i, h in enumerate(header, start=1) if not h]
    if unnamed:
        raise DataFileError(
            path,
            f"the header gives column(s) {', '.join(map(str, unnamed))} (counting from 1) no name",
            "name every column in the header row (a leading or trailing delimiter leaves an "
            "empty name)",
        )
    repeated = sorted({h for h in header if header.count(h) > 1})
    if repeated:
        raise DataFileError(
            path, f"the header repeats column(s) {repeated}", "give every column a unique name"
        )
    if schema is None:
        return
    missing = [n for n in schema.names if n not in header]
    unexpected = [h for h in header if h not in schema.names]
    problems = []
    if missing:
        problems.append(f"missing column(s) {missing}")
    if unexpected:
        problems.append(f"unexpected column(s) {unexpected}")
    if problems:
        raise DataFileError(
            path,
            " and ".join(problems) + f" (schema {schema.name!r})",
            "rename the header to the schema's column names, drop extra columns, "
            "or update the schema (fedsynth schema infer proposes one)",
        )


def csv_delimiter(path: str | Path, delimiter: str) -> str:
    """The one ASCII character `delimiter` names; the escape '\\t' typed in a shell is a tab.

    DataFileError (naming --delimiter) for anything else the CSV parsers cannot split on.
    """
    value = _DELIMITER_ESCAPES.get(delimiter, delimiter)
    if len(value) != 1 or not value.isascii():
        raise DataFileError(
            path,
            f"the delimiter {delimiter!r} is not one ASCII character",
            "give --delimiter a single character, e.g. ',' ';' '|' or '\\t' for a tab",
        )
    if value in '"\r\n':
        raise DataFileError(
            path,
            f"the delimiter {delimiter!r} is a quote or a line break, which cannot separate fields",
            "give --delimiter the character between fields, e.g. ',' ';' '|' or '\\t' for a tab",
        )
    return value


def check_encoding(path: Path, encoding: str) -> None:
    """Refuse an encoding name Python does not know before any byte is read."""
    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise DataFileError(
            path,
            f"unknown text encoding {encoding!r}",
            "give --encoding a Python codec name, e.g. utf-8, latin-1 or cp1252",
        ) from exc


def check_flat(path: Path, arrow_schema: pa.Schema) -> None:
    """Refuse nested Parquet columns (lists, structs, maps): a cell must hold one value."""
    for column in arrow_schema:
        if pa.types.is_nested(column.type):
            raise DataFileError(
                path,
                f"column {column.name!r} holds nested values ({column.type}); nested columns "
                "are not supported",
                f"flatten {column.name!r} into plain columns with one value per cell (e.g. one "
                "column per element, or the values joined into text) and export again",
            )


def field_count_message(fields: int, expected: int) -> str:
    """Why a row that does not split into the header's fields is rejected."""
    return f"the row has {fields} field(s) where the header has {expected}"


def csv_read_error(path: Path, encoding: str, exc: Exception) -> DataFileError:
    if isinstance(exc, UnicodeDecodeError) or "UTF8" in str(exc):
        return _undecodable(path, encoding)
    return DataFileError(
        path,
        f"the CSV parser stopped: {exc}",
        "check quoting near the reported position (an unclosed quote swallows the rest)",
    )


def _undecodable(path: Path, encoding: str) -> DataFileError:
    """Locate the first byte that does not decode, for a message a person can act on."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset = 0
    line = 1
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                at = offset + exc.start
                line += chunk[: exc.start].count(b"\n")
                byte = chunk[exc.start : exc.start + 1].hex()
                return DataFileError(
                    path,
                    f"bytes that are not valid {encoding} at line {line}, byte offset {at} "
                    f"(0x{byte})",
                    "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t UTF-8) "
                    "or declare its real encoding (--encoding)",
                )
            offset += len(chunk)
            line += chunk.count(b"\n")
    return DataFileError(
        path,
        f"bytes that are not valid {encoding}",
        "re-encode the file as UTF-8 or declare its real encoding (--encoding)",
    )
