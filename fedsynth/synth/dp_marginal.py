"""DP marginal synthesis (the NIST DP-challenge winners' recipe, MST-style), mergeable by sums.

Where each quantity comes from (end-to-end DP):
- cells of each column: public schema only: categories and booleans from the domain, integers
  with a small range one cell per value, other numerical and datetime columns `bins` equal-width
  bins between the schema's declared min and max, plus a null cell when the column is nullable;
- round one, noisy (Gaussian, zCDP): every 1-way marginal (ONE_WAY_SHARE of rho);
- round two's plan, from round one's noisy counts only: each column's cells grouped so that a
  group holds at least GROUP_SIGMAS noise sds of estimated rows (rare categories pool,
  sparse neighbouring bins merge), which keeps the 2-way tables above their noise;
- round two, noisy: the 2-way marginal of every pair of columns on those groups;
- the model, post-processing only: 1-way marginals combined with every 2-way table's margins
  (inverse variance); a maximum spanning tree on the 2-way tables' L1 distance from
  independence (less the noise's expected share); each tree edge projected onto non-negative
  tables (Euclidean) and fitted to the 1-way marginals (iterative proportional fitting);
  sampling walks the tree exactly, draws a cell inside its group by round one's 1-way counts
  and a number uniformly inside its bin;
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
ONE_WAY_SHARE = 0.25
"""Share of rho for round one's 1-way marginals; round two's 2-way marginals get the rest."""
GROUP_SIGMAS = 3.0
"""A round-two cell group holds at least this many edge-noise sds of estimated count."""
_IPF_ITERATIONS = 50
_FLOOR = 1e-9
_INDEPENDENT = 1e-6
"""Weight of the independence table mixed into an edge so that no margin row is left empty."""


@dataclass(frozen=True)
class Cells:
    """How one column's values map to cells: codes, integers from `low`, or bins; null last."""

    name: str
    values: int
    nullable: bool
    edges: np.ndarray | None
    low: float
    ordered: bool

    @property
    def size(self) -> int:
        return self.values + int(self.nullable)

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


