"""DP marginal synthesis (the NIST DP-challenge winners' recipe, MST-style), mergeable by sums.

Where each quantity comes from (end-to-end DP):
- cells of each column: public schema only: categories and booleans from the domain, integers
  with a small range one cell per value, other numerical and datetime columns `bins` equal-width
  bins between the schema's declared min and max, each cut into `sub_bins` equal sub-bins, plus
  a null cell when the column is nullable; the 2-way tables and round one resolve whole bins;
- round one, noisy (Gaussian, zCDP): every 1-way marginal (ONE_WAY_SHARE of rho);
- round two, the private selection: every pair of columns' 2-way marginal (SELECT_SHARE of rho)
  on cell groups planned from round one's noisy counts alone, so that a group holds at least
  GROUP_SIGMAS noise sds of estimated rows (rare categories pool with others of like frequency,
  sparse neighbouring bins merge), and a pair's table has at most as many cells as the rows
  fill to GROUP_SIGMAS noise sds each (its ordered columns cut into fewer runs, a wide
  unordered one kept whole); the tree is the maximum spanning tree of these tables' Cramer's
  V, its chi-square debiased for the noise (post-processing);
- round three: the tree's 2-way marginals with the rest of rho, on round two's groups split
  where they hold TREE_GROUP_SIGMAS of round three's smaller noise sds (categories:
  UNORDERED_TREE_GROUP_SIGMAS); and, with SUB_BIN_SHARE of the round, a 1-way count of the
  sub-bins of each bin that round one estimates holds SUB_BIN_SIGMAS of their noise sds per
  sub-bin (a dense bin's shape inside it; the pair tables keep whole bins, whose cells stand
  above their noise);
- the model, post-processing only: every column's cell distribution is the least-squares fit of
  all three rounds' measurements of it (its 1-way counts, its sub-bin counts and the margins of
  every 2-way table), even inside each part no measurement divides;
  each tree edge fuses its round-two and round-three tables (least squares), reads cells under
  EMPTY_CELL_SIGMAS noise sds as empty, is projected onto non-negative tables and fitted to
  its columns' distributions (iterative proportional fitting);
  sampling walks the tree, giving each parent value's rows their cells by controlled rounding
  of the expected counts, then a cell inside each group by the column's cell distribution the
  same way, and a number uniformly inside its (sub-)bin;
- output rounding and constraints: from the schema and the declared constraints only.
Two columns skip the selection round; one column has only round one. The whole fit is rho-zCDP
with rho = `rho_for_epsilon(epsilon, delta)`; `privacy_cost_` is it, `round_rhos_` its split.
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
from fedsynth.synth.dp_public import (
    RoundsCentralFit,
    project_counts,
    public_constraints,
    public_rounding,
    round_costs_of,
)
from fedsynth.synth.encoding import bounds, cardinality, encode, is_discrete

DEFAULT_BINS = 32
SUB_BINS = 4
"""Sub-bins per public bin of a number, measured only inside bins dense enough to resolve them.
Over 10-12 fits per cell (0.1 of round three on them): txhousing +1.6, +2.4, +2.2 points at
epsilon 0.5, 1, 4 (column shapes 0.92 -> 0.96, pair trends unchanged); wage and creditcard, whose
bins rarely qualify, within noise. Measuring every sub-bin in round one instead doubled the
noise on each whole bin's count, which cost the small tables up to a point."""
ONE_WAY_SHARE = 0.4
"""Share of rho for round one's 1-way marginals."""
SELECT_SHARE = 0.2
"""Share of rho for round two's tables of every pair; round three's tree tables get the rest.
The selection only has to rank the pairs and group their cells; the tree tables are what is
sampled from. Measured over 20-30 fits per cell: moving 0.1 of rho from here to the tree lifts
txhousing by 0.2 to 0.6 points at every epsilon and leaves wage and creditcard within noise."""
GROUP_SIGMAS = 3.0
"""A cell group of a 2-way round holds at least this many of its noise sds of estimated count."""
TREE_GROUP_SIGMAS = 6.0
"""Round three splits a round-two group into parts holding this many of its own noise sds."""
UNORDERED_TREE_GROUP_SIGMAS = 2.0
"""The same for unordered columns: pooling unlike categories (two cities of one size but unlike
prices) loses more than merging neighbouring bins, so categories stay apart down to fewer rows."""
SUB_BIN_SHARE = 0.1
"""Share of round three's rho for the sub-bin counts, when any bin qualifies (0.15: same within
noise)."""
SUB_BIN_SIGMAS = 2.0
"""A public bin's sub-bins are measured when each holds this many sub-bin noise sds of rows on
average (estimated from round one)."""
EMPTY_CELL_SIGMAS = 2.0
"""A tree table's cell under this many noise sds is read as empty: in a wide, sparse table the
noise on the many empty cells would otherwise take a large share of the rows of the few full
ones (a big city's share of the top range of listings goes to many small cities)."""
_SHARES = {
    "one-way": ONE_WAY_SHARE,
    "select": SELECT_SHARE,
    "tree": 1.0 - ONE_WAY_SHARE - SELECT_SHARE,
}
"""Each round's share of rho before normalising over the rounds a fit runs."""
_IPF_ITERATIONS = 50
_FLOOR = 1e-9
_INDEPENDENT = 1e-6
"""Weight of the independence table mixed into an edge so that no margin row is left empty."""


