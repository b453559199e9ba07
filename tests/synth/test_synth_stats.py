"""Mergeable statistics: a copula from merged parts equals the copula from the whole table."""

from __future__ import annotations

from collections.abc import Callable
from functools import reduce

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth import ArtifactError, GaussianCopula, StatsError, SufficientStats
from fedsynth.synth.stats import marginal_stats, schema_edges

Make = Callable[..., pd.DataFrame]


def _federated(parts: list[pd.DataFrame], schema: TableSchema) -> GaussianCopula:
    """Two rounds as the broker runs them: merge marginal stats, then merge dependence stats."""
    broker = GaussianCopula()
    round_one = [GaussianCopula().stats(p, schema) for p in parts]
    broker.fit_marginals(reduce(SufficientStats.merge, round_one))
    round_two = [broker.dependence_stats(p) for p in parts]
    broker.fit_dependence(reduce(SufficientStats.merge, round_two))
    return broker


def test_copula_from_merged_stats_of_three_parts_equals_whole_table(
    schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(3000)
    parts = [real.iloc[:700], real.iloc[700:1900], real.iloc[1900:]]
    split = _federated(parts, schema)
    whole = _federated([real], schema)
    assert split.variables_ == whole.variables_
    np.testing.assert_allclose(split.correlation_, whole.correlation_, rtol=0, atol=1e-9)
    for name, marginal in whole.marginals_.items():
        other = split.marginals_[name]
        assert other.family == marginal.family, name
        np.testing.assert_allclose(other.params, marginal.params, rtol=0, atol=1e-9)
        np.testing.assert_allclose(other.cum, marginal.cum, rtol=0, atol=1e-9)
        assert other.null_rate == pytest.approx(marginal.null_rate, abs=1e-12)
    assert split.sample(200, seed=1).equals(whole.sample(200, seed=1))


def test_central_fit_is_the_fit_from_stats_of_the_table(
    schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(1000)
    central = GaussianCopula().fit(real, schema)
    assert central.sample(100, seed=2).equals(_federated([real], schema).sample(100, seed=2))


def test_stats_travel_as_bytes_and_come_back_equal(
    schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(500)
    model = GaussianCopula()
    first = model.stats(real, schema)
    back = SufficientStats.from_bytes(first.to_bytes())
    np.testing.assert_array_equal(back.columns["age"].counts, first.columns["age"].counts)
    model.fit_marginals(first)
    second = model.dependence_stats(real)
    again = SufficientStats.from_bytes(second.to_bytes())
    assert again.dependence is not None and second.dependence is not None
    np.testing.assert_array_equal(again.dependence.sum_zz, second.dependence.sum_zz)


def test_tampered_stats_are_refused(schema: TableSchema, make_patients: Make) -> None:
    artifact = GaussianCopula().stats(make_patients(200), schema).to_artifact()
    artifact.arrays["counts_0"] = -artifact.arrays["counts_0"]
    with pytest.raises(ArtifactError, match="non-negative"):
        SufficientStats.from_artifact(artifact)


def test_stats_of_different_schemas_do_not_merge(schema: TableSchema, make_patients: Make) -> None:
    real = make_patients(200)
    other = TableSchema.from_dict({**schema.to_dict(), "name": "elsewhere"})
    a = GaussianCopula().stats(real, schema)
    b = GaussianCopula().stats(conform(real, other), other)
    with pytest.raises(StatsError, match="different schemas"):
        a.merge(b)


def test_dependence_stats_from_other_marginals_are_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    a, b = GaussianCopula(), GaussianCopula()
    a.fit_marginals(a.stats(make_patients(300, seed=1), schema))
    b.fit_marginals(b.stats(make_patients(300, seed=2), schema))
    with pytest.raises(StatsError, match="other marginals"):
        a.fit_dependence(b.dependence_stats(make_patients(300, seed=3)))


def test_unbounded_column_needs_declared_bounds_for_mergeable_stats() -> None:
    schema = TableSchema.from_dict({"name": "t", "columns": [{"name": "x", "kind": "numerical"}]})
    df = conform(pd.DataFrame({"x": [1.0, 2.0]}), schema)
    with pytest.raises(StatsError, match="declare min and max"):
        GaussianCopula().stats(df, schema)


BOUNDED = TableSchema.from_dict(
    {
        "name": "b",
        "columns": [
            {"name": "x", "kind": "numerical", "min": -5, "max": 5},
            {"name": "k", "kind": "categorical", "domain": ["a", "b", "c"]},
        ],
    }
)


@settings(max_examples=30, deadline=None)
@given(
    xs=st.lists(st.one_of(st.none(), st.floats(-5, 5, allow_nan=False)), min_size=2, max_size=60),
    cut=st.integers(min_value=1, max_value=59),
)
def test_merged_marginal_counts_equal_counts_of_the_concatenation(
    xs: list[float | None], cut: int
) -> None:
    keys = ["a", "b", "c"]
    df = conform(
        pd.DataFrame({"x": xs, "k": [keys[i % 3] if i % 4 else None for i in range(len(xs))]}),
        BOUNDED,
    )
    cut = min(cut, len(df) - 1)
    edges = schema_edges(BOUNDED)
    whole = marginal_stats(df, BOUNDED, edges)
    merged = marginal_stats(df.iloc[:cut], BOUNDED, edges).merge(
        marginal_stats(df.iloc[cut:], BOUNDED, edges)
    )
    for name in ("x", "k"):
        np.testing.assert_array_equal(merged.columns[name].counts, whole.columns[name].counts)
        assert merged.columns[name].null_count == whole.columns[name].null_count
