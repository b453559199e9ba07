"""Derived columns: recomputed from their expression on every sampled row, checked against it."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.expressions import parse
from fedsynth.frame import conform
from fedsynth.schema import TableSchema
from fedsynth.synth import ConstraintError, GaussianCopula, SequentialCART, Synthesizer
from fedsynth.synth.constraints import Derived, parse_constraints

AGE = 'age(birth_date, "2024-06-30")'
DERIVED_AGE = {"kind": "derived", "column": "age", "expression": AGE}

PEOPLE = TableSchema.from_dict(
    {
        "name": "people",
        "columns": [
            {"name": "birth_date", "kind": "datetime", "min": "1900-01-01", "max": "2024-12-31"},
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 110},
            {"name": "bp", "kind": "numerical", "min": 60, "max": 260, "decimals": 0},
            {"name": "weight", "kind": "numerical", "min": 30, "max": 250, "decimals": 1},
            {"name": "half", "kind": "numerical", "decimals": 1},
            {"name": "band", "kind": "categorical", "domain": ["child", "adult"]},
            {"name": "tag", "kind": "identifier"},
        ],
    }
)


def _people(n: int = 1500) -> pd.DataFrame:
    """People whose age is derived from their birth date and whose blood pressure rises with it."""
    rng = np.random.default_rng(0)
    born = pd.Timestamp("1920-01-01") + pd.to_timedelta(rng.integers(0, 36_000, n), unit="D")
    df = pd.DataFrame({"birth_date": born, "tag": [f"t{i}" for i in range(n)]})
    df["age"] = parse(AGE).evaluate(df)
    df["bp"] = np.round(100 + 0.6 * df["age"].astype(float) + rng.normal(0, 8, n))
    df["weight"] = np.round(rng.normal(75, 12, n), 1)
    df["half"] = np.round(df["weight"] / 2, 1)
    df["band"] = np.where(df["age"] < 18, "child", "adult")
    return conform(df, PEOPLE)


def _bound(item: dict[str, object]) -> Derived:
    constraint = parse_constraints([item])[0]
    bound = constraint.bind(PEOPLE)
    assert isinstance(bound, Derived)
    return bound


def _frame(rows: list[tuple[str | None, int | None]]) -> pd.DataFrame:
    """Rows of (birth date, age) typed as PEOPLE types them."""
    df = pd.DataFrame(rows, columns=["birth_date", "age"])
    return pd.DataFrame(
        {
            "birth_date": pd.to_datetime(df["birth_date"]).astype("datetime64[us]"),
            "age": df["age"].astype("Int64"),
        }
    )


@pytest.mark.parametrize("model", [GaussianCopula, SequentialCART])
def test_every_sampled_age_equals_the_age_its_birth_date_gives(
    model: type[Synthesizer], tmp_path: Path
) -> None:
    fitted = model(constraints=[DERIVED_AGE]).fit(_people(), PEOPLE)
    fitted.save(tmp_path / "model.fsm")
    for out in (
        fitted.sample(4000, seed=1),
        Synthesizer.load(tmp_path / "model.fsm").sample(4000, seed=1),
    ):
        expected = parse(AGE).evaluate(out)
        assert (out["age"] == expected).all()
        assert out["age"].between(0, 110).all()


def test_holds_flags_rows_whose_column_contradicts_the_expression_or_the_schema() -> None:
    rows = _frame(
        [
            ("1980-07-01", 43),  # consistent: the birthday is after the reference date
            ("1980-07-01", 44),  # off by one
            ("1980-06-30", 44),  # consistent: the birthday is the reference date
            (None, None),  # no birth date, no age: null where the expression is null
            (None, 30),  # an age without a birth date
            ("1901-01-01", 110),  # derived 123, above the column's max 110
            ("2024-12-01", -1),  # derived -1, below the column's min 0
        ]
    )
    assert _bound(DERIVED_AGE).holds(rows).tolist() == [
        True,
        False,
        True,
        True,
        False,
        False,
        False,
    ]


def test_transform_recomputes_the_column_and_leaves_empty_what_the_schema_refuses() -> None:
    rows = _frame([("1980-07-01", 50), ("1980-06-30", None), (None, 30), ("1901-01-01", 99)])
    derived = _bound(DERIVED_AGE)
    fixed = derived.transform(rows.copy())
    assert fixed["age"].dtype == "Int64"
    assert fixed["age"].tolist() == [43, 44, pd.NA, pd.NA]
    assert derived.holds(fixed).tolist() == [True, True, True, False]


def test_null_expression_needs_a_nullable_column() -> None:
    strict = PEOPLE.model_copy(
        update={
            "columns": [
                c.model_copy(update={"nullable": False}) if c.name == "age" else c
                for c in PEOPLE.columns
            ]
        }
    )
    derived = parse_constraints([DERIVED_AGE])[0].bind(strict)
    rows = _frame([(None, None), ("1980-07-01", 43)])
    assert derived.holds(derived.transform(rows.copy())).tolist() == [False, True]


def test_integer_columns_get_whole_numbers_and_float_columns_their_decimals() -> None:
    rows = conform(
        pd.DataFrame(
            {
                "birth_date": [pd.Timestamp("1980-01-01")] * 3,
                "age": [0, 0, 0],
                "bp": [0.0, 0.0, 0.0],
                "weight": [70.26, 81.0, 99.99],
                "half": [0.0, 0.0, 0.0],
                "band": ["adult"] * 3,
                "tag": ["a", "b", "c"],
            }
        ),
        PEOPLE,
    )
    to_int = _bound({"kind": "derived", "column": "age", "expression": "weight / 2"})
    to_tenths = _bound({"kind": "derived", "column": "half", "expression": "weight / 3"})
    assert to_int.transform(rows.copy())["age"].tolist() == [35, 40, 50]
    assert to_tenths.transform(rows.copy())["half"].tolist() == [23.4, 27.0, 33.3]


def test_categorical_column_is_derived_as_its_domain_text() -> None:
    item = {
        "kind": "derived",
        "column": "band",
        "expression": '"child" if age < 18 else "adult"',
    }
    fitted = GaussianCopula(constraints=[item]).fit(_people(), PEOPLE)
    out = fitted.sample(2000, seed=2)
    assert ((out["age"] < 18) == (out["band"] == "child")).all()


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ({"column": "age", "expression": "age + 1"}, "cannot be derived from itself"),
        ({"column": "height", "expression": AGE}, "no column 'height'"),
        ({"column": "age", "expression": 'age(born, "2024-06-30")'}, "no column 'born'"),
        ({"column": "age", "expression": "tag * 2"}, "column 'tag' is not modelled"),
        ({"column": "age", "expression": "birth_date.year"}, "Attribute is not allowed"),
        ({"column": "age", "expression": "age(birth_date,"}, "not a valid expression"),
        ({"column": "bp", "expression": "birth_date"}, "gives datetime64.* values"),
    ],
)
def test_derived_that_does_not_fit_the_schema_is_refused_at_fit(
    item: dict[str, str], message: str
) -> None:
    model = GaussianCopula(constraints=[{"kind": "derived", **item}])
    with pytest.raises(ConstraintError, match=message):
        model.fit(_people(200), PEOPLE)


def test_real_rows_that_contradict_the_derivation_are_refused_at_fit() -> None:
    real = _people(200)
    real.loc[3, "age"] += 1
    with pytest.raises(ConstraintError, match="1 of 200 real rows break it"):
        GaussianCopula(constraints=[DERIVED_AGE]).fit(real, PEOPLE)


def _completed_years(born: date, at: date) -> int:
    """Age by hand, as a person counts it: whole years, one less before the birthday."""
    return at.year - born.year - ((at.month, at.day) < (born.month, born.day))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(st.none(), st.dates(date(1900, 1, 1), date(2024, 12, 31))),
        min_size=1,
        max_size=40,
    ),
    st.lists(st.integers(-5, 200), min_size=40, max_size=40),
)
def test_derived_age_always_is_the_completed_years_at_the_reference_date(
    births: list[date | None], sampled_ages: list[int]
) -> None:
    rows = _frame(
        [
            (None if b is None else b.isoformat(), a)
            for b, a in zip(births, sampled_ages, strict=False)
        ]
    )
    derived = _bound(DERIVED_AGE)
    fixed = derived.transform(rows)
    holds = derived.holds(fixed)
    for born, age, ok in zip(births, fixed["age"], holds, strict=True):
        expected = None if born is None else _completed_years(born, date(2024, 6, 30))
        if expected is None or not 0 <= expected <= 110:
            assert age is pd.NA and ok == (born is None)
        else:
            assert age == expected and ok
