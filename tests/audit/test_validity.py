"""Validity of every synthetic row: schema rules, declared constraints, rejected file rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsynth.audit import ConstraintCheck, run
from fedsynth.audit.validity import check_frame, declared_checks, require_valid, validity
from fedsynth.expressions import parse
from fedsynth.io import ValidationReport
from fedsynth.schema import TableSchema
from fedsynth.synth.constraints import parse_constraints

SCHEMA = TableSchema.model_validate(
    {
        "name": "t",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
            {"name": "c", "kind": "categorical", "domain": ["a", "b"], "nullable": False},
            {"name": "low", "kind": "numerical"},
            {"name": "high", "kind": "numerical"},
        ],
    }
)
ORDERED = ConstraintCheck("low_below_high", lambda df: df["low"] < df["high"])


def _raw() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [30, 200, 40, 50, -1],
            "c": ["a", "mars", None, "b", "a"],
            "low": [1.0, 1.0, 5.0, None, 1.0],
            "high": [2.0, 2.0, 4.0, 3.0, 2.0],
        }
    )


def test_counts_each_broken_rule_and_constraint_once_per_row() -> None:
    checked = check_frame(_raw(), SCHEMA, label="synthetic")
    report = validity(checked, SCHEMA, [ORDERED])
    counts = {c.name: c.violations for c in report.checks}
    assert counts == {
        "schema.age.maximum": 1,
        "schema.age.minimum": 1,
        "schema.c.domain": 1,
        "schema.c.not_null": 1,
        "constraint.low_below_high": 2,
    }
    assert report.rows == 5
    assert report.invalid_rows == 4
    assert report.invalid_row_rate == 0.8


def test_invalid_cells_become_missing_in_the_typed_frame() -> None:
    checked = check_frame(_raw(), SCHEMA, label="synthetic")
    assert checked.frame["age"].isna().tolist() == [False, True, False, False, True]
    assert isinstance(checked.frame["c"].dtype, pd.CategoricalDtype)


def test_missing_constraint_result_counts_as_holding() -> None:
    checked = check_frame(_raw().iloc[[3]], SCHEMA, label="synthetic")
    nullable = ConstraintCheck("ordered", lambda df: df["low"].astype("Float64") < df["high"])
    assert validity(checked, SCHEMA, [nullable]).invalid_rows == 0
    assert validity(checked, SCHEMA, [ORDERED]).invalid_rows == 1


def test_constraint_returning_the_wrong_shape_is_a_clear_error() -> None:
    checked = check_frame(_raw(), SCHEMA, label="synthetic")
    bad = ConstraintCheck("scalar", lambda df: True)
    with pytest.raises(ValueError, match="constraint 'scalar' must return a boolean Series"):
        validity(checked, SCHEMA, [bad])


def test_rows_rejected_on_reading_count_as_invalid() -> None:
    checked = check_frame(_raw().iloc[[0]], SCHEMA, label="synthetic")
    rejected = ValidationReport(
        source="syn.csv",
        rows_in=3,
        rows_accepted=1,
        rows_quarantined=2,
        issues_by_column={"age": {"maximum": 2}},
    )
    report = validity(checked, SCHEMA, [], rejected=rejected)
    assert (report.rows, report.invalid_rows) == (3, 2)
    assert {c.name: c.violations for c in report.checks} == {"schema.age.maximum": 2}


def test_invalid_real_rows_are_refused_naming_column_row_and_fix() -> None:
    checked = check_frame(_raw(), SCHEMA, label="real table")
    with pytest.raises(ValueError) as caught:
        require_valid(checked, SCHEMA, label="real table")
    message = str(caught.value)
    assert "real table" in message
    assert "column 'age': 2 cell(s), e.g. row 2: above the maximum 120" in message
    assert "Fix:" in message


def test_frame_lacking_schema_columns_is_refused() -> None:
    with pytest.raises(ValueError, match=r"lacks schema columns \['high'\]"):
        check_frame(_raw().drop(columns="high"), SCHEMA, label="synthetic")


AGE = 'age(birth_date, "2024-06-30")'
DERIVED = parse_constraints([{"kind": "derived", "column": "age", "expression": AGE}])
DERIVED_NAME = f"constraint.derived(column='age', expression={AGE!r})"
PEOPLE = TableSchema.model_validate(
    {
        "name": "people",
        "columns": [
            {"name": "birth_date", "kind": "datetime"},
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
        ],
    }
)


def _people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    born = pd.Timestamp("1940-01-01") + pd.to_timedelta(rng.integers(0, 25_000, n), unit="D")
    df = pd.DataFrame({"birth_date": born, "sex": rng.choice(["F", "M"], n)})
    df["age"] = parse(AGE).evaluate(df)
    return df[PEOPLE.names]


def test_validity_counts_rows_whose_derived_column_contradicts_its_expression() -> None:
    synthetic = _people(20, 1)
    synthetic.loc[[2, 5, 11], "age"] += 1
    checked = check_frame(synthetic, PEOPLE, label="synthetic")
    checks = declared_checks(DERIVED, PEOPLE, _people(20, 0))
    report = validity(checked, PEOPLE, checks)
    assert {c.name: c.violations for c in report.checks} == {DERIVED_NAME: 3}
    assert report.invalid_rows == 3


def test_an_audit_given_a_jobs_constraints_fails_broken_derivations() -> None:
    real, synthetic = _people(200, 0), _people(200, 1)
    assert run(real, synthetic, PEOPLE, constraints=DERIVED).validity.invalid_rows == 0
    synthetic.loc[:49, "age"] -= 1
    report = run(real, synthetic, PEOPLE, constraints=DERIVED)
    assert {c.name: c.violations for c in report.validity.checks} == {DERIVED_NAME: 50}
    assert report.verdict == "fail"
    assert "validity.invalid_row_rate" in [c.name for c in report.failed_checks]
