"""Gaussian copula with per-column fitted marginals, fittable centrally or from merged statistics.

Each column maps to a standard normal score through its marginal (categories through a dense
encoding: each category owns an interval of [0, 1] as wide as its frequency). Nulls are kept as
an extra binary variable per nullable column, so their rate and their pattern (with each other
and with values) are part of the correlation matrix. The fit is two sums over rows (see
`fedsynth.synth.stats`), so `fit` is exactly `from_stats` on the statistics of the whole table.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from fedsynth.frame import conform
from fedsynth.schema import Column, TableSchema
from fedsynth.synth.base import NotFittedError, Progress, Synthesizer, register
from fedsynth.synth.conditions import Condition, ConditionError
from fedsynth.synth.constraints import ConstraintError, FixedCombinations, parse_constraints
from fedsynth.synth.encoding import SECONDS_PER_DAY, cardinality, encode, is_discrete
from fedsynth.synth.marginals import DISCRETE, EMPIRICAL, FAMILIES, Marginal, fit_marginal
from fedsynth.synth.stats import (
    DependenceStats,
    StatsError,
    SufficientStats,
    column_edges,
    marginal_stats,
    schema_edges,
)

NULL_SUFFIX = "::null"
_NO_VALUES = np.zeros(1)
"""What fills the open bounds of a column without values: its bins are never drawn from."""
_EIGEN_FLOOR = 1e-6
_GIBBS_SWEEPS = 20


@register
class GaussianCopula(Synthesizer):
    """Gaussian copula over fitted marginals; mergeable statistics make it federatable."""

    name = "copula"

    def _fit(self, df: pd.DataFrame, schema: TableSchema, progress: Progress | None) -> None:
        self.fit_marginals(marginal_stats(df, schema, _central_edges(schema, df)), progress)
        self.fit_dependence(self._dependence_round(df))

    def stats(
        self,
        df: pd.DataFrame,
        schema: TableSchema,
        *,
        edges: dict[str, np.ndarray | None] | None = None,
    ) -> SufficientStats:
        """Round one: counts on public bins (from the schema's bounds unless `edges` given)."""
        df = conform(df, schema)
        return marginal_stats(df, schema, schema_edges(schema) if edges is None else edges)

    def fit_marginals(self, stats: SufficientStats, progress: Progress | None = None) -> None:
        """Fit every column's marginal from merged round-one statistics."""
        if stats.phase != "marginal":
            raise StatsError("fit_marginals needs round-one (marginal) statistics")
        schema = stats.schema
        self.schema_ = schema
        if not hasattr(self, "constraints_"):
            self.constraints_ = _constraints_without_data(self.constraints, schema)
        marginals = {}
        columns = schema.modelled_columns
        for i, column in enumerate(columns):
            marginals[column.name] = fit_marginal(column, stats.columns[column.name])
            if progress is not None:
                progress(i + 1, len(columns))
        self.marginals_ = marginals
        self.rounding_ = {
            name: _rounding(m, stats.columns[name].whole_days) for name, m in marginals.items()
        }
        self.variables_ = _variables(marginals)
        if hasattr(self, "correlation_"):
            del self.correlation_

    def dependence_stats(self, df: pd.DataFrame) -> SufficientStats:
        """Round two: sums of normal scores and their products, against the fitted marginals."""
        if not hasattr(self, "marginals_"):
            raise NotFittedError("fit the marginals (round one) before computing round two")
        return self._dependence_round(conform(df, self.schema_))

    def _dependence_round(self, df: pd.DataFrame) -> SufficientStats:
        dependence = DependenceStats.of_scores(
            list(self.variables_), self.marginals_digest(), self._scores(df)
        )
        return SufficientStats(
            schema=self.schema_, phase="dependence", columns={}, dependence=dependence
        )

    def fit_dependence(self, stats: SufficientStats) -> None:
        """Finish the fit: the correlation matrix from merged round-two statistics."""
        dep = stats.dependence
        if stats.phase != "dependence" or dep is None:
            raise StatsError("fit_dependence needs round-two (dependence) statistics")
        if dep.marginals_digest != self.marginals_digest() or dep.variables != self.variables_:
            raise StatsError("these dependence statistics were computed against other marginals")
        self.correlation_ = _correlation(dep)

    @classmethod
    def from_stats(
        cls,
        marginal: SufficientStats,
        dependence: SufficientStats,
        *,
        constraints: list[Any] | None = None,
    ) -> GaussianCopula:
        """A fitted copula from merged round-one and round-two statistics."""
        model = cls(constraints=constraints)
        model.fit_marginals(marginal)
        model.fit_dependence(dependence)
        return model

    def marginals_digest(self) -> str:
        """SHA-256 of the fitted marginals: ties round-two statistics to the marginals used."""
        state, arrays = self._marginal_state()
        digest = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
        for name in sorted(arrays):
            digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
        return digest.hexdigest()

    def marginal_report(self) -> dict[str, dict[str, Any]]:
        """Chosen family, parameters and KS statistic of every column."""
        return {
            name: {"family": m.family, "params": list(m.params), "ks": m.ks}
            for name, m in self.marginals_.items()
        }

    def _scores(self, df: pd.DataFrame) -> np.ndarray:
        """Normal scores of every variable (NaN where the value is null)."""
        out = np.zeros((len(df), len(self.variables_)))
        for j, var in enumerate(self.variables_):
            name = var.removesuffix(NULL_SUFFIX)
            marginal = self.marginals_[name]
            values = encode(df[name], self.schema_.column(name))
            if var.endswith(NULL_SUFFIX):
                p = marginal.null_rate
                u = np.where(np.isnan(values), 1 - p / 2, (1 - p) / 2)
            else:
                u = marginal.to_uniform(values)
            out[:, j] = special.ndtri(u)
        return out

    def _draw(
        self, n: int, rng: np.random.Generator, conditions: list[Condition]
    ) -> dict[str, np.ndarray]:
        self._check_complete()
        bounds = self._condition_bounds(conditions)
        z = _sample_normal(self.correlation_, n, rng, bounds)
        u = special.ndtr(z)
        out = {}
        index = {v: j for j, v in enumerate(self.variables_)}
        for name, marginal in self.marginals_.items():
            if marginal.null_rate >= 1.0:
                out[name] = np.full(n, np.nan)
                continue
            values = marginal.from_uniform(u[:, index[name]])
            if name + NULL_SUFFIX in index:
                values[u[:, index[name + NULL_SUFFIX]] > 1 - marginal.null_rate] = np.nan
            out[name] = values
        return out

    def _condition_bounds(self, conditions: list[Condition]) -> dict[int, tuple[float, float]]:
        bounds: dict[int, tuple[float, float]] = {}
        index = {v: j for j, v in enumerate(self.variables_)}
        for cond in conditions:
            marginal = self.marginals_[cond.column]
            lo_u, hi_u = marginal.interval(*self._condition_interval(cond))
            if hi_u - lo_u <= 0 or marginal.null_rate >= 1.0 or cond.column not in index:
                raise ConditionError(
                    f"condition {cond.label} is impossible under the model: it gives such "
                    "values probability 0"
                )
            bounds[index[cond.column]] = (lo_u, hi_u)
            if cond.column + NULL_SUFFIX in index:
                bounds[index[cond.column + NULL_SUFFIX]] = (0.0, 1 - marginal.null_rate)
        return {
            j: (float(special.ndtri(a)), float(special.ndtri(b))) for j, (a, b) in bounds.items()
        }

    def _check_complete(self) -> None:
        if not hasattr(self, "correlation_"):
            raise NotFittedError("the copula has marginals but no dependence; fit round two first")

    def _marginal_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        entries, arrays = [], {}
        for i, m in enumerate(self.marginals_.values()):
            entries.append(
                {
                    "name": m.name,
                    "family": m.family,
                    "params": list(m.params),
                    "support": list(m.support),
                    "ks": m.ks,
                    "null_rate": m.null_rate,
                    "decimals": m.decimals,
                    "whole_days": m.whole_days,
                }
            )
            arrays[f"grid_{i}"] = m.grid
            arrays[f"cum_{i}"] = m.cum
        return {"marginals": entries, "variables": list(self.variables_)}, arrays

    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        state, arrays = self._marginal_state()
        if hasattr(self, "correlation_"):
            arrays["correlation"] = self.correlation_
        return state, arrays

    def _restore(self, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        names = [c.name for c in self.schema_.modelled_columns]
        entries = state["marginals"]
        if [e["name"] for e in entries] != names:
            raise ValueError(f"marginals do not match the modelled columns {names}")
        marginals = {}
        for i, e in enumerate(entries):
            column = self.schema_.column(e["name"])
            marginals[e["name"]] = _load_marginal(
                e, column, arrays[f"grid_{i}"], arrays[f"cum_{i}"]
            )
        self.marginals_ = marginals
        self.variables_ = _variables(marginals)
        if list(state["variables"]) != self.variables_:
            raise ValueError("copula variables do not match the marginals")
        if "correlation" in arrays:
            corr = np.asarray(arrays["correlation"], dtype=np.float64)
            d = len(self.variables_)
            if (
                corr.shape != (d, d)
                or not np.allclose(corr, corr.T)
                or not np.all(np.isfinite(corr))
            ):
                raise ValueError(f"correlation must be a finite symmetric {d}x{d} matrix")
            np.linalg.cholesky(corr)
            self.correlation_ = corr


def _central_edges(schema: TableSchema, df: pd.DataFrame) -> dict[str, np.ndarray | None]:
    """Bin edges of a central fit: the data fill bounds the schema leaves open, except in a
    column without values, which is all null and needs bins only to exist (over [0, 1])."""
    edges = {}
    for column in schema.modelled_columns:
        values = encode(df[column.name], column)
        empty = np.isnan(values).all() and not is_discrete(column)
        edges[column.name] = column_edges(column, _NO_VALUES if empty else values)
    return edges


def _constraints_without_data(items: list[Any], schema: TableSchema) -> list[Any]:
    bound = []
    for constraint in parse_constraints(items):
        constraint = constraint.bind(schema)
        if isinstance(constraint, FixedCombinations) and constraint.combinations is None:
            raise ConstraintError(
                f"{constraint.label}: learns combinations from real rows, which a fit from "
                "statistics does not see; list them under 'combinations'"
            )
        bound.append(constraint)
    return bound


def _variables(marginals: dict[str, Marginal]) -> list[str]:
    names = [n for n, m in marginals.items() if m.null_rate < 1.0]
    nulls = [n + NULL_SUFFIX for n, m in marginals.items() if 0.0 < m.null_rate < 1.0]
    return names + nulls


def _rounding(marginal: Marginal, whole_days: bool) -> float:
    if whole_days:
        return SECONDS_PER_DAY
    return float(marginal.decimals) if not marginal.discrete else 0.0


def _correlation(dep: DependenceStats) -> np.ndarray:
    """Pairwise-complete correlation of normal scores, made positive definite."""
    n = np.maximum(dep.pair_n, 1.0)
    mean = dep.pair_sum / n
    var = np.clip(dep.pair_sum_sq / n - mean**2, 0.0, None)
    cov = dep.sum_zz / n - mean * mean.T
    scale = np.sqrt(var * var.T)
    degenerate = (scale < 1e-12) | (dep.pair_n < 2)
    corr = np.where(degenerate, 0.0, cov / np.where(degenerate, 1.0, scale))
    corr = np.clip(corr, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    values, vectors = np.linalg.eigh((corr + corr.T) / 2)
    corr = (vectors * np.maximum(values, _EIGEN_FLOOR)) @ vectors.T
    scale = np.sqrt(np.diag(corr))
    corr = corr / np.outer(scale, scale)
    return (corr + corr.T) / 2


def _sample_normal(
    corr: np.ndarray,
    n: int,
    rng: np.random.Generator,
    bounds: dict[int, tuple[float, float]],
) -> np.ndarray:
    """Standard normal rows with correlation `corr`, the bounded variables inside their bounds."""
    d = corr.shape[0]
    if not bounds:
        return rng.standard_normal((n, d)) @ np.linalg.cholesky(corr).T
    fixed = np.array(sorted(bounds))
    rest = np.array([j for j in range(d) if j not in bounds], dtype=int)
    zc = _truncated_gibbs(corr[np.ix_(fixed, fixed)], [bounds[j] for j in fixed], n, rng)
    out = np.empty((n, d))
    out[:, fixed] = zc
    if rest.size:
        s_rc = corr[np.ix_(rest, fixed)]
        weights = np.linalg.solve(corr[np.ix_(fixed, fixed)], s_rc.T).T
        cond_cov = corr[np.ix_(rest, rest)] - weights @ s_rc.T
        chol = np.linalg.cholesky(cond_cov + np.eye(rest.size) * 1e-10)
        out[:, rest] = zc @ weights.T + rng.standard_normal((n, rest.size)) @ chol.T
    return out


def _truncated_gibbs(
    corr: np.ndarray, bounds: list[tuple[float, float]], n: int, rng: np.random.Generator
) -> np.ndarray:
    """Rows of N(0, corr) restricted to a box, by Gibbs sampling over the (few) bounded columns."""
    k = corr.shape[0]
    precision = np.linalg.inv(corr)
    z = np.zeros((n, k))
    for j, (a, b) in enumerate(bounds):
        z[:, j] = _truncated_normal(np.zeros(n), 1.0, a, b, rng)
    for _ in range(_GIBBS_SWEEPS if k > 1 else 0):
        for j, (a, b) in enumerate(bounds):
            others = [i for i in range(k) if i != j]
            mean = -z[:, others] @ precision[j, others] / precision[j, j]
            z[:, j] = _truncated_normal(mean, 1 / np.sqrt(precision[j, j]), a, b, rng)
    return z


def _truncated_normal(
    mean: np.ndarray, sd: float, a: float, b: float, rng: np.random.Generator
) -> np.ndarray:
    lo = special.ndtr((a - mean) / sd)
    hi = special.ndtr((b - mean) / sd)
    u = lo + rng.random(mean.shape) * (hi - lo)
    return np.clip(mean + sd * special.ndtri(np.clip(u, 1e-300, 1 - 1e-16)), a, b)


def _load_marginal(
    entry: dict[str, Any], column: Column, grid: np.ndarray, cum: np.ndarray
) -> Marginal:
    family = str(entry["family"])
    if family not in FAMILIES and family not in (EMPIRICAL, DISCRETE):
        raise ValueError(f"column {entry['name']!r}: unknown family {family!r}")
    params = tuple(float(p) for p in entry["params"])
    if family in FAMILIES and len(params) != _param_count(family):
        raise ValueError(f"column {entry['name']!r}: {family} needs {_param_count(family)} params")
    grid = np.asarray(grid, dtype=np.float64)
    cum = np.asarray(cum, dtype=np.float64)
    sizes = _table_sizes(family, column, cum)
    if grid.shape != (sizes[0],) or cum.shape != (sizes[1],):
        raise ValueError(
            f"column {entry['name']!r}: a {family} marginal needs {sizes[0]} grid points and "
            f"{sizes[1]} cumulative probabilities, the file holds shapes {grid.shape} and "
            f"{cum.shape}; the model file is corrupt or from an incompatible version: fit again"
        )
    if family in (EMPIRICAL, DISCRETE) and (
        not np.all(np.isfinite(grid))
        or np.any(np.diff(grid) < 0)
        or np.any(np.diff(cum) < 0)
        or not np.isclose(cum[-1], 1.0)
    ):
        raise ValueError(f"column {entry['name']!r}: grid or cumulative probabilities are invalid")
    null_rate = float(entry["null_rate"])
    if not 0.0 <= null_rate <= 1.0:
        raise ValueError(f"column {entry['name']!r}: null rate {null_rate} is not in [0, 1]")
    return Marginal(
        name=str(entry["name"]),
        family=family,
        params=params,
        support=(float(entry["support"][0]), float(entry["support"][1])),
        ks=float(entry["ks"]),
        grid=grid,
        cum=cum,
        null_rate=null_rate,
        decimals=int(entry["decimals"]),
        whole_days=bool(entry["whole_days"]),
    )


def _table_sizes(family: str, column: Column, cum: np.ndarray) -> tuple[int, int]:
    """Sizes of a marginal's grid and cumulative table: one code per category (plus the 0 the
    cumulative starts at), one probability per grid point, or none for a parametric family."""
    if family == DISCRETE:
        return cardinality(column), cardinality(column) + 1
    if family == EMPIRICAL:
        return max(cum.size, 2), max(cum.size, 2)
    return 0, 0


def _param_count(family: str) -> int:
    return {"t": 3}.get(family, 2)
