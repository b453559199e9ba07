"""The typed pandas form of a table: one dtype per column kind, shared by IO, models and audits.

| kind        | pandas dtype                                   |
|-------------|------------------------------------------------|
| numerical   | ``Int64`` (dtype int) or ``float64``            |
| categorical | ``CategoricalDtype(domain)``, categories in declared order |
| boolean     | ``boolean`` (nullable)                          |
| datetime    | ``datetime64[us]`` (naive)                      |
| identifier  | ``string``                                      |
| text        | ``string``                                      |
"""

from __future__ import annotations

import pandas as pd

from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    Column,
    DatetimeColumn,
    NumericalColumn,
    TableSchema,
)

DATETIME_DTYPE = "datetime64[us]"


def pandas_dtype(column: Column) -> object:
    """The pandas dtype that holds values of `column`."""
    if isinstance(column, NumericalColumn):
        return "Int64" if column.dtype == "int" else "float64"
    if isinstance(column, CategoricalColumn):
        return pd.CategoricalDtype(categories=column.domain, ordered=False)
    if isinstance(column, BooleanColumn):
        return "boolean"
    if isinstance(column, DatetimeColumn):
        return DATETIME_DTYPE
    return "string"


def conform(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Return `df` with the schema's columns, in schema order, cast to their pandas dtypes.

    Values must already be valid (use `fedsynth.io` to validate untrusted data); a value that
    does not fit raises ValueError naming the column.
    """
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(f"frame lacks schema columns {missing}")
    out = {}
    for column in schema.columns:
        series = df[column.name]
        try:
            out[column.name] = _cast(series, column)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"column {column.name!r}: cannot hold {column.kind} values: {exc}"
            ) from exc
    return pd.DataFrame(out, index=df.index)


def _cast(series: pd.Series, column: Column) -> pd.Series:
    dtype = pandas_dtype(column)
    if isinstance(column, NumericalColumn) and column.dtype == "int":
        if pd.api.types.is_float_dtype(series.dtype):
            series = series.round()
        return series.astype("Int64")
    if isinstance(column, CategoricalColumn):
        if not isinstance(series.dtype, pd.CategoricalDtype):
            series = category_texts(series)
        values = series.astype("object")
        unknown = set(values.dropna().unique()) - set(column.domain)
        if unknown:
            raise ValueError(f"values outside the domain: {sorted(map(str, unknown))[:10]}")
        return values.astype(dtype)
    if isinstance(column, DatetimeColumn):
        return pd.to_datetime(series).astype(DATETIME_DTYPE)
    return series.astype(dtype)


def category_texts(series: pd.Series) -> pd.Series:
    """Each value as the text a categorical domain lists (1.0 -> "1", True -> "true"); missing
    values stay missing. Text columns, the usual case, pass through without a Python loop."""
    if pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty"):
        return series
    return series.map(category_text, na_action="ignore")


def category_text(value: object) -> str:
    """One value as domain text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
