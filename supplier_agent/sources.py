"""Reading a configured source as the supplier's own rows, every value as text for preparation."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, datetime
from typing import TYPE_CHECKING

import pandas as pd

from fedsynth.prep.source import SourceFileError, read_raw
from supplier_agent.config import FileSource, SqlSource

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

SQL_CHUNK_ROWS = 50_000
_FLAG = re.compile(r"--(delimiter|encoding)( '[^']*'| utf-8\b)?")
"""The reader names its command-line options; the agent's config names the same as fields."""
_DIALECT_PACKAGES = {
    "duckdb": "duckdb-engine",
    "postgresql": "psycopg[binary]",
    "mysql": "pymysql",
    "mariadb": "pymysql",
    "mssql": "pyodbc",
    "oracle": "oracledb",
    "snowflake": "snowflake-sqlalchemy",
    "bigquery": "sqlalchemy-bigquery",
}
"""The package that gives SQLAlchemy a dialect it does not ship, or the driver it defaults to."""


class SourceError(ValueError):
    """A source that cannot be read; says which one and why."""


def read_source(source: FileSource | SqlSource) -> pd.DataFrame:
    """The source's rows with its own column names, values as text: a file as `fedsynth prep
    run` reads it (rows that are not records travel along for the quarantine, a file it cannot
    read is refused in its words, naming the config field to fix); empty cells are None, from a
    file as from SQL."""
    if isinstance(source, FileSource):
        try:
            rows = read_raw(source.path, delimiter=source.delimiter, encoding=source.encoding)
        except SourceFileError as exc:
            raise SourceError(_FLAG.sub(lambda m: _config_field(m, source), str(exc))) from exc
        return rows.where(rows.ne(""), None)
    return pd.concat(list(iter_sql(source)), ignore_index=True)


def _config_field(flag: re.Match[str], source: FileSource) -> str:
    """The config field (and value) of `source` that a reader's --option (value) names."""
    key = source.field(flag.group(1))
    return f"{key}:{flag.group(2)}" if flag.group(2) else key


def iter_sql(source: SqlSource) -> Iterator[pd.DataFrame]:
    """Stream a SQL source in chunks of text values (bounded memory for large tables)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = open_engine(source)
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


def open_engine(source: SqlSource) -> Engine:
    """A SQLAlchemy engine on the source's database. SourceError when it cannot be one: a
    database file that is not there (connecting would create an empty one), or a dialect or
    driver that is not installed (named, with the package that provides it)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import NoSuchModuleError

    url = make_url(source.url)
    shown = url.render_as_string(hide_password=True)
    database = source.database_file()
    if database is not None and not database.is_file():
        raise SourceError(
            f"SQL source {shown}: no database file at {database}; fix the path in the URL (a "
            "relative one is taken from the agent config's folder)"
        )
    package = _DIALECT_PACKAGES.get(url.get_backend_name())
    install = (
        f"run `pip install {package}` in the agent's Python environment"
        if package
        else f"install the SQLAlchemy dialect package for {url.get_backend_name()!r} in the "
        "agent's Python environment"
    )
    try:
        return create_engine(source.resolved_url())
    except NoSuchModuleError as exc:
        raise SourceError(
            f"SQL source {shown}: SQLAlchemy has no dialect {url.drivername!r} installed; {install}"
        ) from exc
    except ImportError as exc:
        raise SourceError(
            f"SQL source {shown}: the {url.drivername!r} driver needs the Python module "
            f"{exc.name!r}, which is not installed; {install}, or name an installed driver in "
            "the URL (dialect+driver://)"
        ) from exc


def check_sql(source: SqlSource) -> None:
    """Connect to the source's database once and leave; SourceError saying why it cannot be
    read (see `open_engine`), or what the database answered."""
    from sqlalchemy.exc import SQLAlchemyError

    engine = open_engine(source)
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        shown = engine.url.render_as_string(hide_password=True)
        answer = " ".join(str(getattr(exc, "orig", None) or exc).split())
        raise SourceError(
            f"SQL source {shown}: cannot connect ({answer}); check the host, database, user and "
            "password_env"
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
