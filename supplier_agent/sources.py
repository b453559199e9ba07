"""Reading a configured source as the supplier's own rows, every value as text for preparation."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime

import pandas as pd

from fedsynth.prep.source import SourceFileError, read_raw
from supplier_agent.config import FileSource, SqlSource

SQL_CHUNK_ROWS = 50_000


class SourceError(ValueError):
    """A source that cannot be read; says which one and why."""


def read_source(source: FileSource | SqlSource) -> pd.DataFrame:
    """The source's rows with its own column names, values as text: a file as `fedsynth prep
    run` reads it (rows that are not records travel along for the quarantine); empty cells are
    None, from a file as from SQL."""
    if isinstance(source, FileSource):
        try:
            rows = read_raw(source.path, delimiter=source.delimiter, encoding=source.encoding)
        except SourceFileError as exc:
            raise SourceError(str(exc)) from exc
        return rows.where(rows.ne(""), None)
    return pd.concat(list(iter_sql(source)), ignore_index=True)


def iter_sql(source: SqlSource) -> Iterator[pd.DataFrame]:
    """Stream a SQL source in chunks of text values (bounded memory for large tables)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    engine = create_engine(source.resolved_url())
    shown = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as conn:
            chunks = pd.read_sql_query(
                text(source.query), conn, chunksize=SQL_CHUNK_ROWS, dtype_backend="pyarrow"
            )
            empty = True
            for chunk in chunks:
                empty = False
                yield _as_text(chunk)
            if empty:
                yield pd.DataFrame()
    except SQLAlchemyError as exc:
        raise SourceError(
            f"SQL source {shown}: {exc.__class__.__name__}: {getattr(exc, 'orig', None) or exc}"
        ) from exc
    finally:
        engine.dispose()


def _as_text(df: pd.DataFrame) -> pd.DataFrame:
    """Every value as the text a person would write; integers exactly, whatever their size
    (columns are Arrow-typed, so a null does not turn 17-digit ids into floats)."""
    out = {}
    for name in df.columns:
        series = df[name]
        if pd.api.types.is_integer_dtype(series.dtype):
            text = series.astype("string[pyarrow]")
        else:
            text = series.map(_text, na_action="ignore")
        out[str(name)] = text.astype(object).where(series.notna(), None)
    return pd.DataFrame(out, index=df.index)


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ").removesuffix(" 00:00:00")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
