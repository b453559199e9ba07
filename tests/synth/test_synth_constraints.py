"""Constraints hold on every sampled row, and impossible ones fail with the constraint named."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth import (
    ConstraintError,
    GaussianCopula,
    SamplingError,
    SequentialCART,
    Synthesizer,
    parse_constraints,
)

Make = Callable[..., pd.DataFrame]

HOUSEHOLDS = TableSchema.from_dict(
    {
        "name": "households",
        "columns": [
            {"name": "city", "kind": "categorical", "domain": ["A", "B", "C"]},
            {"name": "zone", "kind": "categorical", "domain": ["1", "2", "3"]},
            {"name": "rent", "kind": "numerical", "min": -100, "max": 5000},
            {"name": "debt", "kind": "numerical", "min": -1000, "max": 100},
            {"name": "own", "kind": "numerical", "dtype": "int", "min": 0, "max": 1},
            {"name": "lease", "kind": "numerical", "dtype": "int", "min": 0, "max": 1},
            {"name": "free", "kind": "boolean"},
        ],
    }
)


def _households(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    city = rng.choice(["A", "B", "C"], n)
    zone = np.where(city == "A", "1", np.where(city == "B", rng.choice(["2", "3"], n), "3"))
    kind = rng.integers(0, 3, n)
    return conform(
        pd.DataFrame(
            {
                "city": city,
                "zone": zone,
                "rent": np.round(rng.gamma(4, 300, n), 2),
                "debt": -np.round(rng.gamma(2, 100, n), 2),
                "own": (kind == 0).astype(int),
                "lease": (kind == 1).astype(int),
                "free": kind == 2,
            }
        ),
        HOUSEHOLDS,
    )


ALL = [
    {"kind": "range", "column": "rent", "min": 100, "max": 3000},
    {"kind": "positive", "column": "rent"},
    {"kind": "negative", "column": "debt", "strict": False},
    {"kind": "fixed_combinations", "columns": ["city", "zone"]},
    {"kind": "one_hot", "columns": ["own", "lease", "free"]},
    {"kind": "predicate", "expression": "rent > 150 or city == 'C'"},
]


@pytest.mark.parametrize("model", [GaussianCopula, SequentialCART])
def test_every_constraint_holds_on_ten_thousand_rows(model: type[Synthesizer]) -> None:
    real = _households()
    fitted = model(constraints=ALL).fit(real[real["rent"].between(160, 3000)], HOUSEHOLDS)
    out = fitted.sample(10_000, seed=3)
    assert len(out) == 10_000
    assert out["rent"].between(100, 3000).all() and (out["rent"] > 0).all()
    assert (out["debt"] <= 0).all()
    seen = set(zip(real["city"], real["zone"], strict=True))
    assert set(zip(out["city"], out["zone"], strict=True)) <= seen
    hot = out["own"].astype(int) + out["lease"].astype(int) + out["free"].astype(int)
    assert (hot == 1).all()
    assert ((out["rent"] > 150) | (out["city"] == "C")).all()


def test_inequality_between_dates_holds_on_ten_thousand_rows(
    schema: TableSchema, make_patients: Make
) -> None:
    rule = [{"kind": "inequality", "low": "admission", "high": "discharge"}]
    out = GaussianCopula(constraints=rule).fit(make_patients(1500), schema).sample(10_000, seed=1)
    assert (out["discharge"] >= out["admission"]).all()


def test_unreachable_constraint_fails_naming_it(schema: TableSchema, make_patients: Make) -> None:
    """A fit from statistics never sees rows, so only sampling can find the rule unreachable."""
    real = make_patients(500)
    helper = GaussianCopula()
    marginal = helper.stats(real, schema)
    helper.fit_marginals(marginal)
    rule = [{"kind": "predicate", "expression": "age > 1000"}]
    model = GaussianCopula.from_stats(marginal, helper.dependence_stats(real), constraints=rule)
    with pytest.raises(SamplingError, match=r"predicate\(expression='age > 1000'\)"):
        model.sample(10, seed=0)


def test_constraint_broken_by_the_real_rows_is_refused_at_fit(
    schema: TableSchema, make_patients: Make
) -> None:
    model = GaussianCopula(constraints=[{"kind": "range", "column": "age", "max": 30}])
    with pytest.raises(ConstraintError, match="real rows break it"):
        model.fit(make_patients(300), schema)


def test_constraint_on_unknown_or_wrong_column_is_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    with pytest.raises(ConstraintError, match="no column 'weight'"):
        GaussianCopula(constraints=[{"kind": "positive", "column": "weight"}]).fit(
            make_patients(100), schema
        )
    with pytest.raises(ConstraintError, match="must be numerical"):
        GaussianCopula(constraints=[{"kind": "positive", "column": "sex"}]).fit(
            make_patients(100), schema
        )


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        (
            {"column": "admission", "min": 2021},
            r"'admission' holds dates but min is the number 2021",
        ),
        (
            {"column": "age", "min": "2021-01-01"},
            r"'age' is numerical but min is the date 2021-01-01",
        ),
        ({"column": "age", "min": 60, "max": 30}, r"min 60.0 is above max 30.0; swap them"),
        ({"column": "admission", "min": "2021-02-01", "max": "2021-01-01"}, r"swap them"),
        ({"column": "income", "max": float("inf")}, r"max must be a finite number"),
    ],
)
def test_range_bound_of_the_wrong_kind_or_order_is_refused_naming_it(
    bounds: dict[str, object], message: str, schema: TableSchema, make_patients: Make
) -> None:
    model = GaussianCopula(constraints=[{"kind": "range", **bounds}])
    with pytest.raises(ConstraintError, match=rf"^range\(column='{bounds['column']}'.*{message}"):
        model.fit(make_patients(100), schema)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
)
def test_range_bounds_are_checked_against_the_column_kind(
    low: float, high: float, moment: datetime
) -> None:
    """Numbers bound numbers in order; a date never bounds a number, nor a number a date."""
    schema = TableSchema.from_dict(
        {
            "name": "visits",
            "columns": [
                {"name": "dose", "kind": "numerical"},
                {"name": "visit", "kind": "datetime"},
            ],
        }
    )
    (numbers,) = parse_constraints([{"kind": "range", "column": "dose", "min": low, "max": high}])
    if low <= high:
        numbers.check_schema(schema)
    else:
        with pytest.raises(ConstraintError, match="swap them"):
            numbers.check_schema(schema)
    for column, bound in (("visit", low), ("dose", moment)):
        (rule,) = parse_constraints([{"kind": "range", "column": column, "min": bound}])
        with pytest.raises(ConstraintError, match=f"column '{column}'.*; write a"):
            rule.check_schema(schema)


def test_range_bound_with_a_time_zone_is_read_as_utc() -> None:
    (rule,) = parse_constraints(
        [{"kind": "range", "column": "admission", "min": "2020-06-01T02:00:00+02:00"}]
    )
    assert rule.min == datetime(2020, 6, 1)


def test_malformed_constraint_document_names_the_field() -> None:
    with pytest.raises(ConstraintError, match="low"):
        parse_constraints([{"kind": "inequality", "high": "b"}])


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('echo pwned')",
        "age.__class__",
        "[x for x in age]",
        "(lambda: 1)()",
    ],
)
def test_predicate_cannot_run_code(
    expression: str, schema: TableSchema, make_patients: Make
) -> None:
    model = GaussianCopula(constraints=[{"kind": "predicate", "expression": expression}])
    with pytest.raises(ConstraintError, match=r"not allowed|may be called|not modelled columns"):
        model.fit(make_patients(100), schema)
