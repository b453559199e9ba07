"""DP marginal synthesis (the NIST DP-challenge winners' recipe, MST-style), mergeable by sums.

Where each quantity comes from (end-to-end DP):
- cells of each column: public schema only: categories and booleans from the domain, integers
  with a small range one cell per value, other numerical and datetime columns `bins` equal-width
  bins between the schema's declared min and max, plus a null cell when the column is nullable;
- round one, noisy (Gaussian, zCDP): every 1-way marginal and every 2-way marginal on a public
  coarsening of the cells (at most COARSE_CELLS per column, twice that from epsilon 4 on);
- the tree: a maximum spanning tree whose edge weights (L1 distance between a coarse 2-way
  table and the product of its margins) are computed from round one's noisy counts only;
- round two, noisy: the full 2-way marginal of every tree edge;
- the model: post-processing of noisy counts (inverse-variance combination, clipping at zero,
  iterative proportional fitting so edges agree with the 1-way marginals); sampling walks the
  tree exactly and draws numbers uniformly inside their bin;
- output rounding and constraints: from the schema and the declared constraints only.
The whole fit is rho-zCDP with rho = `rho_for_epsilon(epsilon, delta)`; `privacy_cost_` is it.
Every measurement is a vector of counts, so k suppliers can each add 1/k of the noise variance
to their own counts and sum them (under secure aggregation) to get exactly one central release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.frame import conform
from fedsynth.privacy.accountant import PrivacyCost, rho_for_epsilon, zcdp_cost
from fedsynth.privacy.mechanisms import gaussian_noise
from fedsynth.schema import Column, NumericalColumn, SchemaError, TableSchema
from fedsynth.synth.base import Synthesizer, register
from fedsynth.synth.conditions import Condition
from fedsynth.synth.dp_public import TwoRoundCentralFit, public_constraints, public_rounding
from fedsynth.synth.encoding import bounds, cardinality, encode, is_discrete

DEFAULT_BINS = 32
COARSE_CELLS = 6
FINE_SELECTION_EPSILON = 4.0
"""From this epsilon on, the selection tables are twice as fine (less noise to fight)."""
ONE_WAY_SHARE = 0.2
SELECTION_SHARE = 0.2
"""Shares of rho for round one's 1-way and selection marginals; the tree edges get the rest."""
_IPF_ITERATIONS = 50
_FLOOR = 1e-9


