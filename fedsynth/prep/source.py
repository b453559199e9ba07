"""Reading a source's own file as plain strings: its columns are not the common schema's yet."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


class SourceFileError(ValueError):
    """A source file that cannot be read; names the file and the fix."""


def read_raw(path: str | Path) -> pd.DataFrame:
    """Every column of a CSV or Parquet file as text (None for empty Parquet cells)."""
    path = Path(path)
    if not path.is_file():
        raise SourceFileError(f"{path}: no such file; give the path of a CSV or Parquet file")
    if path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path)
        columns = {
            name: table.column(name).cast(pa.string()).to_pylist() for name in table.column_names
        }
        return pd.DataFrame(columns, dtype=object)
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise SourceFileError(
            f"{path}: not a readable UTF-8 CSV file ({exc}); re-export it as UTF-8 CSV"
        ) from exc
