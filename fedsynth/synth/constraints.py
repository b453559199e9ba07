"""Declarative constraints that every sampled row must satisfy.

Each constraint is a pydantic model (written by people in YAML, carried in model files) with
`check_schema`, `bind` (the checked constraint with what it takes from the schema), `learn` (state
taken from the real rows, e.g. allowed combinations), `transform` (repairs rows where the
constraint allows it: clipping, reflection, swapping, one-hot argmax, recomputing a derived
column) and `holds` (the mask used for rejection sampling). Nulls pass every constraint but fixed
combinations, where null is one of the values, and derived columns, which are null exactly where
their expression is.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from fedsynth.expressions import Expression, ExpressionError, parse
from fedsynth.frame import DATETIME_DTYPE, category_texts, pandas_dtype
from fedsynth.schema import (
    BooleanColumn,
    CategoricalColumn,
    DatetimeColumn,
    NumericalColumn,
    TableSchema,
)
from fedsynth.validation import validate_column


class ConstraintError(ValueError):
    """A constraint that does not fit the schema, or that cannot be met."""


class ConstraintBase(BaseModel, ABC):
    """Common behaviour of every constraint; subclasses add fields and their checks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @property
    def label(self) -> str:
        fields = self.model_dump(
            mode="json", exclude={"kind", "combinations", "column_schema"}, exclude_none=True
        )
        return f"{self.kind}({', '.join(f'{k}={v!r}' for k, v in fields.items())})"  # type: ignore[attr-defined]

    def columns_used(self) -> list[str]:
        return []

    def check_schema(self, schema: TableSchema) -> None:
        for name in self.columns_used():
            if name not in schema.names:
                raise ConstraintError(f"{self.label}: no column {name!r}; columns: {schema.names}")
            if not schema.column(name).modelled:
                raise ConstraintError(f"{self.label}: column {name!r} is not modelled")

    def bind(self, schema: TableSchema) -> ConstraintBase:
        """This constraint checked against `schema`, holding what it needs of it at sampling."""
        self.check_schema(schema)
        return self

    def learn(self, df: pd.DataFrame) -> ConstraintBase:
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        return df

    @abstractmethod
    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """Mask of the rows that satisfy the constraint."""


def _ordered_kind(schema: TableSchema, label: str, name: str) -> None:
    if not isinstance(schema.column(name), NumericalColumn | DatetimeColumn):
        raise ConstraintError(f"{label}: column {name!r} must be numerical or datetime")


class Range(ConstraintBase):
    """Values of `column` lie in [min, max]; enforced by clipping."""

    kind: Literal["range"] = "range"
    column: str
    min: float | datetime | None = None
    max: float | datetime | None = None

    def columns_used(self) -> list[str]:
        return [self.column]

    @field_validator("min", "max")
    @classmethod
    def _naive_utc(cls, value: float | datetime | None) -> float | datetime | None:
        """A bound with a time zone becomes naive UTC, as `fedsynth.validation` reads cells."""
        if isinstance(value, datetime) and value.tzinfo is not None:
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def check_schema(self, schema: TableSchema) -> None:
        """Bounds must be of the column's kind (dates for a datetime column) and in order."""
        super().check_schema(schema)
        _ordered_kind(schema, self.label, self.column)
        if self.min is None and self.max is None:
            raise ConstraintError(f"{self.label}: give min, max or both")
        dated = isinstance(schema.column(self.column), DatetimeColumn)
        for side, bound in (("min", self.min), ("max", self.max)):
            if bound is None:
                continue
            if dated and not isinstance(bound, datetime):
                raise ConstraintError(
                    f"{self.label}: column {self.column!r} holds dates but {side} is the number "
                    f"{bound:g}; write a date, e.g. {side}: '2021-01-01'"
                )
            if not dated and isinstance(bound, datetime):
                raise ConstraintError(
                    f"{self.label}: column {self.column!r} is numerical but {side} is the date "
                    f"{bound.isoformat()}; write a number"
                )
            if not dated and not math.isfinite(bound):
                raise ConstraintError(f"{self.label}: {side} must be a finite number")
        if self.min is not None and self.max is not None and self.min > self.max:  # type: ignore[operator]
            raise ConstraintError(
                f"{self.label}: min {self.min} is above max {self.max}; swap them"
            )

    def _bounds(self, series: pd.Series) -> tuple[Any, Any]:
        if series.dtype.kind == "M":
            lo = None if self.min is None else pd.Timestamp(self.min)
            hi = None if self.max is None else pd.Timestamp(self.max)
            return lo, hi
        return self.min, self.max

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        series = df[self.column]
        lo, hi = self._bounds(series)
        if series.dtype == "Int64":
            lo = None if lo is None else int(np.ceil(lo))
            hi = None if hi is None else int(np.floor(hi))
        df[self.column] = series.clip(lo, hi)
        return df

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        series = df[self.column]
        lo, hi = self._bounds(series)
        ok = pd.Series(True, index=series.index)
        if lo is not None:
            ok &= (series >= lo).fillna(False)
        if hi is not None:
            ok &= (series <= hi).fillna(False)
        return (ok | series.isna()).to_numpy(dtype=bool)


