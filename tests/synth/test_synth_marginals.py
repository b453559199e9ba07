"""The copula's marginal family is chosen by goodness of fit, with an empirical fallback."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth.marginals import EMPIRICAL, fit_marginal
from fedsynth.synth.stats import marginal_stats, schema_edges

N = 20_000

DRAWS: dict[str, tuple[Callable[[np.random.Generator], np.ndarray], dict[str, float]]] = {
    "normal": (lambda r: r.normal(50, 10, N), {}),
    "gamma": (lambda r: r.gamma(2.0, 3.0, N), {"min": 0}),
    "lognorm": (lambda r: r.lognormal(1.0, 0.5, N), {"min": 0}),
    "beta": (lambda r: r.beta(2.0, 5.0, N), {"min": 0, "max": 1}),
    "uniform": (lambda r: r.uniform(0, 10, N), {"min": 0, "max": 10}),
    "t": (lambda r: r.standard_t(3, N) * 2 + 5, {}),
    "truncnorm": (
        lambda r: stats.truncnorm.rvs(-1, 2, loc=3, scale=2, size=N, random_state=r),
        {"min": 1, "max": 7},
    ),
}


def _fit(values: np.ndarray, bounds: dict[str, float]):
    schema = TableSchema.from_dict(
        {"name": "t", "columns": [{"name": "x", "kind": "numerical", **bounds}]}
    )
    df = conform(pd.DataFrame({"x": values}), schema)
    column_stats = marginal_stats(df, schema, schema_edges(schema, df)).columns["x"]
    return fit_marginal(schema.column("x"), column_stats)


@pytest.mark.parametrize("family", sorted(DRAWS))
def test_family_of_known_distribution_is_recovered(family: str) -> None:
    draw, bounds = DRAWS[family]
    marginal = _fit(draw(np.random.default_rng(7)), bounds)
    assert marginal.family == family
    assert 0 < marginal.ks < 1.358 / np.sqrt(N)


def test_bimodal_column_falls_back_to_empirical() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, N // 2), rng.normal(8, 1, N // 2)])
    marginal = _fit(values, {})
    assert marginal.family == EMPIRICAL
    quartiles = marginal.from_uniform(np.array([0.25, 0.75]))
    np.testing.assert_allclose(quartiles, np.quantile(values, [0.25, 0.75]), atol=0.1)


def test_fitted_family_maps_values_to_uniforms_and_back() -> None:
    marginal = _fit(np.random.default_rng(3).gamma(2.0, 3.0, N), {"min": 0})
    x = np.array([0.5, 3.0, 12.0])
    np.testing.assert_allclose(marginal.from_uniform(marginal.to_uniform(x)), x, rtol=1e-6)


@pytest.mark.parametrize("kind", ["numerical", "categorical"])
def test_an_all_null_column_gets_a_null_rate_of_one(kind: str) -> None:
    extra = {"domain": ["a", "b"]} if kind == "categorical" else {"min": 0, "max": 5}
    schema = TableSchema.from_dict({"name": "t", "columns": [{"name": "x", "kind": kind, **extra}]})
    df = conform(pd.DataFrame({"x": [None] * 4}), schema)
    column_stats = marginal_stats(df, schema, schema_edges(schema, df)).columns["x"]
    assert fit_marginal(schema.column("x"), column_stats).null_rate == 1.0
    required = schema.column("x").model_copy(update={"nullable": False})
    with pytest.raises(ValueError, match="declare it nullable"):
        fit_marginal(required, column_stats)