def column_cells(column: Column, bins: int) -> Cells:
    """Public cells of one column (SchemaError when the schema gives no bounds to bin on)."""
    if is_discrete(column):
        return Cells(column.name, cardinality(column), column.nullable, None, 0.0, False)
    lo, hi = bounds(column)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise SchemaError(
            f"column {column.name!r}: a DP model bins on public bounds only; declare its min and "
            "max in the schema"
        )
    if isinstance(column, NumericalColumn) and column.dtype == "int":
        low, high = math.ceil(lo), math.floor(hi)
        if high - low + 1 <= bins:
            return Cells(column.name, high - low + 1, column.nullable, None, float(low), True)
    hi = hi if hi > lo else lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    return Cells(column.name, bins, column.nullable, edges, lo, True)


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

    def start(self, schema: TableSchema) -> None:
        """Set up the public plan (cells, budget split, round one's queries) from the schema."""
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.rounding_ = public_rounding(schema)
        self.layout_ = [column_cells(c, self.bins) for c in schema.modelled_columns]
        d = len(self.layout_)
        rho = rho_for_epsilon(self.epsilon, self.delta)
        self.rho_ = rho
        self.privacy_cost_: PrivacyCost = zcdp_cost(rho, label=f"{self.name} fit")
        self.pair_rho_ = rho * (1.0 - ONE_WAY_SHARE) if d > 1 else 0.0
        sigma_one = math.sqrt(d / (2 * (rho - self.pair_rho_)))
        self.queries_ = [
            Query((i,), (np.arange(c.size),), sigma_one) for i, c in enumerate(self.layout_)
        ]
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
        if getattr(self, "round_", 0) not in (1, 2):
            raise ValueError("no measurement round is open: call start(schema) first")
        noisy = np.asarray(noisy, dtype=np.float64)
        expected = sum(q.size for q in self.queries_)
        if noisy.shape != (expected,) or not np.all(np.isfinite(noisy)):
            raise ValueError(f"round {self.round_} needs {expected} finite noisy counts")
        tables = self._split(noisy)
        if self.round_ == 1:
            self._plan(tables)
            return
        self._finish(tables)

    def _split(self, noisy: np.ndarray) -> list[np.ndarray]:
        tables, start = [], 0
        for q in self.queries_:
            tables.append(noisy[start : start + q.size].reshape(q.shape))
            start += q.size
        return tables

    def _plan(self, tables: list[np.ndarray]) -> None:
        """Round two's plan from round one's noisy 1-way counts alone (post-processing).

        Each column's cells are grouped so that every group holds enough estimated rows to
        stand out of round two's noise (rare categories pool, sparse neighbouring bins merge);
        round two measures every pair of columns on those groups.
        """
        d = len(self.layout_)
        self.one_way_noisy_ = tables
        self.one_way_sigma_ = self.queries_[0].sigma
        pairs = [(i, j) for i in range(d) for j in range(i + 1, d)]
        sigma = math.sqrt(len(pairs) / (2 * self.pair_rho_)) if pairs else 0.0
        total = _total([(t.sum(), t.size * self.one_way_sigma_**2) for t in tables])
        self.fine_ = [_simplex(t, total) for t in tables]
        threshold = GROUP_SIGMAS * sigma if pairs else math.inf
        self.groups_ = [
            _groups(cells, fine, threshold)
            for cells, fine in zip(self.layout_, self.fine_, strict=True)
        ]
        self.queries_ = [Query(p, (self.groups_[p[0]], self.groups_[p[1]]), sigma) for p in pairs]
        self.round_ = 2
        if not pairs:
            self._finish([])

    def _finish(self, pair_tables: list[np.ndarray]) -> None:
        """The tree and its consistent, non-negative marginals from both rounds' noisy counts.

        Node marginals combine the 1-way counts with the margins of every 2-way table (inverse
        variance); the tree is the maximum spanning tree of the 2-way tables' distance from
        independence; each tree edge is its table made non-negative and fitted to the nodes.
        """
        var_one = self.one_way_sigma_**2
        var_pair = self.queries_[0].sigma ** 2 if self.queries_ else 0.0
        estimates: list[list[tuple[np.ndarray, np.ndarray]]] = []
        totals = []
        for noisy, groups in zip(self.one_way_noisy_, self.groups_, strict=True):
            width = int(groups.max()) + 1
            sums = np.bincount(groups, weights=noisy, minlength=width)
            estimates.append([(sums, np.bincount(groups, minlength=width) * var_one)])
            totals.append((noisy.sum(), noisy.size * var_one))
        tables = {q.columns: t for q, t in zip(self.queries_, pair_tables, strict=True)}
        for (a, b), table in tables.items():
            rows, cols = table.shape
            estimates[a].append((table.sum(axis=1), np.full(rows, cols * var_pair)))
            estimates[b].append((table.sum(axis=0), np.full(cols, rows * var_pair)))
            totals.append((table.sum(), table.size * var_pair))
        total = _total(totals)
        self.one_way_ = [_simplex(_combine(e), total) / total for e in estimates]
        self.tree_ = _tree(len(self.layout_), tables, self.one_way_, total, math.sqrt(var_pair))
        oriented = [tables[a, b] if a < b else tables[b, a].T for a, b in self.tree_]
        self.edges_ = [
            _ipf(_simplex(table, total) / total, self.one_way_[a], self.one_way_[b])
            for (a, b), table in zip(self.tree_, oriented, strict=True)
        ]
        self.cells_ = [_probabilities(f) for f in self.fine_]
        self.round_ = 3
        del self.queries_, self.fine_, self.one_way_noisy_

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        d = len(self.layout_)
        groups = np.full((n, d), -1, dtype=np.int64)
        groups[:, 0] = _categorical(
            np.broadcast_to(self.one_way_[0], (n, self.one_way_[0].size)), rng
        )
        for (a, b), table in zip(self.tree_, self.edges_, strict=True):
            conditional = table / np.maximum(table.sum(axis=1, keepdims=True), _FLOOR)
            groups[:, b] = _categorical(conditional[groups[:, a]], rng)
        out = {}
        for j, layout in enumerate(self.layout_):
            within = _within(self.groups_[j], self.cells_[j])
            out[layout.name] = layout.draw(_categorical(within[groups[:, j]], rng), rng)
        return out

    def _check_fitted(self) -> None:
        super()._check_fitted()
        if getattr(self, "round_", 3) != 3:
            raise ValueError(f"this model is in measurement round {self.round_}; absorb it first")

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        arrays = {f"one_way_{i}": p for i, p in enumerate(self.one_way_)}
        arrays |= {f"edge_{i}": t for i, t in enumerate(self.edges_)}
        arrays |= {f"groups_{i}": g for i, g in enumerate(self.groups_)}
        arrays |= {f"cells_{i}": p for i, p in enumerate(self.cells_)}
        state = {"tree": [list(e) for e in self.tree_], "rho": self.rho_}
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.layout_ = [column_cells(c, self.bins) for c in self.schema_.modelled_columns]
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
        self.round_ = 3