class Positive(ConstraintBase):
    """Values of a numerical column are > 0 (or >= 0 when not strict); enforced by reflection."""

    kind: Literal["positive"] = "positive"
    column: str
    strict: bool = True

    def columns_used(self) -> list[str]:
        return [self.column]

    def check_schema(self, schema: TableSchema) -> None:
        super().check_schema(schema)
        if not isinstance(schema.column(self.column), NumericalColumn):
            raise ConstraintError(f"{self.label}: column {self.column!r} must be numerical")

    def _sign(self) -> int:
        return 1

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df[self.column] = df[self.column].abs() * self._sign()
        return df

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        signed = df[self.column] * self._sign()
        ok = signed > 0 if self.strict else signed >= 0
        return (ok.fillna(False) | signed.isna()).to_numpy(dtype=bool)


class Negative(Positive):
    """Values of a numerical column are < 0 (or <= 0 when not strict); enforced by reflection."""

    kind: Literal["negative"] = "negative"  # type: ignore[assignment]

    def _sign(self) -> int:
        return -1


class Inequality(ConstraintBase):
    """`high` >= `low` (or > when strict) on each row; enforced by swapping the two values."""

    kind: Literal["inequality"] = "inequality"
    low: str
    high: str
    strict: bool = False

    def columns_used(self) -> list[str]:
        return [self.low, self.high]

    def check_schema(self, schema: TableSchema) -> None:
        super().check_schema(schema)
        _ordered_kind(schema, self.label, self.low)
        _ordered_kind(schema, self.label, self.high)
        if type(schema.column(self.low)) is not type(schema.column(self.high)):
            raise ConstraintError(f"{self.label}: both columns must be of the same kind")

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        swap = (df[self.high] < df[self.low]).fillna(False).to_numpy(dtype=bool)
        if swap.any():
            low, high = df[self.low].copy(), df[self.high].copy()
            df.loc[swap, self.low] = high[swap]
            df.loc[swap, self.high] = low[swap]
        return df

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        low, high = df[self.low], df[self.high]
        ok = (high > low if self.strict else high >= low).fillna(False)
        return (ok | low.isna() | high.isna()).to_numpy(dtype=bool)


class FixedCombinations(ConstraintBase):
    """Only combinations of `columns` that occur in the real rows; enforced by rejection."""

    kind: Literal["fixed_combinations"] = "fixed_combinations"
    columns: list[str] = Field(min_length=2)
    combinations: list[list[str | None]] | None = Field(
        None, description="Learned from the real rows at fit; leave empty."
    )

    def columns_used(self) -> list[str]:
        return list(self.columns)

    def learn(self, df: pd.DataFrame) -> FixedCombinations:
        seen = sorted(set(self._keys(df)), key=lambda k: tuple("" if v is None else v for v in k))
        return self.model_copy(update={"combinations": [list(k) for k in seen]})

    def _keys(self, df: pd.DataFrame) -> list[tuple[str | None, ...]]:
        parts = [df[c].astype("object").where(df[c].notna(), None) for c in self.columns]
        return [
            tuple(None if v is None else str(v) for v in row) for row in zip(*parts, strict=True)
        ]

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        if self.combinations is None:
            raise ConstraintError(f"{self.label}: not learned; fit the synthesizer first")
        allowed = {tuple(k) for k in self.combinations}
        return np.fromiter((k in allowed for k in self._keys(df)), dtype=bool, count=len(df))


