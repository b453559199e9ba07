"""Calibration: the audit's verdicts on synthetic tables whose right answer is known."""

from __future__ import annotations

import pandas as pd
import pytest

from fedsynth.audit import AuditReport, run
from fedsynth.schema import TableSchema


def _failed(report: AuditReport) -> set[str]:
    return {c.name for c in report.failed_checks}


def test_independent_sample_of_the_same_process_passes(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    report = run(train, independent, schema, holdout=holdout, target="diagnosis")
    assert report.verdict == "pass", report.failed_checks
    assert report.failed_checks == []
    assert len(report.checks) == 15


def test_training_rows_audited_as_synthetic_fail_on_privacy(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema
) -> None:
    report = run(train, train.copy(), schema, holdout=holdout, target="diagnosis")
    assert report.verdict == "fail"
    assert {
        "privacy.exact_match_rate",
        "privacy.unique_match_rate",
        "privacy.share_closer_to_train",
        "privacy.membership_auc",
    } <= _failed(report)
    assert all(name.startswith("privacy.") for name in _failed(report))


def test_independently_shuffled_columns_keep_shapes_but_fail_trends_and_detection(
    train: pd.DataFrame, holdout: pd.DataFrame, shuffled: pd.DataFrame, schema: TableSchema
) -> None:
    report = run(train, shuffled, schema, holdout=holdout)
    failed = _failed(report)
    assert "fidelity.column_shapes" not in failed
    assert {"fidelity.pair_trends", "detection.auc"} <= failed
    assert report.fidelity.column_shapes is not None and report.fidelity.column_shapes > 0.9


def test_without_holdout_the_holdout_measures_are_noted_not_guessed(
    train: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    report = run(train, independent, schema, target="diagnosis")
    names = {c.name for c in report.checks}
    assert "privacy.membership_auc" not in names
    assert "utility.primary_ratio" not in names
    assert report.privacy.membership is None
    assert any("holdout" in n for n in report.notes)


def test_unusable_inputs_are_refused_with_the_reason(
    train: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    with pytest.raises(ValueError, match="synthetic table has 3 valid row"):
        run(train, independent.iloc[:3], schema)
    with pytest.raises(ValueError, match="no column 'nope'"):
        run(train, independent, schema, target="nope")
    with pytest.raises(ValueError, match="'record' has kind 'identifier'"):
        run(train, independent, schema, target="record")


def test_identifier_columns_are_not_required_in_either_table(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    with_ids = run(train, independent, schema, holdout=holdout)
    without = run(
        train.drop(columns="record"),
        independent.drop(columns="record"),
        schema,
        holdout=holdout,
    )
    assert without.checks == with_ids.checks
    note = (
        "identifier column(s) ['record'] left out of the audit on both sides: identifiers and "
        "linkage tokens are never modelled or released"
    )
    assert note in without.notes
    with pytest.raises(ValueError, match=r"synthetic table: lacks schema columns \['income'\]"):
        run(train, independent.drop(columns=["record", "income"]), schema)
