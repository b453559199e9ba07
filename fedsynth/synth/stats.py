"""Mergeable sufficient statistics: what a supplier sends so that a broker can fit a copula.

Fitting runs in two rounds, each a sum over rows, so statistics from k parties add up exactly to
those of the pooled table. Round one ("marginal") counts values on bins derived from the public
schema, plus nulls. Round two ("dependence") sums products of normal scores computed with the
marginals fitted from the merged round-one statistics.

Statistics cross party boundaries, so a reader checks more than shape: counts are whole numbers
of rows, every column counts the same rows, totals stay within a bound, and the arrays may not
be larger than the schema allows, checked before they are inflated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fedsynth.schema import Column, DatetimeColumn, NumericalColumn, TableSchema
from fedsynth.synth.artifact import Artifact, ArtifactError
from fedsynth.synth.encoding import (
    bounds,
    cardinality,
    encode,
    is_discrete,
    observed_decimals,
    observed_step,
)

FINE_BINS = 512
MAX_INTEGER_BINS = 2048
MAX_EDGES = max(FINE_BINS + 1, MAX_INTEGER_BINS + 3)
"""The most bin edges `column_edges` gives a column (an integer range of 2048 with open ends)."""
STATS_MODEL = "sufficient-stats"
MAX_PARTY_ROWS = float(2**40)
"""Default bound on the rows one party's statistics count (about 1.1e12): above any real table,
and low enough that the whole counts of 2^13 such parties still add up exactly in float64."""
EXACT_ROWS = float(2**53)
"""float64 counts whole rows exactly only below this, so merged totals must stay under it."""
SCORE_BOUND = 40.0
"""Normal scores are ndtri of a probability in (0, 1): in float64 they lie within +-38.5."""


class StatsError(ValueError):
    """Statistics that cannot be computed or merged; the message names the column and the fix."""


@dataclass(frozen=True)
class ColumnStats:
    """Round-one statistics of one column: counts per code or per public bin, and nulls."""

    name: str
    null_count: float
    counts: np.ndarray
    edges: np.ndarray | None
    decimals: int
    whole_days: bool

    @property
    def count(self) -> float:
        return float(self.counts.sum())

    def merge(self, other: ColumnStats) -> ColumnStats:
        if self.name != other.name or self.counts.shape != other.counts.shape:
            raise StatsError(f"column {self.name!r}: statistics have different shapes")
        if (self.edges is None) != (other.edges is None) or (
            self.edges is not None and not np.array_equal(self.edges, other.edges)
        ):
            raise StatsError(
                f"column {self.name!r}: the parties used different bins; bins come from the "
                "schema's min/max, so every party must use the same schema"
            )
        merged = replace(
            self,
            null_count=self.null_count + other.null_count,
            counts=self.counts + other.counts,
            decimals=max(self.decimals, other.decimals),
            whole_days=self.whole_days and other.whole_days,
        )
        _check_exact(f"column {self.name!r}", merged.count + merged.null_count)
        return merged


@dataclass(frozen=True)
class DependenceStats:
    """Round-two statistics: pairwise-complete sums of normal scores and of their products.

    Entry [i, j] of each matrix sums over the rows where variables i and j are both non-null:
    the row count, the sum of z_i, the sum of z_i squared, and the sum of z_i * z_j.
    """

    variables: list[str]
    marginals_digest: str
    n: float
    pair_n: np.ndarray
    pair_sum: np.ndarray
    pair_sum_sq: np.ndarray
    sum_zz: np.ndarray

    @classmethod
    def of_scores(cls, variables: list[str], digest: str, z: np.ndarray) -> DependenceStats:
        """Sums over the rows of `z` (NaN where a value is null)."""
        present = (~np.isnan(z)).astype(np.float64)
        filled = np.nan_to_num(z, nan=0.0)
        return cls(
            variables=variables,
            marginals_digest=digest,
            n=float(z.shape[0]),
            pair_n=present.T @ present,
            pair_sum=filled.T @ present,
            pair_sum_sq=(filled**2).T @ present,
            sum_zz=filled.T @ filled,
        )

    def merge(self, other: DependenceStats) -> DependenceStats:
        if self.variables != other.variables or self.marginals_digest != other.marginals_digest:
            raise StatsError(
                "dependence statistics were computed against different marginals; every party "
                "must use the marginals fitted from the same merged round-one statistics"
            )
        _check_exact("dependence statistics", self.n + other.n)
        return replace(
            self,
            n=self.n + other.n,
            pair_n=self.pair_n + other.pair_n,
            pair_sum=self.pair_sum + other.pair_sum,
            pair_sum_sq=self.pair_sum_sq + other.pair_sum_sq,
            sum_zz=self.sum_zz + other.sum_zz,
        )


@dataclass(frozen=True)
class SufficientStats:
    """Statistics of one round, for one table schema; `merge` adds another party's."""

    schema: TableSchema
    phase: Literal["marginal", "dependence"]
    columns: dict[str, ColumnStats]
    dependence: DependenceStats | None = None

    def merge(self, other: SufficientStats) -> SufficientStats:
        """The statistics of both tables pooled; StatsError if they do not describe the same job."""
        if self.schema != other.schema:
            raise StatsError("statistics describe different schemas; merge needs the same schema")
        if self.phase != other.phase:
            raise StatsError(f"cannot merge {self.phase} statistics with {other.phase} statistics")
        if self.phase == "dependence":
            assert self.dependence is not None and other.dependence is not None
            return replace(self, dependence=self.dependence.merge(other.dependence))
        merged = {name: stats.merge(other.columns[name]) for name, stats in self.columns.items()}
        return replace(self, columns=merged)

    def to_artifact(self) -> Artifact:
        arrays: dict[str, np.ndarray] = {}
        columns = []
        for i, stats in enumerate(self.columns.values()):
            arrays[f"counts_{i}"] = stats.counts
            if stats.edges is not None:
                arrays[f"edges_{i}"] = stats.edges
            columns.append(
                {
                    "name": stats.name,
                    "null_count": stats.null_count,
                    "decimals": stats.decimals,
                    "whole_days": stats.whole_days,
                    "binned": stats.edges is not None,
                }
            )
        body: dict[str, Any] = {
            "schema": self.schema.to_dict(),
            "phase": self.phase,
            "columns": columns,
        }
        if self.dependence is not None:
            body["dependence"] = {
                "variables": self.dependence.variables,
                "marginals_digest": self.dependence.marginals_digest,
                "n": self.dependence.n,
            }
            for name in _PAIR_ARRAYS:
                arrays[name] = getattr(self.dependence, name)
        return Artifact(kind="stats", model=STATS_MODEL, body=body, arrays=arrays)

    def to_bytes(self) -> bytes:
        return self.to_artifact().to_bytes()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        source: str = "<bytes>",
        schema: TableSchema | None = None,
        max_rows: float = MAX_PARTY_ROWS,
    ) -> SufficientStats:
        """Read statistics another party sent, then check them as `from_artifact` does.

        Their arrays may take no more bytes than statistics of the schema can hold (the
        expected `schema` if given, else the one they declare), checked before inflating them.
        """
        artifact = Artifact.from_bytes(
            data,
            source=source,
            max_array_bytes=lambda header: _max_array_bytes(header.body, schema, source),
        )
        return cls.from_artifact(artifact, source=source, schema=schema, max_rows=max_rows)

    @classmethod
    def from_artifact(
        cls,
        artifact: Artifact,
        *,
        source: str = "<artifact>",
        schema: TableSchema | None = None,
        max_rows: float = MAX_PARTY_ROWS,
    ) -> SufficientStats:
        """Rebuild and validate statistics received from another party.

        Beyond shapes: counts are whole numbers, every column counts the same rows (values plus
        nulls), at least one and at most `max_rows`, and dependence sums are ones that normal
        scores of n rows can add up to; with `schema`, they must describe that schema.
        """
        if artifact.kind != "stats" or artifact.model != STATS_MODEL:
            raise ArtifactError(f"{source}: holds a {artifact.model!r} model, not statistics")
        body = _body(artifact.body, source)
        declared = TableSchema.from_dict(body.schema_, source=source)
        if schema is not None and declared != schema:
            raise ArtifactError(
                f"{source}: statistics describe a schema other than the expected {schema.name!r}"
            )
        schema = declared
        expected = [c.name for c in schema.modelled_columns]
        if body.phase == "marginal" and [c.name for c in body.columns] != expected:
            raise ArtifactError(f"{source}: statistics columns do not match the schema {expected}")
        columns = {}
        if body.phase == "dependence" and body.columns:
            raise ArtifactError(f"{source}: dependence statistics carry no column counts")
        described = schema.modelled_columns if body.phase == "marginal" else []
        for i, (meta, column) in enumerate(zip(body.columns, described, strict=True)):
            counts = _array(artifact, f"counts_{i}", source)
            edges = _array(artifact, f"edges_{i}", source) if meta.binned else None
            _check_counts(column, counts, edges, meta.null_count, max_rows, source)
            columns[meta.name] = ColumnStats(
                meta.name, meta.null_count, counts, edges, meta.decimals, meta.whole_days
            )
        _check_rows({n: c.count + c.null_count for n, c in columns.items()}, max_rows, source)
        dependence = None
        if body.dependence is not None:
            pairs = {name: _array(artifact, name, source) for name in _PAIR_ARRAYS}
            _check_dependence(body.dependence, pairs, len(expected), max_rows, source)
            dependence = DependenceStats(
                body.dependence.variables,
                body.dependence.marginals_digest,
                body.dependence.n,
                **pairs,
            )
        if (body.phase == "dependence") != (dependence is not None):
            raise ArtifactError(f"{source}: phase {body.phase!r} does not match its content")
        return cls(schema=schema, phase=body.phase, columns=columns, dependence=dependence)


