"""Mergeable sufficient statistics: what a supplier sends so that a broker can fit a copula.

Fitting runs in two rounds, each a sum over rows, so statistics from k parties add up exactly to
those of the pooled table. Round one ("marginal") counts values on bins derived from the public
schema, plus nulls. Round two ("dependence") sums products of normal scores computed with the
marginals fitted from the merged round-one statistics.
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
STATS_MODEL = "sufficient-stats"


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
        return replace(
            self,
            null_count=self.null_count + other.null_count,
            counts=self.counts + other.counts,
            decimals=max(self.decimals, other.decimals),
            whole_days=self.whole_days and other.whole_days,
        )


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
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>") -> SufficientStats:
        return cls.from_artifact(Artifact.from_bytes(data, source=source), source=source)

    @classmethod
    def from_artifact(cls, artifact: Artifact, *, source: str = "<artifact>") -> SufficientStats:
        """Rebuild and validate statistics received from another party."""
        if artifact.kind != "stats" or artifact.model != STATS_MODEL:
            raise ArtifactError(f"{source}: holds a {artifact.model!r} model, not statistics")
        try:
            body = _StatsBody.model_validate(artifact.body)
        except ValidationError as exc:
            raise ArtifactError(f"{source}: invalid statistics: {exc}") from exc
        schema = TableSchema.from_dict(body.schema_, source=source)
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
            _check_counts(column, counts, edges, source)
            columns[meta.name] = ColumnStats(
                meta.name, meta.null_count, counts, edges, meta.decimals, meta.whole_days
            )
        dependence = None
        if body.dependence is not None:
            d = len(body.dependence.variables)
            pairs = {name: _array(artifact, name, source) for name in _PAIR_ARRAYS}
            if any(a.shape != (d, d) for a in pairs.values()):
                raise ArtifactError(f"{source}: dependence sums must be {d}x{d} matrices")
            if np.any(pairs["pair_n"] < 0) or np.any(pairs["pair_n"] > body.dependence.n):
                raise ArtifactError(f"{source}: pairwise counts must lie in [0, n]")
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


def _array(artifact: Artifact, name: str, source: str) -> np.ndarray:
    try:
        array = artifact.arrays[name]
    except KeyError as exc:
        raise ArtifactError(f"{source}: array {name!r} is missing") from exc
    if array.dtype.kind not in "fiu" or not np.all(np.isfinite(array)):
        raise ArtifactError(f"{source}: array {name!r} must hold finite numbers")
    return array.astype(np.float64)


def _check_counts(column: Column, counts: np.ndarray, edges: np.ndarray | None, src: str) -> None:
    if counts.ndim != 1 or np.any(counts < 0):
        raise ArtifactError(f"{src}: column {column.name!r}: counts must be a non-negative vector")
    if is_discrete(column):
        if edges is not None or counts.size != cardinality(column):
            raise ArtifactError(
                f"{src}: column {column.name!r}: expected {cardinality(column)} code counts"
            )
    elif edges is None or edges.size != counts.size + 1 or np.any(np.diff(edges) <= 0):
        raise ArtifactError(f"{src}: column {column.name!r}: bins and counts do not agree")
