"""DP Gaussian copula: the copula's two rounds of sufficient statistics, each with Gaussian noise.

Where each quantity comes from (end-to-end DP):
- bins of every continuous column: the schema's declared min/max (`schema_edges(schema)`, which
  refuses a column without bounds); category domains: the schema;
- round one, noisy: per column, counts on those bins plus the null count (one row adds 1 to one
  cell of every column: L2 sensitivity sqrt(columns));
- marginals: fitted by `fit_marginal` from each column's noisy counts projected onto non-negative
  counts that sum to the noisy row count (post-processing; clipping at zero piled the noise of
  empty bins into mass the data never had), with
  decimals from the schema, so families, parameters and null rates are all private;
- round two, noisy: the upper triangle of sum(z z^T) over rows, where z are the normal scores under
  those private marginals, clipped to [-clip, clip] with nulls scored 0 (one row adds at most
  variables x clip^2 in L2 norm); the row count is the noisy total of round one;
- correlation: the noisy sums scaled by their noisy diagonal, projected to positive definite;
- output rounding and constraints: from the schema and the declared constraints only.
The fit is rho-zCDP, rho = `rho_for_epsilon(epsilon, delta)`, split `marginal_share` / rest.
Like `dp-marginal`, every round is a vector of sums that k suppliers can each noise with 1/k of
the variance and add up under secure aggregation.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from fedsynth.frame import conform
from fedsynth.privacy.accountant import PrivacyCost, rho_for_epsilon, zcdp_cost
from fedsynth.privacy.mechanisms import gaussian_noise
from fedsynth.schema import Column, TableSchema
from fedsynth.synth.base import register
from fedsynth.synth.copula import GaussianCopula
from fedsynth.synth.dp_public import (
    RoundsCentralFit,
    project_counts,
    public_constraints,
    public_rounding,
    round_costs_of,
)
from fedsynth.synth.encoding import cardinality
from fedsynth.synth.stats import (
    ColumnStats,
    DependenceStats,
    SufficientStats,
    marginal_stats,
    schema_edges,
)


@register
class DPGaussianCopula(RoundsCentralFit, GaussianCopula):
    """Gaussian copula fitted from noisy, clipped sufficient statistics; (epsilon, delta)-DP."""

    name = "dp-copula"

    def __init__(
        self,
        *,
        epsilon: float = 1.0,
        delta: float = 1e-6,
        clip: float = 3.0,
        marginal_share: float = 0.5,
        constraints: list[Any] | None = None,
    ) -> None:
        super().__init__(constraints=constraints)
        if not (math.isfinite(epsilon) and epsilon > 0):
            raise ValueError(f"epsilon must be positive and finite, got {epsilon!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        if not (math.isfinite(clip) and clip > 0):
            raise ValueError(f"clip must be positive and finite, got {clip!r}")
        if not 0 < marginal_share < 1:
            raise ValueError(f"marginal_share must be in (0, 1), got {marginal_share!r}")
        self.epsilon = epsilon
        self.delta = delta
        self.clip = clip
        self.marginal_share = marginal_share

    def get_params(self) -> dict[str, Any]:
        return {
            **super().get_params(),
            "epsilon": self.epsilon,
            "delta": self.delta,
            "clip": self.clip,
            "marginal_share": self.marginal_share,
        }

    def start(self, schema: TableSchema) -> None:
        """The public plan: bins from the schema, the budget split, round one's noise."""
        self.schema_ = schema
        self.constraints_ = public_constraints(self.constraints, schema)
        self.edges_ = schema_edges(schema)
        self.rho_ = rho_for_epsilon(self.epsilon, self.delta)
        self.privacy_cost_: PrivacyCost = zcdp_cost(self.rho_, label=f"{self.name} fit")
        self.round_rhos_ = [self.rho_ * self.marginal_share, self.rho_ * (1 - self.marginal_share)]
        self.rounds_ = self.planned_rounds(schema)
        d = len(schema.modelled_columns)
        self.sigma_ = math.sqrt(d / (2 * self.round_rhos_[0]))
        self.round_ = 1

    def planned_rounds(self, schema: TableSchema) -> int:
        """Two rounds: marginals on public bins, then the normal-score products."""
        return 2

    def round_costs(self, rows: int | None = None) -> list[PrivacyCost]:
        """Each round's cost: its share of rho (the row count does not enter)."""
        return round_costs_of(self.name, self.round_rhos_)

    def counts(self, df: pd.DataFrame) -> np.ndarray:
        """Exact sums of the current round on `df` (a supplier's rows), before noise."""
        df = conform(df, self.schema_)
        if self.round_ == 1:
            stats = marginal_stats(df, self.schema_, self.edges_)
            return np.concatenate(
                [np.append(s.counts, s.null_count) for s in stats.columns.values()]
            )
        z = np.clip(np.nan_to_num(self._scores(df), nan=0.0), -self.clip, self.clip)
        return (z.T @ z)[np.triu_indices(z.shape[1])]

    def noise_variances(self) -> np.ndarray:
        """Variance of the central noise on each sum of the current round."""
        return np.full(self._round_size(), self.sigma_**2)

    def noise(self, share: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
        """This party's noise: `share` of the central variance (1/k with k suppliers)."""
        if not 0 < share <= 1:
            raise ValueError(f"a noise share is in (0, 1], got {share!r}")
        return gaussian_noise(self._round_size(), self.sigma_ * math.sqrt(share), rng)

    def measure(
        self, df: pd.DataFrame, share: float = 1.0, rng: np.random.Generator | None = None
    ) -> np.ndarray:
        """Sums plus this party's share of the noise: what leaves a supplier."""
        return self.counts(df) + self.noise(share, rng)

    def absorb(self, noisy: np.ndarray) -> None:
        """Fit from the (summed) noisy sums of the current round and move to the next."""
        if getattr(self, "round_", 0) not in (1, 2):
            raise ValueError("no measurement round is open: call start(schema) first")
        noisy = np.asarray(noisy, dtype=np.float64)
        if noisy.shape != (self._round_size(),) or not np.all(np.isfinite(noisy)):
            raise ValueError(f"round {self.round_} needs {self._round_size()} finite sums")
        if self.round_ == 1:
            self._absorb_marginals(noisy)
        else:
            self._absorb_dependence(noisy)

    def _round_size(self) -> int:
        if self.round_ == 1:
            return sum(_cells(c, e) + 1 for c, e in self._columns_edges())
        v = len(self.variables_)
        return v * (v + 1) // 2

    def _columns_edges(self) -> list[tuple[Column, np.ndarray | None]]:
        return [(c, self.edges_[c.name]) for c in self.schema_.modelled_columns]

    def _absorb_marginals(self, noisy: np.ndarray) -> None:
        """Each column's noisy cells (its null cell if nullable) are projected onto non-negative
        counts summing to the row count, itself the mean of every column's noisy total."""
        measured, start = [], 0
        for column, edges in self._columns_edges():
            size = _cells(column, edges)
            kept = size + 1 if column.nullable else size
            measured.append((column, edges, size, noisy[start : start + kept]))
            start += size + 1
        self.n_ = max(float(np.mean([cells.sum() for *_, cells in measured])), 1.0)
        columns = {}
        rounding = public_rounding(self.schema_)
        for column, edges, size, cells in measured:
            projected = project_counts(cells, self.n_)
            columns[column.name] = ColumnStats(
                name=column.name,
                null_count=float(projected[size]) if column.nullable else 0.0,
                counts=projected[:size],
                edges=edges,
                decimals=int(rounding[column.name]) if column.kind == "numerical" else 0,
                whole_days=False,
            )
        self.fit_marginals(SufficientStats(self.schema_, "marginal", columns))
        self.rounding_ = rounding
        v = len(self.variables_)
        rho_dependence = self.rho_ * (1 - self.marginal_share)
        self.sigma_ = v * self.clip**2 / math.sqrt(2 * rho_dependence)
        self.round_ = 2

    def _absorb_dependence(self, noisy: np.ndarray) -> None:
        v = len(self.variables_)
        upper = np.zeros((v, v))
        upper[np.triu_indices(v)] = noisy
        sums = upper + np.triu(upper, 1).T
        diagonal = np.maximum(np.diag(sums), 0.0)
        dependence = DependenceStats(
            variables=list(self.variables_),
            marginals_digest=self.marginals_digest(),
            n=self.n_,
            pair_n=np.full((v, v), self.n_),
            pair_sum=np.zeros((v, v)),
            pair_sum_sq=np.repeat(diagonal[:, None], v, axis=1),
            sum_zz=sums,
        )
        self.fit_dependence(SufficientStats(self.schema_, "dependence", {}, dependence))
        self.round_ = 3

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, arrays = super()._state()
        return {**state, "rho": self.rho_}, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        super()._restore(state, arrays)
        self.rho_ = float(state["rho"])
        self.privacy_cost_ = zcdp_cost(self.rho_, label=f"{self.name} fit")
        self.round_ = 3


def _cells(column: Column, edges: np.ndarray | None) -> int:
    return cardinality(column) if edges is None else len(edges) - 1
