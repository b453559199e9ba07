"""Simulated rows follow the declared distributions and dependencies, and seeds repeat them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from fedsynth.prep.population import FEMALE_NAMES, MALE_NAMES
from fedsynth.simulation import SimulationError, SimulationSpec, Simulator

CLINIC = """
name: clinic
variables:
  - name: x
    type: numerical
    distribution: {family: normal, mean: 0, sd: 1}
  - name: group
    type: categorical
    probabilities: {a: 0.3, b: 0.7}
  - name: outcome
    type: boolean
    logit: "-1.0 + 0.8 * x + (0.5 if group == 'b' else 0)"
  - name: y
    type: numerical
    equation: "3 + 2.5 * x"
    noise: {family: normal, sd: 1}
    bounds: {min: -5, max: 11}
  - name: z
    type: numerical
    equation: "3 + 2.5 * x"
    noise: {family: normal, sd: 1}
    bounds: {min: -2, max: 8, outside: clip}
  - name: severity
    type: categorical
    given: [group, outcome]
    table:
      - when: {group: a, outcome: true}
        probabilities: {mild: 0.2, severe: 0.8}
      - when: {group: b, outcome: true}
        probabilities: {mild: 0.6, severe: 0.4}
    otherwise: {mild: 0.9, severe: 0.1}
  - name: lab
    type: numerical
    distribution: {family: lognormal, mean_log: 1, sd_log: 0.3}
    missing: {rate: 0.4, when: "group == 'a'"}
  - name: note_taken
    type: numerical
    dtype: int
    distribution: {family: poisson, rate: 3}
    missing: 0.1
  - name: admitted
    type: date
    origin: "2024-01-01"
    days: {distribution: {family: uniform, low: 0, high: 366}}
    max: "2024-12-31"
  - name: stay
    type: numerical
    dtype: int
    distribution: {family: exponential, scale: 4}
    bounds: {min: 1, max: 30}
  - name: discharged
    type: date
    origin: admitted
    days: {equation: stay}
  - name: sex
    type: categorical
    probabilities: {F: 0.5, M: 0.5}
  - name: first_name
    type: name
    part: first
    sex: sex
  - name: record
    type: sequence
    prefix: "R"
    width: 5