def _tree(
    d: int,
    tables: dict[tuple[int, ...], np.ndarray],
    nodes: list[np.ndarray],
    total: float,
    sigma: float,
) -> list[tuple[int, int]]:
    """Maximum spanning tree (Kruskal) on each noisy 2-way table's L1 distance from independence.

    The distance is debiased by the noise's expected share, so that big tables gain nothing
    from noise alone; edges come out oriented away from column 0.
    """
    scores = []
    for (i, j), table in tables.items():
        expected = total * np.outer(nodes[i], nodes[j])
        noise = table.size * sigma * math.sqrt(2 / math.pi)
        score = float(np.abs(table - expected).sum() - noise)
        scores.append((score, i, j))
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


def _groups(cells: Cells, counts: np.ndarray, threshold: float) -> np.ndarray:
    """Cell-to-group map where each group holds about `threshold` estimated rows or more.

    Ordered columns merge runs of neighbouring cells; unordered ones keep each frequent value
    and pool the rare ones. A rare null cell joins the last group.
    """
    labels = np.zeros(cells.size, dtype=np.int64)
    values = counts[: cells.values]
    if cells.ordered:
        group, held = 0, 0.0
        for cell, count in enumerate(values):
            labels[cell] = group
            held += count
            if held >= threshold:
                group, held = group + 1, 0.0
        if held < threshold and group > 0 and labels[cells.values - 1] == group:
            labels[labels == group] = group - 1
    else:
        kept = values >= threshold
        labels[: cells.values] = np.where(kept, np.cumsum(kept) - 1, kept.sum())
    width = int(labels[: cells.values].max()) + 1
    if cells.nullable:
        labels[cells.values] = width if counts[cells.values] >= threshold else width - 1
    return labels


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


def _combine(estimates: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    weights = np.stack([1.0 / v for _, v in estimates])
    stacked = np.stack([e for e, _ in estimates])
    return (weights * stacked).sum(axis=0) / weights.sum(axis=0)


def _simplex(counts: np.ndarray, total: float) -> np.ndarray:
    """The closest non-negative table (Euclidean) that sums to `total`: noise below a cut is 0."""
    flat = counts.ravel()
    ordered = np.sort(flat)[::-1]
    excess = (np.cumsum(ordered) - total) / np.arange(1, flat.size + 1)
    cut = excess[np.nonzero(ordered > excess)[0][-1]]
    return np.maximum(counts - cut, 0.0)


def _probabilities(counts: np.ndarray) -> np.ndarray:
    clipped = np.maximum(counts, 0.0)
    total = clipped.sum()
    return clipped / total if total > 0 else np.full(counts.size, 1.0 / counts.size)


def _ipf(table: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Non-negative joint table whose margins match `rows` and `cols` (iterative fitting)."""
    joint = table + _INDEPENDENT * np.outer(rows, cols)
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
