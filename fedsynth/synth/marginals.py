"""Per-column distributions, fitted from binned counts and chosen by goodness of fit.

Continuous columns try normal, truncated normal, log-normal, gamma, beta (on declared bounds),
uniform and Student t, each fitted by maximum likelihood on the public bins; the family with the
smallest Kolmogorov-Smirnov statistic wins, and an empirical (binned quantile) distribution is
used when none passes the KS test. Discrete columns keep their category frequencies.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, special

from fedsynth.schema import Column
from fedsynth.synth.encoding import bounds, cardinality, is_discrete
from fedsynth.synth.stats import ColumnStats

EMPIRICAL = "empirical"
DISCRETE = "categorical"
KS_CRITICAL = 1.358
"""Asymptotic KS critical value at the 5% level: a family fits when KS <= KS_CRITICAL / sqrt(n)."""
TIE_TOLERANCE = 1.0
"""Families within TIE_TOLERANCE / sqrt(n) KS of the best count as tied; the simplest is kept."""
_U_EPS = 1e-9
_MAX_ITER = 150
_FIT_BINS = 64
"""Bins (merged from the public fine bins) on which family parameters are fitted, for speed."""
HOPELESS_KS = 0.2
"""A family whose moment-matched start is this far off is not refined by likelihood."""

Curve = Callable[[np.ndarray, np.ndarray, tuple[float, float]], np.ndarray]


@dataclass(frozen=True)
class _Family:
    """A distribution family as closed-form CDF and quantile functions of unconstrained params."""

    cdf: Curve
    ppf: Curve
    start: Callable[[float, float, tuple[float, float], bool], np.ndarray | None]


def _norm_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return special.ndtr((x - p[0]) / np.exp(p[1]))


def _norm_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return p[0] + np.exp(p[1]) * special.ndtri(u)


def _truncation(p: np.ndarray, support: tuple[float, float]) -> tuple[float, float]:
    scale = np.exp(p[1])
    return special.ndtr((support[0] - p[0]) / scale), special.ndtr((support[1] - p[0]) / scale)


def _truncnorm_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    a, b = _truncation(p, support)
    return np.clip((_norm_cdf(x, p, support) - a) / (b - a), 0.0, 1.0)


def _truncnorm_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    a, b = _truncation(p, support)
    return _norm_ppf(a + u * (b - a), p, support)


def _lognorm_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.log(np.maximum(x, 0.0)) - p[0]) / np.exp(p[1])
    return special.ndtr(z)


def _lognorm_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return np.exp(p[0] + np.exp(p[1]) * special.ndtri(u))


def _gamma_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return special.gammainc(np.exp(p[0]), np.maximum(x, 0.0) / np.exp(p[1]))


def _gamma_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return np.exp(p[1]) * special.gammaincinv(np.exp(p[0]), u)


def _beta_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    unit = np.clip((x - support[0]) / (support[1] - support[0]), 0.0, 1.0)
    return special.betainc(np.exp(p[0]), np.exp(p[1]), unit)


def _beta_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    unit = special.betaincinv(np.exp(p[0]), np.exp(p[1]), u)
    return support[0] + unit * (support[1] - support[0])


def _uniform_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return np.clip((x - p[0]) / (p[1] - p[0]), 0.0, 1.0)


def _uniform_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return p[0] + u * (p[1] - p[0])


def _t_cdf(x: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return special.stdtr(np.exp(p[2]), (x - p[0]) / np.exp(p[1]))


def _t_ppf(u: np.ndarray, p: np.ndarray, support: tuple[float, float]) -> np.ndarray:
    return p[0] + np.exp(p[1]) * special.stdtrit(np.exp(p[2]), u)


def _normal_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    return np.array([mean, 0.5 * np.log(max(var, 1e-12))])


def _truncnorm_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    return _normal_start(mean, var, support, declared) if declared else None


def _positive_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    if support[0] < 0 or mean <= 0:
        return None
    sigma2 = np.log1p(max(var, 1e-12) / mean**2)
    return np.array([np.log(mean) - sigma2 / 2, 0.5 * np.log(sigma2)])


def _gamma_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    if support[0] < 0 or mean <= 0:
        return None
    var = max(var, 1e-12)
    return np.array([np.log(mean**2 / var), np.log(var / mean)])


def _beta_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    if not declared:
        return None
    width = support[1] - support[0]
    m = np.clip((mean - support[0]) / width, 1e-3, 1 - 1e-3)
    v = min(max(var / width**2, 1e-9), m * (1 - m) * 0.99)
    common = m * (1 - m) / v - 1
    return np.log(np.array([m * common, (1 - m) * common]))


def _t_start(mean: float, var: float, support: tuple[float, float], declared: bool):
    return np.array([mean, 0.5 * np.log(max(var, 1e-12)), np.log(10.0)])


FAMILIES: dict[str, _Family] = {
    "uniform": _Family(_uniform_cdf, _uniform_ppf, lambda *_: None),
    "normal": _Family(_norm_cdf, _norm_ppf, _normal_start),
    "truncnorm": _Family(_truncnorm_cdf, _truncnorm_ppf, _truncnorm_start),
    "lognorm": _Family(_lognorm_cdf, _lognorm_ppf, _positive_start),
    "gamma": _Family(_gamma_cdf, _gamma_ppf, _gamma_start),
    "beta": _Family(_beta_cdf, _beta_ppf, _beta_start),
    "t": _Family(_t_cdf, _t_ppf, _t_start),
}
"""Candidate families, simplest first (ties go to the earlier one)."""


@dataclass(frozen=True)
class Marginal:
    """One fitted column distribution, able to map values to [0, 1] and back."""

    name: str
    family: str
    params: tuple[float, ...]
    support: tuple[float, float]
    ks: float
    grid: np.ndarray
    cum: np.ndarray
    null_rate: float
    decimals: int
    whole_days: bool

    @property
    def discrete(self) -> bool:
        return self.family == DISCRETE

    def _cdf(self, x: np.ndarray) -> np.ndarray:
        return FAMILIES[self.family].cdf(x, np.asarray(self.params), self.support)

    def to_uniform(self, values: np.ndarray) -> np.ndarray:
        """Mid-distribution value in (0, 1) of each non-null value (NaN stays NaN)."""
        out = np.full(values.shape, np.nan)
        present = ~np.isnan(values)
        x = values[present]
        if self.discrete:
            codes = x.astype(int)
            u = (self.cum[codes] + self.cum[codes + 1]) / 2
        elif self.family == EMPIRICAL:
            u = np.interp(x, self.grid, self.cum)
        else:
            u = self._cdf(x)
        out[present] = np.clip(u, _U_EPS, 1 - _U_EPS)
        return out

    def from_uniform(self, u: np.ndarray) -> np.ndarray:
        """Values (codes for a discrete column) at the given probabilities."""
        u = np.clip(u, _U_EPS, 1 - _U_EPS)
        if self.discrete:
            codes = np.searchsorted(self.cum, u, side="right") - 1
            return np.clip(codes, 0, self.cum.size - 2).astype(np.float64)
        if self.family == EMPIRICAL:
            return _interp_quantile(u, self.grid, self.cum)
        params = np.asarray(self.params)
        return np.clip(FAMILIES[self.family].ppf(u, params, self.support), *self.support)

    def interval(self, lo: float, hi: float) -> tuple[float, float]:
        """The probabilities (as uniforms) between which a value lies in [lo, hi]."""
        if self.discrete:
            first, last = int(np.ceil(lo)), int(np.floor(hi))
            return float(self.cum[max(first, 0)]), float(self.cum[min(last + 1, self.cum.size - 1)])
        if self.family == EMPIRICAL:
            return float(np.interp(lo, self.grid, self.cum)), float(
                np.interp(hi, self.grid, self.cum)
            )
        ends = self._cdf(np.array([lo, hi], dtype=np.float64))
        return float(ends[0]), float(ends[1])


def fit_marginal(column: Column, stats_: ColumnStats) -> Marginal:
    """The best-fitting distribution for a column's round-one statistics."""
    total = stats_.count + stats_.null_count
    null_rate = stats_.null_count / total if total > 0 else 0.0
    if total <= 0:
        raise ValueError(f"column {column.name!r} has no rows to fit; fit on a table with rows")
    if stats_.count <= 0 and not column.nullable:
        raise ValueError(
            f"column {column.name!r} has no values to fit, and the schema does not allow nulls "
            "in it; fit on rows that hold its values, or declare it nullable"
        )
    common = {
        "name": column.name,
        "null_rate": float(null_rate),
        "decimals": stats_.decimals,
        "whole_days": stats_.whole_days,
    }
    if stats_.count <= 0:
        return _all_null(column, stats_, common)
    if is_discrete(column):
        cum = np.concatenate([[0.0], np.cumsum(stats_.counts) / stats_.count])
        return Marginal(
            family=DISCRETE,
            params=(),
            support=(0.0, float(stats_.counts.size - 1)),
            ks=0.0,
            grid=np.arange(stats_.counts.size, dtype=np.float64),
            cum=cum,
            **common,
        )
    assert stats_.edges is not None
    edges, counts, n = stats_.edges, stats_.counts, stats_.count
    cum = np.concatenate([[0.0], np.cumsum(counts) / n])
    lo_b, hi_b = bounds(column)
    declared = bool(np.isfinite(lo_b) and np.isfinite(hi_b))
    support = (float(edges[0]), float(edges[-1]))
    family, params, ks = _choose_family(edges, counts, cum, n, support, declared)
    grid, cum_grid = (edges, cum) if family == EMPIRICAL else (np.empty(0), np.empty(0))
    return Marginal(
        family=family,
        params=params,
        support=support,
        ks=ks,
        grid=grid,
        cum=cum_grid,
        **common,
    )