"""
ROWS = 20_000


@pytest.fixture(scope="module")
def clinic() -> pd.DataFrame:
    return Simulator(SimulationSpec.from_yaml(CLINIC)).sample(ROWS, seed=7)


def test_logistic_coefficients_are_recovered_by_regression(clinic: pd.DataFrame) -> None:
    features = np.column_stack([clinic["x"], (clinic["group"] == "b").astype(float)])
    fit = LogisticRegression(C=np.inf).fit(features, clinic["outcome"].astype(bool))
    assert fit.coef_[0][0] == pytest.approx(0.8, abs=0.06)
    assert fit.coef_[0][1] == pytest.approx(0.5, abs=0.1)
    assert fit.intercept_[0] == pytest.approx(-1.0, abs=0.1)


def test_linear_equation_is_recovered_and_resampled_noise_stays_in_bounds(
    clinic: pd.DataFrame,
) -> None:
    inside = (clinic["x"] > -1) & (clinic["x"] < 1)
    design = np.column_stack([np.ones(inside.sum()), clinic.loc[inside, "x"]])
    coef, *_ = np.linalg.lstsq(design, clinic.loc[inside, "y"].to_numpy(), rcond=None)
    assert coef[0] == pytest.approx(3.0, abs=0.05)
    assert coef[1] == pytest.approx(2.5, abs=0.08)
    assert clinic["y"].between(-5, 11).all()
    assert (clinic["y"] == 11).sum() == 0


def test_clipped_bounds_hold_and_pile_up_at_the_edge(clinic: pd.DataFrame) -> None:
    assert clinic["z"].between(-2, 8).all()
    assert (clinic["z"] == 8).mean() > 0.01


def test_conditional_table_frequencies_match_the_declared_table(clinic: pd.DataFrame) -> None:
    expected = {("a", True): 0.8, ("b", True): 0.4, ("a", False): 0.1, ("b", False): 0.1}
    for (group, outcome), p_severe in expected.items():
        rows = clinic[(clinic["group"] == group) & (clinic["outcome"] == outcome)]
        assert (rows["severity"] == "severe").mean() == pytest.approx(p_severe, abs=0.03)


def test_marginal_frequencies_and_families_match(clinic: pd.DataFrame) -> None:
    assert (clinic["group"] == "a").mean() == pytest.approx(0.3, abs=0.015)
    assert clinic["x"].mean() == pytest.approx(0.0, abs=0.03)
    assert clinic["x"].std() == pytest.approx(1.0, abs=0.03)
    observed = clinic["lab"].dropna()
    assert np.log(observed).mean() == pytest.approx(1.0, abs=0.02)


def test_missingness_rate_and_missing_at_random_condition(clinic: pd.DataFrame) -> None:
    assert clinic["note_taken"].isna().mean() == pytest.approx(0.1, abs=0.01)
    in_a = clinic["group"] == "a"
    assert clinic.loc[in_a, "lab"].isna().mean() == pytest.approx(0.4, abs=0.025)
    assert clinic.loc[~in_a, "lab"].isna().sum() == 0


def test_dates_are_offsets_from_their_origin_within_bounds(clinic: pd.DataFrame) -> None:
    assert clinic["admitted"].min() >= pd.Timestamp("2024-01-01")
    assert clinic["admitted"].max() <= pd.Timestamp("2024-12-31")
    days = (clinic["discharged"] - clinic["admitted"]).dt.days
    assert (days == clinic["stay"].astype(int)).all()
    assert clinic["stay"].between(1, 30).all()


def test_first_names_follow_sex_and_records_are_numbered(clinic: pd.DataFrame) -> None:
    women = clinic.loc[clinic["sex"] == "F", "first_name"].str.lower()
    men = clinic.loc[clinic["sex"] == "M", "first_name"].str.lower()
    assert women.isin(FEMALE_NAMES).all()
    assert men.isin(MALE_NAMES).all()
    assert clinic["record"].iloc[0] == "R00001"
    assert clinic["record"].is_unique


def test_output_has_the_spec_schema_dtypes(clinic: pd.DataFrame) -> None:
    assert str(clinic["group"].dtype) == "category"
    assert str(clinic["outcome"].dtype) == "boolean"
    assert str(clinic["note_taken"].dtype) == "Int64"
    assert str(clinic["admitted"].dtype) == "datetime64[us]"


def test_same_seed_same_rows_and_other_seed_other_rows() -> None:
    spec = SimulationSpec.from_yaml(CLINIC)
    first = Simulator(spec).sample(500, seed=3)
    again = Simulator(spec).sample(500, seed=3)
    other = Simulator(spec).sample(500, seed=4)
    pd.testing.assert_frame_equal(first, again)
    assert not first["x"].equals(other["x"])


def test_adding_a_variable_leaves_the_others_unchanged() -> None:
    base = SimulationSpec.from_yaml(CLINIC)
    extra = SimulationSpec.from_yaml(
        CLINIC + "  - {name: extra, type: boolean, probability: 0.5}\n"
    )
    before = Simulator(base).sample(300, seed=11)
    after = Simulator(extra).sample(300, seed=11)
    pd.testing.assert_frame_equal(before, after[before.columns])


def test_bounds_that_the_noise_cannot_meet_fail_naming_the_variable() -> None:
    spec = SimulationSpec.from_yaml(
        """
name: impossible
variables:
  - name: w
    type: numerical
    equation: "100"
    noise: {family: normal, sd: 0.001}
    bounds: {min: 0, max: 10}
"""
    )
    with pytest.raises(SimulationError, match=r"'w'.*outside \[0.0, 10.0\]"):
        Simulator(spec).sample(10, seed=0)


def test_an_equation_without_a_value_fails_naming_the_variable() -> None:
    spec = SimulationSpec.from_yaml(
        """
name: broken
variables:
  - {name: a, type: numerical, distribution: {family: normal, mean: 0, sd: 1}}
  - {name: b, type: numerical, equation: "log(a - 100)"}
"""
    )
    with pytest.raises(SimulationError, match=r"'b'.*no finite value"):
        Simulator(spec).sample(20, seed=0)


def test_zero_rows_give_an_empty_table_with_the_schema_columns() -> None:
    spec = SimulationSpec.from_yaml(CLINIC)
    empty = Simulator(spec).sample(0, seed=1)
    assert len(empty) == 0
    assert list(empty.columns) == spec.table_schema().names