def column_edges(column: Column, values: np.ndarray | None = None) -> np.ndarray | None:
    """Public bin edges of a continuous column (None for a discrete one).

    Edges come from the schema's min/max. When the schema leaves a bound open, `values` (the
    data of a central fit) fill it; without them StatsError asks for declared bounds.
    """
    if is_discrete(column):
        return None
    lo, hi = bounds(column)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        finite = np.empty(0) if values is None else values[np.isfinite(values)]
        if finite.size == 0:
            raise StatsError(
                f"column {column.name!r}: no declared min/max; statistics that parties merge use "
                "bins from public bounds, so declare min and max for it in the schema"
            )
        lo = lo if np.isfinite(lo) else float(finite.min())
        hi = hi if np.isfinite(hi) else float(finite.max())
    if hi <= lo:
        hi = lo + 1.0
    integer = isinstance(column, NumericalColumn) and column.dtype == "int"
    if integer and hi - lo <= MAX_INTEGER_BINS:
        return np.arange(np.floor(lo), np.ceil(hi) + 2.0) - 0.5
    return np.linspace(lo, hi, FINE_BINS + 1)


def schema_edges(
    schema: TableSchema, df: pd.DataFrame | None = None
) -> dict[str, np.ndarray | None]:
    """Bin edges of every modelled column; `df` fills bounds the schema leaves open."""
    return {
        c.name: column_edges(c, None if df is None else encode(df[c.name], c))
        for c in schema.modelled_columns
    }