def _all_null(column: Column, stats_: ColumnStats, common: dict[str, Any]) -> Marginal:
    """The marginal of a column that holds only nulls: null rate 1, so sampling gives nulls.

    Its distribution is never drawn from; a uniform one over the codes or bins keeps the model
    file's checks (a grid and a cumulative table that ends at 1) as for any other column.
    """
    if is_discrete(column):
        size = cardinality(column)
        grid, cum, family = np.arange(size, dtype=np.float64), np.linspace(0, 1, size + 1), DISCRETE
    else:
        assert stats_.edges is not None
        grid, cum, family = stats_.edges[[0, -1]], np.array([0.0, 1.0]), EMPIRICAL
    support = (float(grid[0]), float(grid[-1]))
    return Marginal(family=family, params=(), support=support, ks=0.0, grid=grid, cum=cum, **common)


def _choose_family(
    edges: np.ndarray,
    counts: np.ndarray,
    cum: np.ndarray,
    n: float,
    support: tuple[float, float],
    declared: bool,
) -> tuple[str, tuple[float, ...], float]:
    mids = (edges[:-1] + edges[1:]) / 2
    mean = float(np.dot(counts, mids) / n)
    var = float(np.dot(counts, (mids - mean) ** 2) / n)
    occupied = np.flatnonzero(counts)
    observed = (float(edges[occupied[0]]), float(edges[occupied[-1] + 1]))
    fits: list[tuple[str, tuple[float, ...], float]] = []
    if occupied.size < 2:
        return EMPIRICAL, (), 0.0
    cut = np.unique(np.linspace(0, counts.size, _FIT_BINS + 1).astype(int))
    fit_edges, fit_counts = edges[cut], np.add.reduceat(counts, cut[:-1])
    for name, family in FAMILIES.items():
        if name == "uniform":
            params = np.array(observed)
        else:
            start = family.start(mean, var, support, declared)
            if start is None:
                continue
            params = start
            if _ks(family, start, edges, cum, support) < HOPELESS_KS:
                params = _binned_mle(family.cdf, start, fit_edges, fit_counts, support)
        ks = _ks(family, params, edges, cum, support)
        if np.isfinite(ks):
            fits.append((name, tuple(float(p) for p in params), ks))
    best_ks = min(ks for _, _, ks in fits)
    limit = min(best_ks + TIE_TOLERANCE / np.sqrt(n), KS_CRITICAL / np.sqrt(n))
    return next((f for f in fits if f[2] <= limit), (EMPIRICAL, (), 0.0))