@dataclass(frozen=True, eq=False)
class Cells:
    """How one column's values map to cells: codes, integers from `low`, or bins; null last.

    `units` maps each cell to its unit, the smallest set of cells a 2-way table may resolve: a
    public bin's sub-bins share one; every other cell is a unit of its own.
    """

    name: str
    values: int
    nullable: bool
    edges: np.ndarray | None
    low: float
    ordered: bool
    units: np.ndarray

    @property
    def size(self) -> int:
        return self.values + int(self.nullable)

    def coarse(self) -> Cells:
        """These cells seen a unit at a time (the null cell stays last)."""
        values = int(self.units[: self.values].max()) + 1 if self.values else 0
        return Cells(
            self.name, values, self.nullable, None, 0.0, self.ordered, np.arange(self.size)
        )

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

    def draw(
        self,
        cells: np.ndarray,
        rng: np.random.Generator,
        interval: tuple[float, float] | None = None,
    ) -> np.ndarray:
        """A value uniformly inside each cell (NaN for the null cell).

        With a condition's `interval`, the value lies in the part of its bin inside it, and the
        row is kept with probability proportional to that part's share of the bin (NaN, which
        fails the condition, otherwise): with rejection, that samples the model given the
        interval exactly, however much narrower than a bin it is (an exact date).
        """
        out = np.full(cells.shape, np.nan)
        present = cells < self.values
        if self.edges is None:
            out[present] = self.low + cells[present]
            return out
        lo, hi = self.edges[:-1], self.edges[1:]
        if interval is not None:
            lo, hi = np.maximum(lo, interval[0]), np.minimum(hi, interval[1])
            share = np.clip(hi - lo, 0.0, None) / np.diff(self.edges)
            cell_share = share[np.minimum(cells, self.values - 1)]
            present &= rng.random(cells.shape) * share.max() < cell_share
        kept = cells[present]
        out[present] = lo[kept] + rng.random(kept.size) * (hi[kept] - lo[kept])
        return out


@dataclass(frozen=True, eq=False)
class Query:
    """One measured marginal: column positions, each column's cell-to-group map, noise sd."""

    columns: tuple[int, ...]
    groups: tuple[np.ndarray, ...]
    sigma: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(g.max()) + 1 for g in self.groups)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