def marginal_stats(
    df: pd.DataFrame, schema: TableSchema, edges: dict[str, np.ndarray | None]
) -> SufficientStats:
    """Round one: per-column counts on the given public bins, nulls and rounding."""
    columns = {}
    for column in schema.modelled_columns:
        values = encode(df[column.name], column)
        present = values[~np.isnan(values)]
        col_edges = edges[column.name]
        if col_edges is None:
            counts = np.bincount(present.astype(int), minlength=cardinality(column))
        else:
            clipped = np.clip(present, col_edges[0], col_edges[-1])
            counts, _ = np.histogram(clipped, bins=col_edges)
        columns[column.name] = ColumnStats(
            name=column.name,
            null_count=float(values.size - present.size),
            counts=counts.astype(np.float64),
            edges=None if col_edges is None else np.asarray(col_edges, dtype=np.float64),
            decimals=observed_decimals(present) if isinstance(column, NumericalColumn) else 0,
            whole_days=isinstance(column, DatetimeColumn) and observed_step(present) > 1.0,
        )
    return SufficientStats(schema=schema, phase="marginal", columns=columns)


_PAIR_ARRAYS = ("pair_n", "pair_sum", "pair_sum_sq", "sum_zz")


class _ColumnMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    null_count: float = Field(ge=0, allow_inf_nan=False)
    decimals: int = Field(ge=0, le=15)
    whole_days: bool
    binned: bool


class _DependenceMeta(BaseModel):
    model_config = ConfigDict(extra="forbid")
    variables: list[str] = Field(min_length=1)
    marginals_digest: str
    n: float = Field(gt=0, allow_inf_nan=False)


