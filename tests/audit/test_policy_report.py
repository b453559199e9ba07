"""The policy document, the verdict it produces, and the report's JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.audit import AuditPolicy, AuditReport, PolicyError, ReportError, run
from fedsynth.schema import TableSchema


def test_policy_yaml_overrides_defaults_and_keeps_the_rest() -> None:
    policy = AuditPolicy.from_yaml("max_detection_auc: 0.7\nseed: 3\n")
    assert policy.max_detection_auc == 0.7 and policy.seed == 3
    assert policy.min_column_shapes == AuditPolicy().min_column_shapes
    assert AuditPolicy.from_yaml("") == AuditPolicy()


def test_policy_with_unknown_or_out_of_range_fields_names_them(tmp_path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("max_detection_auk: 0.7\nmin_column_shapes: 2\n")
    with pytest.raises(PolicyError) as caught:
        AuditPolicy.load(path)
    message = str(caught.value)
    assert str(path) in message
    assert "max_detection_auk" in message and "min_column_shapes" in message
    assert "Known fields:" in message
    with pytest.raises(PolicyError, match="not found"):
        AuditPolicy.load(tmp_path / "missing.yaml")


@settings(max_examples=30, deadline=None)
@given(
    st.floats(0.5, 1.0),
    st.floats(0.0, 1.0),
    st.integers(100, 10**6),
)
def test_policy_round_trips_through_json(auc: float, shapes: float, rows: int) -> None:
    policy = AuditPolicy(max_detection_auc=auc, min_column_shapes=shapes, distance_rows=rows)
    assert AuditPolicy.from_yaml(policy.model_dump_json()) == policy


def test_verdict_follows_thresholds_and_lists_failed_values(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    strict = AuditPolicy(min_column_shapes=0.999, max_detection_auc=0.5)
    report = run(train, independent, schema, holdout=holdout, policy=strict)
    failed = {c.name: c for c in report.failed_checks}
    assert report.verdict == "fail"
    assert set(failed) == {"fidelity.column_shapes", "detection.auc"}
    assert failed["fidelity.column_shapes"].threshold == 0.999
    assert failed["fidelity.column_shapes"].value == report.fidelity.column_shapes
    assert failed["detection.auc"].value == report.detection.auc

    report_json = report.to_json()
    again = AuditReport.from_json(report_json)
    assert again == report
    assert '"verdict": "fail"' in report_json


def test_tampered_report_json_is_rejected() -> None:
    with pytest.raises(ReportError, match="verdict"):
        AuditReport.from_json('{"verdict": "maybe"}', source="r.json")
    with pytest.raises(ReportError, match=r"r\.json"):
        AuditReport.from_json("not json", source="r.json")


def test_boundary_and_quasi_identifier_membership_thresholds_come_from_the_policy(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    defaults = AuditPolicy()
    assert (defaults.min_boundary_adherence, defaults.max_qi_membership_advantage) == (0.9, 0.1)
    strict = AuditPolicy.from_yaml(
        "min_boundary_adherence: 1.0\nmax_qi_membership_advantage: 0.0\n"
    )
    report = run(train, independent, schema, holdout=holdout, policy=strict)
    failed = {c.name: c for c in report.failed_checks}
    assert set(failed) == {"fidelity.boundary_adherence", "privacy.qi_membership_advantage"}
    assert failed["fidelity.boundary_adherence"].threshold == 1.0
    assert failed["fidelity.boundary_adherence"].value == report.fidelity.boundary_adherence
    membership = report.privacy.quasi_identifier_membership
    assert membership is not None
    assert failed["privacy.qi_membership_advantage"].value == membership.advantage
    assert AuditReport.from_json(report.to_json()) == report


def test_reports_written_before_boundaries_and_qi_membership_still_parse(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    document = json.loads(run(train, independent, schema, holdout=holdout).to_json())
    del document["privacy"]["quasi_identifier_membership"]
    del document["fidelity"]["boundary_adherence"]
    for shape in document["fidelity"]["columns"]:
        for key in ("boundary_adherence", "real_range", "synthetic_range"):
            del shape[key]
        for key in ("synthetic_below", "synthetic_above"):
            del shape["distribution"][key]
    for check in document["checks"]:
        del check["measure"]
    older = AuditReport.from_json(json.dumps(document))
    assert older.privacy.quasi_identifier_membership is None
    assert older.fidelity.boundary_adherence is None


def test_one_lost_column_fails_the_audit_though_the_mean_shape_passes(
    train: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    lost = independent.copy()
    low, high = train["income"].min(), train["income"].max()
    lost["income"] = np.random.default_rng(5).uniform(low, high, len(lost))
    report = run(train, lost, schema, policy=AuditPolicy())
    checks = {c.name: c for c in report.checks}
    assert checks["fidelity.column_shapes"].passed
    worst = checks["fidelity.worst_column_shape"]
    assert not worst.passed and worst.value < AuditPolicy().min_worst_column_shape
    assert worst.measure == "lowest column score, column 'income'"
    assert report.verdict == "fail"
