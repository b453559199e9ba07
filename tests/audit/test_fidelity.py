"""Fidelity metrics on cases with known answers, and agreement with their textbook definitions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import ks_2samp

from fedsynth.audit.fidelity import (
    contingency_similarity,
    correlation_similarity,
    discretize,
    fidelity,
    ks_complement,
    tv_complement,
)
from fedsynth.schema import TableSchema

floats = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=60
)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@settings(max_examples=60, deadline=None)
@given(floats, floats)
def test_ks_complement_is_one_minus_scipy_ks_statistic(real: list[float], syn: list[float]) -> None:
    expected = 1 - ks_2samp(np.round(real, 14), np.round(syn, 14), method="asymp").statistic
    assert abs(ks_complement(np.array(real), np.array(syn)) - expected) < 1e-12


def test_ks_complement_known_values() -> None:
    assert ks_complement(np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0])) == 1.0
    assert ks_complement(np.array([1.0, 2.0]), np.array([5.0, 6.0])) == 0.0
    assert ks_complement(np.array([1.0, np.nan]), np.array([1.0])) == 1.0
    assert ks_complement(np.array([np.nan]), np.array([1.0])) is None


def test_tv_complement_known_value_ignores_missing() -> None:
    real = np.array([0, 0, 0, 1, -1])  # shares 3/4, 1/4 over present values
    syn = np.array([0, 1, 1, 2])  # shares 1/4, 2/4, 1/4
    expected = 1 - 0.5 * (abs(0.75 - 0.25) + abs(0.25 - 0.5) + abs(0 - 0.25))
    assert abs(tv_complement(real, syn) - expected) < 1e-12


def test_correlation_similarity_known_value() -> None:
    x = np.arange(10.0)
    score, r_real, r_syn = correlation_similarity((x, 2 * x + 1), (x, -x))
    assert r_real == 1.0 and r_syn == -1.0 and score == 0.0
    score, _, _ = correlation_similarity((x, x), (x, x))
    assert score == 1.0
    assert correlation_similarity((x, np.ones(10)), (x, x))[0] is None


def test_contingency_similarity_known_value() -> None:
    real = (np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))  # uniform over 4 cells
    syn = (np.array([0, 0, 0, 0]), np.array([0, 0, 0, 0]))  # all mass in one cell
    assert abs(contingency_similarity(real, syn) - 0.25) < 1e-12
    assert contingency_similarity(real, real) == 1.0


def test_discretize_uses_ten_equal_width_real_bins_with_open_ends() -> None:
    real = np.linspace(0, 10, 11)
    real_bins, syn_bins = discretize(real, np.array([-100.0, 0.5, 9.99, 100.0]))
    assert real_bins.min() == 1 and real_bins.max() == 10
    assert syn_bins.tolist() == [1, 1, 10, 10]


def test_fidelity_aggregates_like_sdmetrics_quality_report() -> None:
    schema = TableSchema.model_validate(
        {
            "name": "t",
            "columns": [
                {"name": "x", "kind": "numerical"},
                {"name": "y", "kind": "numerical"},
                {"name": "c", "kind": "categorical", "domain": ["a", "b"]},
            ],
        }
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    real = pd.DataFrame({"x": x, "y": x, "c": pd.Categorical(np.where(x > 0, "a", "b"))})
    report = fidelity(real, real.copy(), schema.columns)
    assert report.column_shapes == 1.0 and report.pair_trends == 1.0 and report.overall == 1.0
    metrics = {p.columns: p.metric for p in report.pairs}
    assert metrics == {
        ("x", "y"): "CorrelationSimilarity",
        ("x", "c"): "ContingencySimilarity",
        ("y", "c"): "ContingencySimilarity",
    }
    assert report.correlations.columns == ["x", "y"]
    assert report.correlations.real[0][1] == 1.0