class OneHot(ConstraintBase):
    """Exactly one of `columns` (numerical 0/1 or boolean) is 1 on each row; argmax is kept."""

    kind: Literal["one_hot"] = "one_hot"
    columns: list[str] = Field(min_length=2)

    def columns_used(self) -> list[str]:
        return list(self.columns)

    def check_schema(self, schema: TableSchema) -> None:
        super().check_schema(schema)
        for name in self.columns:
            if not isinstance(schema.column(name), NumericalColumn | BooleanColumn):
                raise ConstraintError(f"{self.label}: column {name!r} must be numerical or boolean")

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        values = np.column_stack(
            [df[c].astype("Float64").to_numpy(np.float64, na_value=-np.inf) for c in self.columns]
        )
        winner = np.argmax(values, axis=1)
        for j, name in enumerate(self.columns):
            hot = winner == j
            if df[name].dtype == "boolean":
                df[name] = pd.array(hot, dtype="boolean")
            else:
                df[name] = pd.Series(hot.astype(np.int64), index=df.index).astype(df[name].dtype)
        return df

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        values = np.column_stack(
            [df[c].astype("Float64").to_numpy(np.float64, na_value=np.nan) for c in self.columns]
        )
        binary = np.all((values == 0) | (values == 1), axis=1)
        return binary & (np.nansum(values, axis=1) == 1)


class Predicate(ConstraintBase):
    """A custom row predicate such as ``"age >= 18 or guardian == 'yes'"``; by rejection."""

    kind: Literal["predicate"] = "predicate"
    expression: str = Field(min_length=1)

    def check_schema(self, schema: TableSchema) -> None:
        _parsed(self.label, self.expression, [c.name for c in schema.modelled_columns])

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """Rows where the predicate is true; a null result counts as not holding."""
        parsed = _parsed(self.label, self.expression, list(df.columns))
        result = _evaluate(self.label, parsed, df)
        return result.astype("boolean").fillna(False).to_numpy(dtype=bool)


DerivedColumn = Annotated[
    NumericalColumn | CategoricalColumn | BooleanColumn | DatetimeColumn,
    Field(discriminator="kind"),
]