class _StatsBody(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    schema_: dict[str, Any] = Field(alias="schema")
    phase: Literal["marginal", "dependence"]
    columns: list[_ColumnMeta]
    dependence: _DependenceMeta | None = None


def _body(data: dict[str, Any], source: str) -> _StatsBody:
    try:
        return _StatsBody.model_validate(data)
    except ValidationError as exc:
        raise ArtifactError(f"{source}: invalid statistics: {exc}") from exc


def _max_array_bytes(data: dict[str, Any], expected: TableSchema | None, source: str) -> int:
    """The most bytes the arrays of honest statistics of this schema take, as float64.

    Round one: each column's code counts, or at most MAX_EDGES edges and their bins' counts.
    Round two: four d x d matrices, at most two variables (value, null indicator) per column.
    """
    body = _body(data, source)
    schema = expected or TableSchema.from_dict(body.schema_, source=source)
    columns = schema.modelled_columns
    if body.dependence is None:
        cells = sum(cardinality(c) if is_discrete(c) else 2 * MAX_EDGES for c in columns)
    else:
        d = min(len(body.dependence.variables), 2 * len(columns))
        cells = len(_PAIR_ARRAYS) * d * d
    return cells * np.dtype(np.float64).itemsize


def _array(artifact: Artifact, name: str, source: str) -> np.ndarray:
    try:
        array = artifact.arrays[name]
    except KeyError as exc:
        raise ArtifactError(f"{source}: array {name!r} is missing") from exc
    if array.dtype.kind not in "fiu" or not np.all(np.isfinite(array)):
        raise ArtifactError(f"{source}: array {name!r} must hold finite numbers")
    return array.astype(np.float64)


def _check_counts(
    column: Column,
    counts: np.ndarray,
    edges: np.ndarray | None,
    null_count: float,
    max_rows: float,
    src: str,
) -> None:
    """One column's counts: a vector of whole, non-negative numbers of rows on its codes or bins."""
    where = f"{src}: column {column.name!r}"
    if counts.ndim != 1 or np.any(counts < 0):
        raise ArtifactError(f"{where}: counts must be a non-negative vector")
    if np.any(counts > max_rows) or null_count > max_rows:
        raise ArtifactError(f"{where}: a count is above the limit of {max_rows:g} rows")
    if not (_whole(counts) and _whole(null_count)):
        raise ArtifactError(f"{where}: counts of rows must be whole numbers")
    if edges is not None and edges.size > MAX_EDGES:
        raise ArtifactError(f"{where}: {edges.size} bin edges; bins have at most {MAX_EDGES}")
    if is_discrete(column):
        if edges is not None or counts.size != cardinality(column):
            raise ArtifactError(
                f"{src}: column {column.name!r}: expected {cardinality(column)} code counts"
            )
    elif edges is None or edges.size != counts.size + 1 or np.any(np.diff(edges) <= 0):
        raise ArtifactError(f"{src}: column {column.name!r}: bins and counts do not agree")


def _check_rows(totals: dict[str, float], max_rows: float, src: str) -> None:
    """Every column counts each row once, as a value or a null: all give one total, in bounds."""
    if not totals:
        return
    first, rows = next(iter(totals.items()))
    for name, total in totals.items():
        if total != rows:
            raise ArtifactError(
                f"{src}: column {name!r} counts {total:g} rows (values and nulls) but column "
                f"{first!r} counts {rows:g}; every column must count the same rows"
            )
    if not 1 <= rows <= max_rows:
        raise ArtifactError(
            f"{src}: column {first!r} counts {rows:g} rows; statistics count between 1 and "
            f"{max_rows:g} rows"
        )


def _check_dependence(
    meta: _DependenceMeta, pairs: dict[str, np.ndarray], columns: int, max_rows: float, src: str
) -> None:
    """Round-two sums that n rows of normal scores can give: pairwise counts are whole,
    symmetric and within [0, n], no pair counting more rows than either of its variables, and
    every sum within what scores bounded by SCORE_BOUND add up to over those rows."""
    d = len(meta.variables)
    if len(set(meta.variables)) != d or d > 2 * columns:
        raise ArtifactError(
            f"{src}: dependence variables must be distinct, at most two per modelled column"
        )
    if any(a.shape != (d, d) for a in pairs.values()):
        raise ArtifactError(f"{src}: dependence sums must be {d}x{d} matrices")
    if not (_whole(meta.n) and meta.n <= max_rows):
        raise ArtifactError(
            f"{src}: dependence n={meta.n:g} must be a whole number of rows up to {max_rows:g}"
        )
    pair_n = pairs["pair_n"]
    own = np.diag(pair_n)
    if (
        np.any(pair_n < 0)
        or np.any(own > meta.n)
        or np.any(pair_n > np.minimum.outer(own, own))
        or not (_whole(pair_n) and np.array_equal(pair_n, pair_n.T))
    ):
        raise ArtifactError(
            f"{src}: pairwise counts must lie in [0, n]: whole numbers, symmetric, a pair counting "
            "no more rows than either of its variables"
        )
    for name, power in (("pair_sum", 1), ("pair_sum_sq", 2), ("sum_zz", 2)):
        if np.any(np.abs(pairs[name]) > SCORE_BOUND**power * pair_n):
            raise ArtifactError(
                f"{src}: dependence sum {name!r} is larger than normal scores (within "
                f"+-{SCORE_BOUND:g}) of its rows can add up to"
            )
    if np.any(pairs["pair_sum_sq"] < 0):
        raise ArtifactError(f"{src}: dependence sums of squares must be non-negative")


def _whole(values: np.ndarray | float) -> bool:
    return bool(np.all(np.floor(values) == values))


def _check_exact(what: str, rows: float) -> None:
    """Merged counts stay whole and finite: float64 counts rows exactly only below 2^53."""
    if not rows < EXACT_ROWS:
        raise StatsError(
            f"{what}: merged statistics count {rows:g} rows, past 2^53 where float64 stops "
            "counting exactly; a party's statistics overstate its rows"
        )