@dataclass(frozen=True)
class Cells:
    """How one column's values map to cells: codes, integers from `low`, or bins; null last."""

    name: str
    values: int
    nullable: bool
    edges: np.ndarray | None
    low: float
    coarse_cells: int = 6

    @property
    def size(self) -> int:
        return self.values + int(self.nullable)

    @property
    def coarse_width(self) -> int:
        return math.ceil(self.size / self.coarse_cells)

    @property
    def coarse_size(self) -> int:
        return math.ceil(self.size / self.coarse_width)

    def index(self, values: np.ndarray) -> np.ndarray:
        null = np.isnan(values)
        if null.any() and not self.nullable:
            raise ValueError(f"column {self.name!r} is not nullable in the schema but has nulls")
        filled = np.nan_to_num(values, nan=self.low)
        if self.edges is None:
            cells = np.rint(filled - self.low).astype(np.int64)
        else:
            cells = np.searchsorted(self.edges, filled, side="right") - 1
        cells = np.clip(cells, 0, self.values - 1)
        cells[null] = self.values
        return cells

    def draw(self, cells: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = np.full(cells.shape, np.nan)
        present = cells < self.values
        if self.edges is None:
            out[present] = self.low + cells[present]
        else:
            lo, hi = self.edges[cells[present]], self.edges[cells[present] + 1]
            out[present] = lo + rng.random(lo.size) * (hi - lo)
        return out


@dataclass(frozen=True)
class Query:
    """One measured marginal: column positions, whether on coarse cells, and its noise sd."""

    columns: tuple[int, ...]
    coarse: bool
    sigma: float


def column_cells(column: Column, bins: int, coarse_cells: int = COARSE_CELLS) -> Cells:
    """Public cells of one column (SchemaError when the schema gives no bounds to bin on)."""
    if is_discrete(column):
        return Cells(column.name, cardinality(column), column.nullable, None, 0.0, coarse_cells)
    lo, hi = bounds(column)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SchemaError(
            f"column {column.name!r}: a DP model bins on public bounds only; declare its min and "
            "max in the schema"
        )
    if isinstance(column, NumericalColumn) and column.dtype == "int":
        low, high = math.ceil(lo), math.floor(hi)
        if high - low + 1 <= bins:
            return Cells(
                column.name, high - low + 1, column.nullable, None, float(low), coarse_cells
            )
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    return Cells(column.name, bins, column.nullable, edges, lo, coarse_cells)


def count_queries(cells: np.ndarray, layout: list[Cells], queries: list[Query]) -> np.ndarray:
    """Exact counts of every query on a matrix of cell indices, concatenated (a sum over rows)."""
    parts = []
    for query in queries:
        key = np.zeros(cells.shape[0], dtype=np.int64)
        size = 1
        for j in query.columns:
            c = cells[:, j] // layout[j].coarse_width if query.coarse else cells[:, j]
            width = layout[j].coarse_size if query.coarse else layout[j].size
            key = key * width + c
            size *= width
        parts.append(np.bincount(key, minlength=size).astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


def query_shape(query: Query, layout: list[Cells]) -> tuple[int, ...]:
    return tuple(layout[j].coarse_size if query.coarse else layout[j].size for j in query.columns)


@register
class DPMarginalSynthesizer(TwoRoundCentralFit, Synthesizer):
    """Noisy 1- and 2-way marginals over a privately chosen tree; (epsilon, delta)-DP end to end."""

    name = "dp-marginal"

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        bins: int = DEFAULT_BINS,
        constraints: list[Any] | None = None,
    ) -> None:
        super().__init__(constraints=constraints)
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be positive and finite, got {epsilon!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins!r}")
        self.epsilon = epsilon
        self.delta = delta
        self.bins = bins

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "bins": self.bins,
        }

    def selection_cells(self) -> int:
        """Cells per column of the tables that choose the tree (coarse at small epsilon)."""
        return COARSE_CELLS * (2 if self.epsilon >= FINE_SELECTION_EPSILON else 1)

    def start(self, schema: TableSchema) -> None:
        """Set up the public plan (cells, budget split, round one's queries) from the schema."""
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.rounding_ = public_rounding(schema)
        self.layout_ = [
            column_cells(c, self.bins, self.selection_cells()) for c in schema.modelled_columns
        ]
        d = len(self.layout_)
        rho = rho_for_epsilon(self.epsilon, self.delta)
        self.rho_ = rho
        self.privacy_cost_: PrivacyCost = zcdp_cost(rho, label=f"{self.name} fit")
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        one_way = rho * (ONE_WAY_SHARE if pairs else 1.0)
        self.edge_rho_ = 0.0 if not pairs else rho * (1.0 - ONE_WAY_SHARE - SELECTION_SHARE)
        sigma_one = math.sqrt(d / (2 * one_way))
        self.queries_ = [Query((i,), False, sigma_one) for i in range(d)]
        if pairs:
            sigma_sel = math.sqrt(len(pairs) / (2 * rho * SELECTION_SHARE))
            self.queries_ += [Query(p, True, sigma_sel) for p in pairs]
        self.round_ = 1

    def cells(self, df: pd.DataFrame) -> np.ndarray:
        """Each row's cell in every modelled column (a supplier computes this on its rows)."""
        df = conform(df, self.schema_)
        columns = self.schema_.modelled_columns
        return np.column_stack(
            [
                cell.index(encode(df[c.name], c))
                for c, cell in zip(columns, self.layout_, strict=True)
            ]
        )

    def counts(self, df: pd.DataFrame) -> np.ndarray:
        """Exact counts of the current round's queries on `df`, before any noise."""
        return count_queries(self.cells(df), self.layout_, self.queries_)

    def noise(self, share: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise for the current round with `share` of each query's variance (1/k per supplier)."""
        if not 0 < share <= 1:
            raise ValueError(f"a noise share is in (0, 1], got {share!r}")
        parts = [
            gaussian_noise(
                int(np.prod(query_shape(q, self.layout_))), q.sigma * math.sqrt(share), rng
            )
            for q in self.queries_
        ]
        return np.concatenate(parts) if parts else np.zeros(0)

    def noise_variances(self) -> np.ndarray:
        """The variance of the central noise on each cell of the current round."""
        return (
            np.concatenate(
                [
                    np.full(int(np.prod(query_shape(q, self.layout_))), q.sigma**2)
                    for q in self.queries_
                ]
            )
            if self.queries_
            else np.zeros(0)
        )

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Counts plus this party's share of the noise: what leaves a supplier."""
        return self.counts(df) + self.noise(share, rng)

    def absorb(self, noisy: np.ndarray) -> None:
        """Take the (summed) noisy counts of the current round and move to the next."""
        if getattr(self, "round_", 0) not in (1, 2):
            raise ValueError("no measurement round is open: call start(schema) first")
        noisy = np.asarray(noisy, dtype=np.float64)
        expected = sum(int(np.prod(query_shape(q, self.layout_))) for q in self.queries_)
        if noisy.shape != (expected,) or not np.all(np.isfinite(noisy)):
            raise ValueError(f"round {self.round_} needs {expected} finite noisy counts")
        tables = self._split(noisy)
        if self.round_ == 1:
            d = len(self.layout_)
            self.one_way_noisy_ = [tables[i] for i in range(d)]
            self.one_way_sigma_ = self.queries_[0].sigma
            self.tree_ = _tree(
                d, {q.columns: t for q, t in zip(self.queries_[d:], tables[d:], strict=True)}
            )
            sigma = math.sqrt(max(len(self.tree_), 1) / (2 * self.edge_rho_)) if self.tree_ else 0.0
            self.queries_ = [Query(edge, False, sigma) for edge in self.tree_]
            self.round_ = 2
            if not self.tree_:
                self._finish([])
            return
        self._finish(tables)

    def _split(self, noisy: np.ndarray) -> list[np.ndarray]:
        tables, start = [], 0
        for q in self.queries_:
            shape = query_shape(q, self.layout_)
            size = int(np.prod(shape))
            tables.append(noisy[start : start + size].reshape(shape))
            start += size
        return tables

    def _finish(self, edge_tables: list[np.ndarray]) -> None:
        d = len(self.layout_)
        sigma_edge = self.queries_[0].sigma if self.queries_ else 0.0
        estimates = [[(self.one_way_noisy_[i], self.one_way_sigma_**2)] for i in range(d)]
        for (a, b), table in zip(self.tree_, edge_tables, strict=True):
            estimates[a].append((table.sum(axis=1), table.shape[1] * sigma_edge**2))
            estimates[b].append((table.sum(axis=0), table.shape[0] * sigma_edge**2))
        self.one_way_ = [_probabilities(_combine(e)) for e in estimates]
        self.edges_ = [
            _ipf(table, self.one_way_[a], self.one_way_[b])
            for (a, b), table in zip(self.tree_, edge_tables, strict=True)
        ]
        self.round_ = 3
        del self.queries_

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        d = len(self.layout_)
        cells = np.full((n, d), -1, dtype=np.int64)
        cells[:, 0] = _categorical(
            np.broadcast_to(self.one_way_[0], (n, self.layout_[0].size)), rng
        )
        for (a, b), table in zip(self.tree_, self.edges_, strict=True):
            conditional = table / np.maximum(table.sum(axis=1, keepdims=True), _FLOOR)
            cells[:, b] = _categorical(conditional[cells[:, a]], rng)
        return {layout.name: layout.draw(cells[:, j], rng) for j, layout in enumerate(self.layout_)}

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if getattr(self, "round_", 3) != 3:
            raise ValueError(f"this model is in measurement round {self.round_}; absorb it first")

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"one_way_{i}": p for i, p in enumerate(self.one_way_)}
        arrays |= {f"edge_{i}": t for i, t in enumerate(self.edges_)}
        state = {"tree": [list(e) for e in self.tree_], "rho": self.rho_}
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.layout_ = [
            column_cells(c, self.bins, self.selection_cells())
            for c in self.schema_.modelled_columns
        ]
        d = len(self.layout_)
        self.tree_ = [(int(a), int(b)) for a, b in state["tree"]]
        if len(self.tree_) != max(d - 1, 0) or any(
            not (0 <= a < d and 0 <= b < d) for a, b in self.tree_
        ):
            raise ValueError(f"the tree must have {max(d - 1, 0)} edges between {d} columns")
        self.one_way_ = [
            _check_probabilities(arrays[f"one_way_{i}"], (c.size,))
            for i, c in enumerate(self.layout_)
        ]
        self.edges_ = [
            _check_probabilities(arrays[f"edge_{i}"], (self.layout_[a].size, self.layout_[b].size))
            for i, (a, b) in enumerate(self.tree_)
        ]
        self.rho_ = float(state["rho"])
        self.privacy_cost_ = zcdp_cost(self.rho_, label=f"{self.name} fit")
        self.round_ = 3


