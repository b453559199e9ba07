"""Conditional sampling: exactly n rows meeting the conditions, or a clear error."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedsynth.schema import TableSchema
from fedsynth.synth import (
    REGISTRY,
    ConditionError,
    GaussianCopula,
    MultivariateNormal,
    SamplingError,
    SequentialCART,
    Synthesizer,
    sampling,
)
from fedsynth.synth.cli import parse_condition_args
from fedsynth.synth.conditions import parse_conditions
from fedsynth.synth.dp_marginal import column_cells
from fedsynth.synth.sampling import SamplingShortfall

Make = Callable[..., pd.DataFrame]


@pytest.mark.parametrize("model", [GaussianCopula, SequentialCART])
def test_rare_category_of_half_a_percent_comes_back_exactly_n_times(
    model: type[Synthesizer], schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(4000)
    assert (real["diagnosis"] == "rare_x").mean() == pytest.approx(0.005)
    out = model().fit(real, schema).sample(500, seed=9, conditions={"diagnosis": "rare_x"})
    assert len(out) == 500
    assert (out["diagnosis"] == "rare_x").all()


def test_numerical_range_and_category_together(fitted_copula) -> None:
    model, _ = fitted_copula
    out = model.sample(300, seed=1, conditions={"age": (60, 70), "sex": "F"})
    assert len(out) == 300
    assert out["age"].between(60, 70).all() and (out["sex"] == "F").all()


def test_conditioned_column_is_never_null(fitted_copula) -> None:
    out = fitted_copula[0].sample(300, seed=2, conditions={"income": (1000, 50000)})
    assert out["income"].notna().all() and out["income"].between(1000, 50000).all()


def test_value_outside_the_domain_is_refused(fitted_copula) -> None:
    with pytest.raises(ConditionError, match="not in the domain"):
        fitted_copula[0].sample(5, conditions={"diagnosis": "plague"})


def test_range_outside_the_bounds_is_refused(fitted_copula) -> None:
    with pytest.raises(ConditionError, match="outside the bounds"):
        fitted_copula[0].sample(5, conditions={"age": (200, 300)})


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (("200", "300"), "age=200..300"),
        (("200", None), "age=200.."),
        ((None, "-5"), "age=..-5"),
        ({"min": 200, "max": 300}, "age=200..300"),
    ],
)
def test_a_range_condition_is_shown_as_the_cli_writes_it(
    schema: TableSchema, value: object, shown: str
) -> None:
    with pytest.raises(ConditionError, match=rf"^condition {re.escape(shown)}: the range is empty"):
        parse_conditions({"age": value}, schema)


@pytest.fixture
def starved_cart(
    schema: TableSchema, make_patients: Make, monkeypatch: pytest.MonkeyPatch
) -> Synthesizer:
    """A cart model whose draw budget is one draw per row asked: about half of the rows asked
    with sex=F are found."""
    model = SequentialCART().fit(make_patients(1000), schema)
    monkeypatch.setattr(sampling, "DRAWS_PER_ROW", 1)
    monkeypatch.setattr(sampling, "MIN_DRAWS", 0)
    return model


def test_sampling_error_says_how_to_keep_the_rows_found_and_the_warning_does_not(
    starved_cart: Synthesizer,
) -> None:
    model = starved_cart
    hint = r"To keep the \d+ rows found instead, pass --allow-fewer \(CLI\) or allow_fewer=True"
    with pytest.raises(SamplingError, match=rf"such rows\. {hint} \(API\)$"):
        model.sample(400, seed=3, conditions={"sex": "F"})
    with pytest.warns(SamplingShortfall) as caught:
        model.sample(400, seed=3, conditions={"sex": "F"}, allow_fewer=True)
    assert "allow" not in str(caught[0].message)


def test_value_the_model_never_saw_is_impossible(schema: TableSchema, make_patients: Make) -> None:
    real = make_patients(1000)
    real = real[real["diagnosis"] != "rare_x"]
    model = GaussianCopula().fit(real, schema)
    with pytest.raises(ConditionError, match="impossible under the model"):
        model.sample(5, conditions={"diagnosis": "rare_x"})
    cart = SequentialCART().fit(real, schema)
    with pytest.raises(SamplingError, match="diagnosis='rare_x'"):
        cart.sample(5, conditions={"diagnosis": "rare_x"})


def test_conditions_on_unmodelled_or_unknown_columns_are_refused(schema: TableSchema) -> None:
    with pytest.raises(ConditionError, match="not modelled"):
        parse_conditions({"record": "r1"}, schema)
    with pytest.raises(ConditionError, match="no such column"):
        parse_conditions({"weight": 3}, schema)
    with pytest.raises(ConditionError, match="give a range"):
        parse_conditions({"bmi": 25.0}, schema)


def test_mvn_meets_a_common_condition(schema: TableSchema, make_patients: Make) -> None:
    model = MultivariateNormal().fit(make_patients(1000), schema)
    out = model.sample(200, seed=1, conditions={"smoker": "yes"})
    assert len(out) == 200 and out["smoker"].all()


@pytest.mark.parametrize("name", ["copula", "mvn", "cart", "dp-marginal", "dp-copula", "dp-tvae"])
def test_a_date_condition_is_met_by_rows_on_that_day(
    name: str, schema: TableSchema, make_patients: Make
) -> None:
    """A date without a time asks for that day: models that learned whole days give midnight,
    DP models (which round to seconds, not to what the data showed) any time on that day."""
    real = make_patients(2000)
    day = real["admission"].mode()[0]
    # DP noise is unseeded by design; a generous budget keeps the date's weight from vanishing.
    if name == "dp-tvae":
        model: Synthesizer = REGISTRY["tvae"](epochs=2, batch_size=200, epsilon=100.0)
    else:
        model = REGISTRY[name](**({"epsilon": 100.0} if name.startswith("dp-") else {}))
    model.fit(real, schema)
    out = model.sample(20, seed=1, conditions={"admission": day.strftime("%Y-%m-%d")})
    assert len(out) == 20 and (out["admission"].dt.normalize() == day).all()
    if not name.startswith("dp-"):
        assert (out["admission"] == day).all()


def test_a_date_condition_on_a_column_with_times_takes_in_the_whole_day(
    schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(2000)
    seconds = np.random.default_rng(3).integers(0, 86_400, len(real))
    real["admission"] = real["admission"] + pd.to_timedelta(seconds, unit="s")
    day = real["admission"].dt.normalize().mode()[0]
    out = (
        GaussianCopula()
        .fit(real, schema)
        .sample(50, seed=1, conditions={"admission": day.strftime("%Y-%m-%d")})
    )
    assert (out["admission"].dt.normalize() == day).all()
    assert out["admission"].dt.hour.nunique() > 5


def test_dp_marginal_draw_inside_a_condition_narrower_than_a_bin_is_exact() -> None:
    """Bins [0, 10) and [10, 20) equally likely; given [8, 15] the first holds 2/7 of rows."""
    column = TableSchema.from_dict(
        {"name": "t", "columns": [{"name": "x", "kind": "numerical", "min": 0, "max": 20}]}
    ).columns[0]
    cells = column_cells(column, bins=2, sub_bins=1)
    drawn = np.arange(70_000) % 2
    values = cells.draw(drawn, np.random.default_rng(0), (8.0, 15.0))
    kept = ~np.isnan(values)
    assert values[kept].min() >= 8.0 and values[kept].max() <= 15.0
    assert (drawn[kept] == 0).mean() == pytest.approx(2 / 7, abs=0.01)


@given(
    column=st.sampled_from(["age", "income"]),
    low=st.integers(0, 100),
    width=st.integers(0, 100),
)
def test_cli_range_conditions_parse_to_the_same_interval(column: str, low: int, width: int) -> None:
    schema = TableSchema.from_dict(
        {
            "name": "t",
            "columns": [
                {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 200},
                {"name": "income", "kind": "numerical", "min": 0, "max": 500},
            ],
        }
    )
    parsed = parse_condition_args([f"{column}={low}..{low + width}"])
    (condition,) = parse_conditions(parsed, schema)
    assert (condition.low, condition.high) == (low, low + width)


def test_allow_fewer_returns_the_rows_found_and_says_how_many(
    starved_cart: Synthesizer,
) -> None:
    model = starved_cart
    with pytest.raises(SamplingError, match=r"only \d+ of 400 rows"):
        model.sample(400, seed=3, conditions={"sex": "F"})
    with pytest.warns(SamplingShortfall, match=r"only \d+ of 400 rows .*sex='F'"):
        out = model.sample(400, seed=3, conditions={"sex": "F"}, allow_fewer=True)
    assert 50 < len(out) < 400
    assert (out["sex"] == "F").all()