def _ks(
    family: _Family,
    params: np.ndarray,
    edges: np.ndarray,
    cum: np.ndarray,
    support: tuple[float, float],
) -> float:
    """Kolmogorov-Smirnov distance measured at the bin edges (inf when the CDF is undefined)."""
    with np.errstate(all="ignore"):
        cdf = family.cdf(edges, params, support)
    return float(np.max(np.abs(cdf - cum))) if np.all(np.isfinite(cdf)) else np.inf


def _binned_mle(
    cdf_of: Curve,
    start: np.ndarray,
    edges: np.ndarray,
    counts: np.ndarray,
    support: tuple[float, float],
) -> np.ndarray:
    occupied = counts > 0

    def loss(params: np.ndarray) -> float:
        with np.errstate(all="ignore"):
            cdf = cdf_of(edges, params, support)
        mass = np.diff(cdf)[occupied]
        if not np.all(np.isfinite(mass)):
            return np.inf
        return -float(np.dot(counts[occupied], np.log(np.maximum(mass, 1e-300))))

    result = optimize.minimize(
        loss,
        start,
        method="Nelder-Mead",
        options={"maxiter": _MAX_ITER, "xatol": 1e-3, "fatol": 1e-2},
    )
    return result.x if np.isfinite(result.fun) else start


def _interp_quantile(u: np.ndarray, grid: np.ndarray, cum: np.ndarray) -> np.ndarray:
    """Inverse of the piecewise-linear binned CDF; empty bins are skipped."""
    k = np.clip(np.searchsorted(cum, u, side="left"), 1, cum.size - 1)
    lo_c, hi_c = cum[k - 1], cum[k]
    frac = np.where(hi_c > lo_c, (u - lo_c) / np.where(hi_c > lo_c, hi_c - lo_c, 1.0), 0.5)
    return grid[k - 1] + frac * (grid[k] - grid[k - 1])