class Derived(ConstraintBase):
    """`column` is `expression` computed on the same row, e.g. ``age(birth_date, "2024-06-30")``.

    After sampling the column is recomputed from the expression, so every row is consistent; a
    row whose recomputed value breaks the column's schema (bounds, domain, nulls) is rejected.
    The column stays modelled at fit: every model, the federated statistics and DP budgets then
    see the schema's columns unchanged, and the model keeps the column's correlations with the
    others (which shape the expression's inputs); only its sampled value is overwritten. Leaving
    it out would spare a DP model the budget it spends on the column, at the price of a second
    schema for every model and for the statistics suppliers exchange.
    """

    kind: Literal["derived"] = "derived"
    column: str
    expression: str = Field(min_length=1)
    column_schema: DerivedColumn | None = Field(
        None, description="The column's schema, copied from the table schema at fit; leave empty."
    )

    def columns_used(self) -> list[str]:
        return [self.column, *sorted(self._parsed().columns)]

    def _parsed(self) -> Expression:
        try:
            return parse(self.expression)
        except ExpressionError as exc:
            raise ConstraintError(f"{self.label}: {exc}") from exc

    def check_schema(self, schema: TableSchema) -> None:
        """The expression parses, reads modelled columns other than `column`, which it fills."""
        if self.column in self._parsed().columns:
            raise ConstraintError(
                f"{self.label}: column {self.column!r} cannot be derived from itself; write its "
                "value from the other columns"
            )
        super().check_schema(schema)

    def bind(self, schema: TableSchema) -> Derived:
        """Checked, and holding the column's schema: values are rounded and held to it."""
        self.check_schema(schema)
        return self.model_copy(update={"column_schema": schema.column(self.column)})

    def _target(self) -> DerivedColumn:
        if self.column_schema is None:
            raise ConstraintError(f"{self.label}: not bound to a schema; fit the synthesizer first")
        return self.column_schema

    def _expected(self, df: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
        """The expression's value per row, typed and rounded as the column's schema says, and
        the mask of the values the schema accepts (nulls count as accepted if nullable)."""
        target = self._target()
        raw = _evaluate(self.label, self._parsed(), df)
        value = _as_kind(raw, target, self.label)
        codes = validate_column(pa.array(value, from_pandas=True), target).codes
        return value, codes == 0

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Overwrite the column with the expression's value (null where the schema refuses it)."""
        value, valid = self._expected(df)
        kept = value.where(valid)
        if isinstance(self._target(), CategoricalColumn):
            kept = kept.astype("object")
        df[self.column] = kept.astype(pandas_dtype(self._target()))
        return df

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """Rows whose column equals the expression's value and where that value fits the schema."""
        value, valid = self._expected(df)
        actual = df[self.column]
        if isinstance(self._target(), CategoricalColumn | BooleanColumn):
            actual, value = actual.astype("string"), value.astype("string")
        elif isinstance(self._target(), NumericalColumn):
            actual = actual.astype("Float64")
        same = (actual == value).astype("boolean").fillna(False).to_numpy(dtype=bool)
        both_null = (actual.isna() & value.isna()).to_numpy(dtype=bool)
        return valid & (same | both_null)


def _parsed(label: str, expression: str, columns: list[str]) -> Expression:
    """`expression` parsed; ConstraintError when it is not allowed or names other columns."""
    try:
        parsed = parse(expression)
    except ExpressionError as exc:
        raise ConstraintError(f"{label}: {exc}") from exc
    unknown = sorted(parsed.columns - set(columns))
    if unknown:
        raise ConstraintError(
            f"{label}: expression {expression!r} names {unknown}, which are not modelled "
            f"columns; columns: {columns}"
        )
    return parsed


def _evaluate(label: str, parsed: Expression, df: pd.DataFrame) -> pd.Series:
    """`parsed` on the rows of `df`, with categories read as their text values."""
    frame = {
        name: df[name].astype("object")
        if isinstance(df[name].dtype, pd.CategoricalDtype)
        else df[name]
        for name in parsed.columns
    }
    try:
        return parsed.evaluate(pd.DataFrame(frame, index=df.index))
    except ExpressionError as exc:
        raise ConstraintError(f"{label}: {exc}") from exc


def _as_kind(values: pd.Series, column: DerivedColumn, label: str) -> pd.Series:
    """Expression values as the column's kind: numbers rounded to its dtype or decimals, dates
    to microseconds, categories as their text; ConstraintError when the kinds differ."""
    empty = bool(values.isna().all())
    dtype = values.dtype
    if isinstance(column, NumericalColumn):
        if not empty and (
            pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype)
        ):
            raise ConstraintError(f"{label}: gives {dtype} values, but the column holds numbers")
        numbers = values.astype("Float64")
        decimals = 0 if column.dtype == "int" else column.decimals
        return numbers if decimals is None else numbers.round(decimals)
    if isinstance(column, DatetimeColumn):
        if not empty and not pd.api.types.is_datetime64_any_dtype(dtype):
            raise ConstraintError(f"{label}: gives {dtype} values, but the column holds dates")
        return pd.to_datetime(values).astype(DATETIME_DTYPE)
    if isinstance(column, BooleanColumn):
        if not empty and not pd.api.types.is_bool_dtype(dtype):
            raise ConstraintError(f"{label}: gives {dtype} values, but the column is boolean")
        return values.astype("boolean")
    return category_texts(values).astype("string")


Constraint = Annotated[
    Range | Positive | Negative | Inequality | FixedCombinations | OneHot | Predicate | Derived,
    Field(discriminator="kind"),
]
_ADAPTER: TypeAdapter[list[Constraint]] = TypeAdapter(list[Constraint])


def parse_constraints(items: list[Any], *, source: str = "constraints") -> list[ConstraintBase]:
    """Validate a list of constraint documents (dicts or models) into constraint objects."""
    raw = [c.model_dump() if isinstance(c, BaseModel) else c for c in items]
    try:
        return list(_ADAPTER.validate_python(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"item {'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()
        )
        raise ConstraintError(f"{source}: {problems}") from exc


def dump_constraints(constraints: list[ConstraintBase]) -> list[dict[str, Any]]:
    return [c.model_dump(mode="json", exclude_none=True) for c in constraints]