def column_cells(column: Column, bins: int, sub_bins: int = SUB_BINS) -> Cells:
    """Public cells of one column (SchemaError when the schema gives no bounds to bin on)."""
    if is_discrete(column):
        size = cardinality(column) + int(column.nullable)
        return Cells(
            column.name, cardinality(column), column.nullable, None, 0.0, False, np.arange(size)
        )
    lo, hi = bounds(column)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SchemaError(
            f"column {column.name!r}: a DP model bins on public bounds only; declare its min and "
            "max in the schema"
        )
    if isinstance(column, NumericalColumn) and column.dtype == "int":
        low, high = math.ceil(lo), math.floor(hi)
        if high - low + 1 <= bins:
            size = high - low + 1 + int(column.nullable)
            return Cells(
                column.name,
                high - low + 1,
                column.nullable,
                None,
                float(low),
                True,
                np.arange(size),
            )
        sub_bins = max(1, min(sub_bins, (high - low + 1) // bins))
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins * sub_bins + 1)
    units = np.arange(bins * sub_bins + int(column.nullable)) // sub_bins
    if column.nullable:
        units[-1] = bins
    return Cells(column.name, bins * sub_bins, column.nullable, edges, lo, True, units)


def count_queries(cells: np.ndarray, queries: list[Query]) -> np.ndarray:
    """Exact counts of every query on a matrix of cell indices, concatenated (a sum over rows)."""
    parts = []
    for query in queries:
        key = np.zeros(cells.shape[0], dtype=np.int64)
        for j, groups, width in zip(query.columns, query.groups, query.shape, strict=True):
            key = key * width + groups[cells[:, j]]
        parts.append(np.bincount(key, minlength=query.size).astype(np.float64))
    return np.concatenate(parts) if parts else np.zeros(0)


@register
class DPMarginalSynthesizer(RoundsCentralFit, Synthesizer):
    """Noisy 1- and 2-way marginals over a privately chosen tree; (epsilon, delta)-DP end to end."""

    name = "dp-marginal"

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        bins: int = DEFAULT_BINS,
        sub_bins: int = SUB_BINS,
        constraints: list[Any] | None = None,
    ) -> None:
        super().__init__(constraints=constraints)
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be positive and finite, got {epsilon!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins!r}")
        if sub_bins < 1:
            raise ValueError(f"sub_bins must be at least 1, got {sub_bins!r}")
        self.epsilon = epsilon
        self.delta = delta
        self.bins = bins
        self.sub_bins = sub_bins

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "bins": self.bins,
            "sub_bins": self.sub_bins,
        }

    def start(self, schema: TableSchema) -> None:
        """Set up the public plan (cells, budget split, round one's queries) from the schema."""
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.rounding_ = public_rounding(schema)
        self.layout_ = [column_cells(c, self.bins, self.sub_bins) for c in schema.modelled_columns]
        d = len(self.layout_)
        rho = rho_for_epsilon(self.epsilon, self.delta)
        self.rho_ = rho
        self.privacy_cost_: PrivacyCost = zcdp_cost(rho, label=f"{self.name} fit")
        self.stages_ = _stages(d)
        shares = [_SHARES[stage] for stage in self.stages_]
        self.round_rhos_ = [rho * s / sum(shares) for s in shares]
        self.rounds_ = len(self.stages_)
        sigma = math.sqrt(d / (2 * self.round_rhos_[0]))
        self.queries_ = [Query((i,), (c.units,), sigma) for i, c in enumerate(self.layout_)]
        self.measured_: list[tuple[int, Query, np.ndarray]] = []
        self.fine_: list[np.ndarray] = []
        self.selection_groups_: list[np.ndarray] | None = None
        self.tree_: list[tuple[int, int]] = []
        self.groups_ = [np.zeros(c.size, dtype=np.int64) for c in self.layout_]
        self.round_ = 1

    def planned_rounds(self, schema: TableSchema) -> int:
        """How many measurement rounds a fit on `schema` takes (public: the column count)."""
        return len(_stages(len(schema.modelled_columns)))

    def round_costs(self, rows: int | None = None) -> list[PrivacyCost]:
        """Each round's cost: its share of rho (the row count does not enter)."""
        return round_costs_of(self.name, self.round_rhos_)

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
        return count_queries(self.cells(df), self.queries_)

    def noise(self, share: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """Noise for the current round with `share` of each query's variance (1/k per supplier)."""
        if not 0 < share <= 1:
            raise ValueError(f"a noise share is in (0, 1], got {share!r}")
        parts = [gaussian_noise(q.size, q.sigma * math.sqrt(share), rng) for q in self.queries_]
        return np.concatenate(parts) if parts else np.zeros(0)

    def noise_variances(self) -> np.ndarray:
        """The variance of the central noise on each cell of the current round."""
        parts = [np.full(q.size, q.sigma**2) for q in self.queries_]
        return np.concatenate(parts) if parts else np.zeros(0)

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Counts plus this party's share of the noise: what leaves a supplier."""
        return self.counts(df) + self.noise(share, rng)

    def absorb(self, noisy: np.ndarray) -> None:
        """Take the (summed) noisy counts of the current round and move to the next."""
        if not 1 <= getattr(self, "round_", 0) <= len(getattr(self, "stages_", ())):
            raise ValueError("no measurement round is open: call start(schema) first")
        noisy = np.asarray(noisy, dtype=np.float64)
        expected = sum(q.size for q in self.queries_)
        if noisy.shape != (expected,) or not np.all(np.isfinite(noisy)):
            raise ValueError(f"round {self.round_} needs {expected} finite noisy counts")
        start = 0
        for query in self.queries_:
            table = noisy[start : start + query.size].reshape(query.shape)
            self.measured_.append((self.round_, query, table))
            start += query.size
        stage = self.stages_[self.round_ - 1]
        self.round_ += 1
        if self.round_ > len(self.stages_):
            self._finish()
        elif stage == "one-way":
            self._after_one_ways()
        else:
            self._after_selection()

    def _sigma(self, queries: int) -> float:
        """Noise sd of each of `queries` sensitivity-1 count queries that share the round's rho."""
        return math.sqrt(queries / (2 * self.round_rhos_[self.round_ - 1]))

    def _after_one_ways(self) -> None:
        """Plan the next round from round one's noisy 1-way counts alone (post-processing)."""
        d = len(self.layout_)
        total = self._total()
        self.fine_ = [
            _spread(cells.units, project_counts(t, total))
            for cells, (_, _, t) in zip(self.layout_, self.measured_, strict=True)
        ]
        if self.stages_[self.round_ - 1] == "tree":
            self._plan_tree([(0, 1)], None)
            return
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        sigma = self._sigma(len(pairs))
        self.selection_groups_ = [
            _groups(cells, fine, GROUP_SIGMAS * sigma)
            for cells, fine in zip(self.layout_, self.fine_, strict=True)
        ]
        cap = total / (GROUP_SIGMAS * sigma)
        self.queries_ = [Query(p, self._pair_groups(p, cap), sigma) for p in pairs]

    def _pair_groups(self, pair: tuple[int, int], cap: float) -> tuple[np.ndarray, ...]:
        """The groups a pair's selection table is measured on: at most about `cap` cells.

        A table past the cap coarsens its ordered columns into runs of equal estimated rows (both
        to about sqrt(cap) parts, or an ordered one beside an unordered one to cap / the other's
        groups): a wide column such as a city's keeps every group, so its dependence on a number
        shows as a shift between a few ranges, each cell far above the noise, instead of being
        spread over hundreds of cells under it. Each result is a coarsening of the column's
        selection groups, so that the tree round's groups refine it.
        """
        assert self.selection_groups_ is not None
        groups = [self.selection_groups_[j] for j in pair]
        widths = [int(g.max()) + 1 for g in groups]
        ordered = [self.layout_[j].ordered for j in pair]
        if widths[0] * widths[1] <= cap or not any(ordered):
            return tuple(groups)
        runs = math.sqrt(cap) if all(ordered) else cap / widths[ordered.index(False)]
        n = max(2, int(runs))
        out = []
        for j, g, width, is_ordered in zip(pair, groups, widths, ordered, strict=True):
            if not is_ordered or width <= n:
                out.append(g)
                continue
            rows = np.bincount(g, weights=self.fine_[j], minlength=width)
            before = np.cumsum(rows) - rows
            run = np.minimum((before * n // max(rows.sum(), 1.0)).astype(np.int64), n - 1)
            out.append(np.unique(run, return_inverse=True)[1][g])
        return tuple(out)

    def _after_selection(self) -> None:
        """Choose the tree from every pair's noisy table (post-processing) and plan its round."""
        total = self._total()
        columns = [_projected(*self._column(j), total) for j in range(len(self.layout_))]
        tables = []
        for r, query, table in self.measured_:
            if r == 2:
                a, b = (
                    np.bincount(g, weights=columns[j], minlength=width)
                    for j, g, width in zip(query.columns, query.groups, query.shape, strict=True)
                )
                tables.append((query, table, total * np.outer(a, b)))
        self._plan_tree(_tree(len(self.layout_), tables), self.selection_groups_)

    def _plan_tree(self, tree: list[tuple[int, int]], coarse: list[np.ndarray] | None) -> None:
        """Round three measures the tree's edges on groups fit for its own, smaller noise, and
        the sub-bins of each public bin estimated to hold enough rows to resolve them."""
        self.tree_ = tree
        rho = self.round_rhos_[self.round_ - 1]
        binned = [j for j, cells in enumerate(self.layout_) if cells.size > cells.coarse().size]
        sub_sigma = math.sqrt(len(binned) / (2 * rho * SUB_BIN_SHARE)) if binned else math.inf
        refined = {
            j: labels
            for j in binned
            if (labels := _sub_bin_groups(self.layout_[j], self.fine_[j], sub_sigma)) is not None
        }
        share = SUB_BIN_SHARE if refined else 0.0
        sigma = math.sqrt(len(tree) / (2 * rho * (1 - share)))
        self.groups_ = [
            _groups(
                cells,
                fine,
                (TREE_GROUP_SIGMAS if cells.ordered else UNORDERED_TREE_GROUP_SIGMAS) * sigma,
                None if coarse is None else coarse[j],
            )
            for j, (cells, fine) in enumerate(zip(self.layout_, self.fine_, strict=True))
        ]
        self.queries_ = [Query(e, (self.groups_[e[0]], self.groups_[e[1]]), sigma) for e in tree]
        if refined:
            sub_sigma = math.sqrt(len(refined) / (2 * rho * share))
            self.queries_ += [Query((j,), (g,), sub_sigma) for j, g in refined.items()]

    def _total(self) -> float:
        return _total([(t.sum(), t.size * q.sigma**2) for _, q, t in self.measured_])

    def _column(self, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Column j's counts: least squares over every measurement of it (unprojected).

        The counts are solved on the coarsest parts the measurements tell apart (a public bin
        whose sub-bins were not counted is one) and spread evenly inside each; returns them
        with that cell-to-part map.
        """
        measurements = []
        for _, query, table in self.measured_:
            if j not in query.columns:
                continue
            axis = query.columns.index(j)
            margin = table.sum(axis=1 - axis) if table.ndim == 2 else table
            others = table.size // table.shape[axis]
            measurements.append((query.groups[axis], margin, others * query.sigma**2))
        labels = np.column_stack([groups for groups, _, _ in measurements])
        parts, first, cell_parts = np.unique(labels, axis=0, return_index=True, return_inverse=True)
        solved = _least_squares(
            len(parts), [(groups[first], sums, var) for groups, sums, var in measurements]
        )
        return _spread(cell_parts.ravel(), solved), cell_parts.ravel()

    def _finish(self) -> None:
        """The model from every round's noisy counts: column distributions, then tree tables.

        Each column's group distribution is projected from its unprojected group sums: projecting
        cell by cell first would leave a share of the noise of every empty cell in its group.
        """
        total = self._total()
        columns = [self._column(j) for j in range(len(self.layout_))]
        self.cells_ = [_projected(counts, parts, total) for counts, parts in columns]
        self.one_way_ = [
            project_counts(
                np.bincount(groups, weights=counts, minlength=int(groups.max()) + 1), total
            )
            / total
            for groups, (counts, _) in zip(self.groups_, columns, strict=True)
        ]
        stage = self.stages_.index("tree") + 1 if "tree" in self.stages_ else 0
        edges = [t for r, q, t in self.measured_ if r == stage and len(q.columns) == 2]
        selected = {q.columns: (q, t) for r, q, t in self.measured_ if r == 2 and stage == 3}
        self.edges_ = []
        for (a, b), table in zip(self.tree_, edges, strict=True):
            if selected:
                table = self._fused_edge(a, b, table, selected)
            table = np.where(table < EMPTY_CELL_SIGMAS * self.queries_[0].sigma, 0.0, table)
            self.edges_.append(
                _ipf(project_counts(table, total) / total, self.one_way_[a], self.one_way_[b])
            )
        del self.queries_, self.fine_, self.measured_, self.selection_groups_

    def _fused_edge(
        self,
        a: int,
        b: int,
        table: np.ndarray,
        selected: dict[tuple[int, ...], tuple[Query, np.ndarray]],
    ) -> np.ndarray:
        """Edge (a, b)'s round-three table fused (least squares) with round two's of the pair."""
        query, pair = selected[min(a, b), max(a, b)]
        coarse = dict(zip(query.columns, query.groups, strict=True))
        up_a, up_b = (_coarser(self.groups_[j], coarse[j]) for j in (a, b))
        pair = pair if a < b else pair.T
        labels = (up_a[:, None] * pair.shape[1] + up_b[None, :]).ravel()
        fine_var = self.queries_[0].sigma ** 2
        coarse_var = query.sigma**2
        fused = _fuse(table.ravel(), fine_var, pair.ravel(), coarse_var, labels)
        return fused.reshape(table.shape)

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        d = len(self.layout_)
        groups = np.full((n, d), -1, dtype=np.int64)
        groups[:, 0] = _allocate(self.one_way_[0][None, :], np.zeros(n, dtype=np.int64), rng)
        for (a, b), table in zip(self.tree_, self.edges_, strict=True):
            conditional = table / np.maximum(table.sum(axis=1, keepdims=True), _FLOOR)
            groups[:, b] = _allocate(conditional, groups[:, a], rng)
        intervals = {c.column: self._condition_interval(c) for c in conditions if not c.discrete}
        out = {}
        for j, layout in enumerate(self.layout_):
            within = _within(self.groups_[j], self.cells_[j])
            cells = _allocate(within, groups[:, j], rng)
            out[layout.name] = layout.draw(cells, rng, intervals.get(layout.name))
        return out

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if hasattr(self, "queries_"):
            raise ValueError(f"this model is in measurement round {self.round_}; absorb it first")

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"one_way_{i}": p for i, p in enumerate(self.one_way_)}
        arrays |= {f"edge_{i}": t for i, t in enumerate(self.edges_)}
        arrays |= {f"groups_{i}": g for i, g in enumerate(self.groups_)}
        arrays |= {f"cells_{i}": p for i, p in enumerate(self.cells_)}
        state = {"tree": [list(e) for e in self.tree_], "rho": self.rho_, "sub_bins": self.sub_bins}
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        # files written before sub-bins existed hold whole-bin cells: reading them as such keeps
        # a fitted model usable without spending its privacy budget again on a refit
        self.sub_bins = int(state.get("sub_bins", 1))
        self.layout_ = [
            column_cells(c, self.bins, self.sub_bins) for c in self.schema_.modelled_columns
        ]
        d = len(self.layout_)
        self.tree_ = [(int(a), int(b)) for a, b in state["tree"]]
        if len(self.tree_) != max(d - 1, 0) or any(
            not (0 <= a < d and 0 <= b < d) for a, b in self.tree_
        ):
            raise ValueError(f"the tree must have {max(d - 1, 0)} edges between {d} columns")
        self.groups_ = [
            _check_groups(arrays[f"groups_{i}"], c.size) for i, c in enumerate(self.layout_)
        ]
        widths = [int(g.max()) + 1 for g in self.groups_]
        self.cells_ = [
            _check_probabilities(arrays[f"cells_{i}"], (c.size,))
            for i, c in enumerate(self.layout_)
        ]
        self.one_way_ = [
            _check_probabilities(arrays[f"one_way_{i}"], (w,)) for i, w in enumerate(widths)
        ]
        self.edges_ = [
            _check_probabilities(arrays[f"edge_{i}"], (widths[a], widths[b]))
            for i, (a, b) in enumerate(self.tree_)
        ]
        self.rho_ = float(state["rho"])
        self.privacy_cost_ = zcdp_cost(self.rho_, label=f"{self.name} fit")


def _stages(columns: int) -> list[str]:
    """The measurement rounds for `columns` columns: two skip the selection, one has no pair."""
    return ["one-way", "select", "tree"] if columns > 2 else ["one-way", "tree"][:columns]


def _tree(d: int, tables: list[tuple[Query, np.ndarray, np.ndarray]]) -> list[tuple[int, int]]:
    """Maximum spanning tree (Kruskal) on each noisy 2-way table's Cramer's V.

    `tables` holds each pair's query, noisy table and table expected under independence. The
    chi-square is debiased for the noise (each cell's squared deviation less sigma^2, over an
    expected count of at least sigma) and normalised by the table's smaller side, so that pairs
    measured at unlike resolutions (a city against two ranges of a number, two numbers against
    nine ranges each) compare fairly, where a distance such as L1 grows with the cells; edges
    come out oriented away from column 0.
    """
    scores = [
        (_cramers_v(table, expected, query.sigma), *query.columns)
        for query, table, expected in tables
    ]
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


def _cramers_v(table: np.ndarray, expected: np.ndarray, sigma: float) -> float:
    """Cramer's V of a noisy table, each cell's squared deviation debiased by sigma^2."""
    excess = ((table - expected) ** 2 - sigma**2) / np.maximum(expected, sigma)
    freedom = max(min(table.shape) - 1, 1)
    chi_square = max(float(excess.sum()), 0.0)
    return math.sqrt(chi_square / (max(float(expected.sum()), 1.0) * freedom))


def _groups(
    cells: Cells,
    counts: np.ndarray,
    threshold: float,
    within: np.ndarray | None = None,
) -> np.ndarray:
    """Cell-to-group map where each group holds about `threshold` estimated rows or more.

    Ordered columns merge runs of neighbouring cells; unordered ones keep each frequent value
    and pool the rare ones with others of about their frequency (their dependence on other
    columns tends to be alike); a rare null cell joins the last group. Groups are unions of
    whole units (a bin's sub-bins stay together). With `within` (a coarser map of whole units),
    each of its groups is split on its own, so the result refines it.
    """
    units = cells.coarse()
    unit_counts = np.bincount(cells.units, weights=counts, minlength=units.size)
    first = np.unique(cells.units, return_index=True)[1]
    coarse = np.zeros(units.size, dtype=np.int64) if within is None else within[first]
    labels = np.empty(cells.size, dtype=np.int64)
    label = 0
    for group in range(int(coarse.max()) + 1):
        for part in _split(np.flatnonzero(coarse == group), units, unit_counts, threshold):
            labels[np.isin(cells.units, part)] = label
            label += 1
    return labels


def _sub_bin_groups(cells: Cells, counts: np.ndarray, sigma: float) -> np.ndarray | None:
    """The cells of a sub-bin query: each sub-bin of a public bin whose sub-bins are estimated to
    hold SUB_BIN_SIGMAS noise sds of rows each on its own, every other cell in group 0; None when
    no bin qualifies."""
    units = np.bincount(cells.units, weights=counts)
    members = np.bincount(cells.units)
    dense = (members > 1) & (units >= SUB_BIN_SIGMAS * sigma * members)
    if not dense.any():
        return None
    chosen = dense[cells.units]
    labels = np.zeros(cells.size, dtype=np.int64)
    labels[chosen] = np.arange(1, int(chosen.sum()) + 1)
    return labels


def _split(
    members: np.ndarray, cells: Cells, counts: np.ndarray, threshold: float
) -> list[list[int]]:
    """`members` (cells) cut into runs of about `threshold` estimated rows: in cell order for
    ordered columns, most frequent first for unordered ones; an under-filled last run joins the
    one before it."""
    values = [int(m) for m in members if m < cells.values]
    if not cells.ordered:
        values.sort(key=lambda cell: -counts[cell])
    parts: list[list[int]] = []
    held = 0.0
    for cell in values:
        if not parts or held >= threshold:
            parts.append([])
            held = 0.0
        parts[-1].append(cell)
        held += counts[cell]
    if held < threshold and len(parts) > 1:
        parts[-2].extend(parts.pop())
    if cells.nullable and cells.values in members:
        if counts[cells.values] >= threshold or not parts:
            parts.append([cells.values])
        else:
            parts[-1].append(cells.values)
    return parts


def _spread(parts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Each part's count shared evenly among its cells (`parts` maps cells to parts)."""
    members = np.bincount(parts, minlength=counts.size)
    return counts[parts] / members[parts]


def _projected(counts: np.ndarray, parts: np.ndarray, total: float) -> np.ndarray:
    """A cell distribution from counts that are even inside each part: projected part by part."""
    whole = np.bincount(parts, weights=counts)
    return _spread(parts, project_counts(whole, total)) / total


def _coarser(fine: np.ndarray, coarse: np.ndarray) -> np.ndarray:
    """For each group of `fine` (a refinement of `coarse`), the coarse group holding it."""
    up = np.zeros(int(fine.max()) + 1, dtype=np.int64)
    up[fine] = coarse
    return up


def _least_squares(
    size: int, measurements: list[tuple[np.ndarray, np.ndarray, float]]
) -> np.ndarray:
    """Cell counts that best explain noisy sums over groups of cells (weighted least squares).

    Each measurement is (cell-to-group map, noisy group sums, noise variance of one sum); every
    cell must be a group of its own in at least one of them, so that the solution is unique.
    """
    normal = np.zeros((size, size))
    rhs = np.zeros(size)
    for labels, sums, variance in measurements:
        normal += np.equal.outer(labels, labels) / variance
        rhs += sums[labels] / variance
    return np.linalg.solve(normal, rhs)


def _fuse(
    fine: np.ndarray, fine_var: float, coarse: np.ndarray, coarse_var: float, labels: np.ndarray
) -> np.ndarray:
    """Least-squares counts from a fine measurement and a coarse one of sums over `labels`.

    Each coarse cell's sum becomes the inverse-variance mean of the two measurements of it, and
    the fine cells under it share the correction equally.
    """
    members = np.bincount(labels, minlength=coarse.size).astype(np.float64)
    sums = np.bincount(labels, weights=fine, minlength=coarse.size)
    precision_fine = 1.0 / np.maximum(members * fine_var, _FLOOR)
    fused = (sums * precision_fine + coarse / coarse_var) / (precision_fine + 1.0 / coarse_var)
    correction = np.where(members > 0, (fused - sums) / np.maximum(members, 1.0), 0.0)
    return fine + correction[labels]


def _within(groups: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """P(cell | group) as a (groups x cells) matrix; an empty group spreads evenly."""
    member = np.zeros((int(groups.max()) + 1, groups.size))
    member[groups, np.arange(groups.size)] = 1.0
    weights = member * cells[None, :]
    mass = weights.sum(axis=1, keepdims=True)
    even = member / member.sum(axis=1, keepdims=True)
    return np.where(mass > 0, weights / np.maximum(mass, _FLOOR), even)


def _total(estimates: list[tuple[float, float]]) -> float:
    """Inverse-variance estimate of the number of rows from several noisy totals (at least 1)."""
    weights = np.array([1.0 / v for _, v in estimates])
    values = np.array([t for t, _ in estimates])
    return max(float((weights * values).sum() / weights.sum()), 1.0)


def _ipf(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Non-negative joint table whose margins match `rows` and `cols` (iterative fitting)."""
    joint = table + _INDEPENDENT * np.outer(rows, cols)
    joint = joint / joint.sum()
    for _ in range(_IPF_ITERATIONS):
        joint *= (rows / np.maximum(joint.sum(axis=1), _FLOOR))[:, None]
        joint *= (cols / np.maximum(joint.sum(axis=0), _FLOOR))[None, :]
    return joint / joint.sum()


def _allocate(
    probabilities: np.ndarray, parents: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """One cell per row, drawn from its parent's row of `probabilities` by controlled rounding.

    The rows sharing a parent get each cell's expected count rounded down, the remainder goes
    to cells drawn by their fractional parts, and the result is shuffled: the sample's tables
    follow the model's far closer than independent draws, whose noise swamps thin cells.
    """
    out = np.empty(parents.size, dtype=np.int64)
    order = np.argsort(parents, kind="stable")
    values, starts, counts = np.unique(parents[order], return_index=True, return_counts=True)
    for value, start, count in zip(values, starts, counts, strict=True):
        weights = probabilities[value]
        mass = weights.sum()
        p = weights / mass if mass > 0 else np.full(weights.size, 1.0 / weights.size)
        expected = p * count
        whole = np.floor(expected).astype(np.int64)
        extra = int(count - whole.sum())
        if extra > 0:
            fraction = expected - whole
            whole[rng.choice(p.size, extra, replace=False, p=fraction / fraction.sum())] += 1
        cells = np.repeat(np.arange(p.size), whole)
        rng.shuffle(cells)
        out[order[start : start + count]] = cells
    return out


def _check_groups(array: np.ndarray, size: int) -> np.ndarray:
    array = np.asarray(array)
    if (
        array.shape != (size,)
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() != 0
        or set(np.unique(array)) != set(range(int(array.max()) + 1))
    ):
        raise ValueError(f"a cell-to-group map must number {size} cells' groups from 0 on")
    return array.astype(np.int64)


def _check_probabilities(array: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(array, dtype=np.float64)
    if array.shape != shape or np.any(array < 0) or not np.isclose(array.sum(), 1.0):
        raise ValueError(f"a marginal must be a probability table of shape {shape}")
    return array