def _tree(d: int, coarse: dict[tuple[int, ...], np.ndarray]) -> list[tuple[int, int]]:
    """Maximum spanning tree (Kruskal) on noisy dependence scores, edges oriented from column 0."""
    scores = []
    for (i, j), table in coarse.items():
        table = np.maximum(table, 0.0)
        total = max(table.sum(), 1.0)
        expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / total
        scores.append((float(np.abs(table - expected).sum()), i, j))
    parent = list(range(d))

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    chosen: list[tuple[int, int]] = []
    for _, i, j in sorted(scores, reverse=True):
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[ri] = rj
            chosen.append((i, j))
    neighbours: dict[int, list[int]] = {i: [] for i in range(d)}
    for i, j in chosen:
        neighbours[i].append(j)
        neighbours[j].append(i)
    oriented, seen, queue = [], {0}, [0]
    while queue:
        node = queue.pop(0)
        for other in sorted(neighbours[node]):
            if other not in seen:
                seen.add(other)
                oriented.append((node, other))
                queue.append(other)
    return oriented


def _combine(estimates: list[tuple[np.ndarray, float]]) -> np.ndarray:
    weights = np.array([1.0 / v for _, v in estimates])
    stacked = np.stack([e for e, _ in estimates])
    return (weights[:, None] * stacked).sum(axis=0) / weights.sum()


def _probabilities(counts: np.ndarray) -> np.ndarray:
    clipped = np.maximum(counts, 0.0)
    total = clipped.sum()
    return clipped / total if total > 0 else np.full(counts.size, 1.0 / counts.size)


def _ipf(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Non-negative joint table whose margins match `rows` and `cols` (iterative fitting)."""
    joint = np.maximum(table, 0.0) + _FLOOR * max(table.sum(), 1.0)
    joint = joint / joint.sum()
    for _ in range(_IPF_ITERATIONS):
        joint *= (rows / np.maximum(joint.sum(axis=1), _FLOOR))[:, None]
        joint *= (cols / np.maximum(joint.sum(axis=0), _FLOOR))[None, :]
    return joint / joint.sum()


def _categorical(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One draw per row of a (rows x cells) probability matrix."""
    cumulative = np.cumsum(probabilities, axis=1)
    u = rng.random(probabilities.shape[0]) * cumulative[:, -1]
    return np.minimum((u[:, None] >= cumulative).sum(axis=1), probabilities.shape[1] - 1)


def _check_probabilities(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != shape or np.any(array < 0) or not np.isclose(array.sum(), 1.0):
        raise ValueError(f"a marginal must be a probability table of shape {shape}")
    return array
