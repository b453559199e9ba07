"""Membership through exact quasi-identifier values: a synthesizer that reuses training
quasi-identifiers (without copying whole rows) tells members from non-members, and fails."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsynth.audit import AuditPolicy, run
from fedsynth.audit.disclosure import quasi_identifier_membership
from fedsynth.audit.html import render_html
from fedsynth.frame import conform
from fedsynth.schema import TableSchema

PEOPLE = TableSchema.model_validate(
    {
        "name": "people",
        "columns": [
            {"name": "person", "kind": "identifier"},
            {"name": "birth_date", "kind": "datetime", "role": "quasi_identifier"},
            {
                "name": "sex",
                "kind": "categorical",
                "domain": ["F", "M"],
                "role": "quasi_identifier",
            },
            {
                "name": "age",
                "kind": "numerical",
                "dtype": "int",
                "min": 0,
                "max": 120,
                "role": "quasi_identifier",
            },
            {"name": "weight_kg", "kind": "numerical", "min": 30, "max": 250},
            {
                "name": "diagnosis",
                "kind": "categorical",
                "domain": ["asthma", "copd", "fracture"],
                "role": "sensitive",
            },
        ],
    }
)
QI = ["birth_date", "sex", "age"]


def _people(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    born = pd.Timestamp("1935-01-01") + pd.to_timedelta(rng.integers(0, 25_000, n), unit="D")
    age = ((pd.Timestamp("2024-06-30") - born).days // 365.25).astype(int)
    return conform(
        pd.DataFrame(
            {
                "person": [f"p{seed}-{i}" for i in range(n)],
                "birth_date": born,
                "sex": rng.choice(["F", "M"], n),
                "age": age,
                "weight_kg": np.round(60 + 0.2 * age + rng.normal(0, 10, n), 1),
                "diagnosis": rng.choice(["asthma", "copd", "fracture"], n),
            }
        ),
        PEOPLE,
    )


def _reusing_training_quasi_identifiers(train: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Fresh rows whose quasi-identifiers are those of training people, drawn with replacement:
    no synthetic row equals a training row, but many people's exact combinations are there."""
    rng = np.random.default_rng(seed)
    synthetic = _people(len(train), seed)
    donors = train.iloc[rng.integers(0, len(train), len(train))]
    synthetic[QI] = donors[QI].to_numpy()
    return conform(synthetic, PEOPLE)


def test_synthetic_rows_reusing_training_quasi_identifiers_fail_the_membership_check() -> None:
    train, holdout = _people(800, 1), _people(800, 2)
    synthetic = _reusing_training_quasi_identifiers(train, 3)
    report = run(train, synthetic, PEOPLE, holdout=holdout)
    membership = report.privacy.quasi_identifier_membership
    assert membership is not None and membership.quasi_identifiers == QI
    assert membership.member_match_rate > 0.55
    assert membership.non_member_match_rate is not None and membership.non_member_match_rate < 0.1
    assert membership.advantage == pytest.approx(
        membership.member_match_rate - membership.non_member_match_rate
    )
    failed = {c.name: c for c in report.failed_checks}
    assert "privacy.qi_membership_advantage" in failed
    assert failed["privacy.qi_membership_advantage"].value == membership.advantage
    assert report.privacy.identity.exact_match_rate == 0.0  # whole-row copies miss it


def test_independent_draws_pass_the_membership_check() -> None:
    train, holdout = _people(800, 1), _people(800, 2)
    report = run(train, _people(800, 4), PEOPLE, holdout=holdout)
    check = next(c for c in report.checks if c.name == "privacy.qi_membership_advantage")
    assert check.passed and abs(check.value) < 0.05
    assert check.threshold == AuditPolicy().max_qi_membership_advantage
    assert check.measure is not None and "minus holdout rate" in check.measure


def test_membership_rates_count_people_whose_exact_combination_is_synthesized() -> None:
    train, holdout = _people(4, 1), _people(4, 2)
    synthetic = pd.concat([train.iloc[:3], holdout.iloc[:1]], ignore_index=True)
    synthetic["weight_kg"] = 99.0
    result = quasi_identifier_membership(
        train,
        synthetic,
        holdout,
        [PEOPLE.column(n) for n in QI],
        max_rows=100,
        rng=np.random.default_rng(0),
    )
    assert (result.members, result.non_members) == (4, 4)
    assert (result.member_match_rate, result.non_member_match_rate) == (0.75, 0.25)
    assert result.advantage == 0.5


def test_without_a_holdout_the_member_rate_is_reported_and_the_check_noted() -> None:
    train = _people(300, 1)
    report = run(train, _reusing_training_quasi_identifiers(train, 3), PEOPLE)
    membership = report.privacy.quasi_identifier_membership
    assert membership is not None and membership.advantage is None
    assert membership.member_match_rate > 0.55
    assert "privacy.qi_membership_advantage" not in {c.name for c in report.checks}
    assert "privacy.qi_membership_advantage not checked: needs a holdout" in report.notes


def test_the_report_page_explains_exact_quasi_identifier_membership() -> None:
    train, holdout = _people(300, 1), _people(300, 2)
    page = render_html(
        run(train, _reusing_training_quasi_identifiers(train, 3), PEOPLE, holdout=holdout)
    )
    assert "Exact quasi-identifier matches (membership)" in page
    assert "privacy.qi_membership_advantage" in page
    assert "attack AUC = 0.5 + difference / 2" in page
