"""How much memory a Parquet table takes once decoded, counted before it is.

A few kB of Parquet can declare millions of rows or a dictionary value repeated on every row;
whoever reads a table from another party (the broker a supplier's rows, a site a broker's
candidate) opens text columns dictionary-encoded and counts each batch's decoded size first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedsynth.io import PARQUET_BATCH_ROWS


class TableTooLarge(ValueError):
    """A table that would take more memory decoded than the reader allows."""


def is_text(kind: pa.DataType) -> bool:
    """Whether a column of `kind` holds strings or bytes (whose cells can be any length)."""
    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_binary,
            pa.types.is_large_binary,
        )
    )


def open_dictionary_encoded(path: Path) -> pq.ParquetFile:
    """The Parquet file at `path` with its text columns kept dictionary-encoded, so no cell is
    expanded before `bounded_batches` has counted it."""
    texts = [f.name for f in pq.ParquetFile(path).schema_arrow if is_text(f.type)]
    return pq.ParquetFile(path, read_dictionary=texts)


def decoded_bytes(array: pa.Array) -> int:
    """The bytes `array` takes once its dictionary, if any, is expanded."""
    if not pa.types.is_dictionary(array.type):
        return int(array.nbytes)
    values = array.dictionary
    if not is_text(values.type):
        return len(array) * max(values.type.bit_width // 8, 1)
    lengths = pc.binary_length(values).take(array.indices)
    return int(pc.sum(lengths).as_py() or 0) + 8 * len(array)


def bounded_batches(found: pq.ParquetFile, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """The file's batches, TableTooLarge once they would take more than `max_bytes` decoded."""
    total = 0
    for batch in found.iter_batches(batch_size=PARQUET_BATCH_ROWS):
        total += sum(decoded_bytes(array) for array in batch.columns)
        if total > max_bytes:
            raise TableTooLarge(f"the rows take more than {max_bytes} bytes decoded")
        yield batch
