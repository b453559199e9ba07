"""A Parquet file written as CSV a batch of rows at a time, so that memory stays bounded by a
batch rather than the table, with the same text `pq.read_table(source).to_pandas()
.to_csv(index=False)` writes for the whole table at once.

pandas formats two kinds of column by the values of the whole column it is given, so a batch
alone would be written differently: an integer column holding a null anywhere becomes floats
("1.0"), and a timezone-naive datetime column shows dates only when every value is midnight,
else as many fraction digits (none, 3, 6 or 9) as its finest value needs. Both are settled for
the whole column first, in a pass over those columns alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from fedsynth.files import atomic_path

BATCH_ROWS = 65_536
"""Rows converted and written at a time: peak memory grows with this, not with the table."""

DAY_NS = 86_400 * 10**9
STEPS_NS = (DAY_NS, 10**9, 10**6, 10**3, 1)
"""The steps pandas tells datetimes apart by, coarsest first: dates only, then 0, 3, 6 or 9
fraction digits."""
UNIT_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def write_csv(source: Path, out: Path) -> None:
    """Write the Parquet file `source` to `out` as CSV (atomically: complete, or not at all)."""
    # Column chunks read in buffered slices, not whole: memory follows the batch, not the file.
    parquet = pq.ParquetFile(source, buffer_size=1 << 20, pre_buffer=False)
    nulls_in_ints, datetime_steps = _whole_column_formats(parquet)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as sink:
        # From the schema, so a table of no rows still gets its header.
        parquet.schema_arrow.empty_table().to_pandas().to_csv(sink, index=False)
        for batch in parquet.iter_batches(batch_size=BATCH_ROWS):
            frame = batch.to_pandas()
            for name in nulls_in_ints:
                if isinstance(frame[name].dtype, np.dtype) and frame[name].dtype.kind in "iu":
                    frame[name] = frame[name].astype("float64")
            for name, step in datetime_steps.items():
                frame[name] = _datetime_text(frame[name], step)
            frame.to_csv(sink, index=False, header=False)


def _whole_column_formats(parquet: pq.ParquetFile) -> tuple[set[str], dict[str, int]]:
    """The integer columns holding a null in some row, and for each timezone-naive datetime
    column not all at midnight, the coarsest step in STEPS_NS that all its values fall on."""
    fields = parquet.schema_arrow
    ints = [f.name for f in fields if pa.types.is_integer(f.type)]
    naive = [f.name for f in fields if pa.types.is_timestamp(f.type) and f.type.tz is None]
    nulls_in_ints: set[str] = set()
    steps = dict.fromkeys(naive, DAY_NS)
    if not ints and not naive:
        return nulls_in_ints, {}
    for batch in parquet.iter_batches(batch_size=BATCH_ROWS, columns=ints + naive):
        nulls_in_ints.update(name for name in ints if batch.column(name).null_count)
        for name in naive:
            steps[name] = min(steps[name], _coarsest_step_ns(batch.column(name)))
    return nulls_in_ints, {name: step for name, step in steps.items() if step < DAY_NS}


def _coarsest_step_ns(column: pa.Array) -> int:
    """The coarsest step in STEPS_NS that every value of a timestamp column falls on."""
    unit_ns = UNIT_NS[column.type.unit]
    values = pc.drop_null(column).cast(pa.int64()).to_numpy()
    return next(
        step for step in STEPS_NS if step >= unit_ns and not (values % (step // unit_ns)).any()
    )


def _datetime_text(column: pd.Series, step_ns: int) -> pd.Series:
    """A naive datetime column as pandas writes it when the whole column's finest value falls
    on `step_ns`: formatted with one extra value on that step, which sets the format."""
    widest = pd.Series([np.datetime64(step_ns, "ns")]).astype(column.dtype)
    text = pd.concat([column, widest], ignore_index=True).astype(str).iloc[:-1]
    text.index = column.index
    return text.where(column.notna())
