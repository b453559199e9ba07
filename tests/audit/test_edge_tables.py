"""Ordinary edge tables get a report, not a crash: empty columns, constant datetimes, tiny
tables, few distinct rows, and free text the synthesizers leave empty."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.audit import run
from fedsynth.audit.fidelity import bin_edges, fidelity
from fedsynth.audit.html import render_html
from fedsynth.audit.utility import utility
from fedsynth.schema import TableSchema

Make = Callable[[int, int], pd.DataFrame]


def _with_column(schema: TableSchema, column: dict) -> TableSchema:
    document = schema.model_dump(mode="json")
    document["columns"].append(column)
    return TableSchema.model_validate(document)


def _empty(n: int) -> pd.Series:
    return pd.Series(pd.array([pd.NA] * n, dtype="Float64"))


def test_a_column_empty_in_both_tables_is_left_out_of_detection(
    make_patients: Make, schema: TableSchema
) -> None:
    with_empty = _with_column(schema, {"name": "empty", "kind": "numerical"})
    real, synthetic = make_patients(300, 1), make_patients(300, 3)
    real["empty"], synthetic["empty"] = _empty(300), _empty(300)
    report = run(real, synthetic, with_empty)
    assert report.detection.auc is not None
    assert any("'empty' is empty in both tables" in n for n in report.notes)


def test_a_feature_empty_in_the_synthetic_table_is_left_out_of_the_tstr_model(
    make_patients: Make, schema: TableSchema
) -> None:
    with_empty = _with_column(schema, {"name": "empty", "kind": "numerical"})
    real, holdout, synthetic = make_patients(300, 1), make_patients(300, 2), make_patients(300, 3)
    real["empty"] = holdout["empty"] = pd.Series(np.arange(300.0)).astype("Float64")
    synthetic["empty"] = _empty(300)
    report = run(real, synthetic, with_empty, holdout=holdout, target="diagnosis")
    assert report.utility is not None and report.utility.primary_ratio is not None
    assert any("'empty' is empty in the synthetic table; the TSTR" in n for n in report.notes)


def test_detection_auc_is_not_measured_when_every_modelled_column_is_empty() -> None:
    schema = TableSchema.model_validate(
        {"name": "t", "columns": [{"name": "x", "kind": "numerical"}]}
    )
    table = pd.DataFrame({"x": _empty(40)})
    report = run(table, table.copy(), schema)
    assert report.detection.auc is None
    assert "detection.auc" not in {c.name for c in report.checks}
    assert "ROC AUC was not measured" in render_html(report)
    assert any(
        "detection AUC not measured: every modelled column is empty" in n for n in report.notes
    )


def test_detection_auc_is_not_measured_when_identical_rows_leave_too_few_folds() -> None:
    schema = TableSchema.model_validate(
        {"name": "t", "columns": [{"name": "flag", "kind": "boolean"}]}
    )
    table = pd.DataFrame({"flag": pd.array([True, False] * 20, dtype="boolean")})
    report = run(table, table.copy(), schema)
    assert report.detection.auc is None and report.detection.pmse is not None
    assert any("too few distinct rows" in n for n in report.notes)


def test_synthetic_rows_repeated_in_a_few_groups_are_still_cross_validated() -> None:
    schema = TableSchema.model_validate(
        {
            "name": "t",
            "columns": [
                {"name": "x", "kind": "numerical"},
                {"name": "c", "kind": "categorical", "domain": ["a", "b"]},
            ],
        }
    )
    labels = pd.Categorical(["a", "b"] * 15, categories=["a", "b"])
    real = pd.DataFrame({"x": pd.Series(np.arange(30.0)).astype("Float64"), "c": labels})
    synthetic = pd.DataFrame({"x": _empty(30), "c": labels})
    report = run(real, synthetic, schema)
    assert report.detection.auc is not None


def test_a_constant_datetime_column_gets_a_distribution_and_pair_scores(
    make_patients: Make, schema: TableSchema
) -> None:
    real, synthetic = make_patients(200, 1), make_patients(200, 3)
    real["admitted"] = synthetic["admitted"] = pd.Timestamp("2024-03-04 00:00:00")
    report = fidelity(real, synthetic, schema.modelled_columns)
    admitted = next(c for c in report.columns if c.column == "admitted")
    assert admitted.score == 1.0
    assert admitted.distribution.real[np.argmax(admitted.distribution.real)] == 1.0
    with_discrete = [
        p for p in report.pairs if "admitted" in p.columns and p.metric == "ContingencySimilarity"
    ]
    assert with_discrete and all(p.score is not None for p in with_discrete)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(min_value=-1e17, max_value=1e17, allow_nan=False), min_size=1, max_size=20),
    st.sampled_from([10, 20]),
)
def test_bin_edges_are_increasing_and_hold_every_value(values: list[float], bins: int) -> None:
    present = np.array(values)
    edges = bin_edges(present, bins)
    assert len(edges) == bins + 1
    assert np.all(np.diff(edges) > 0)
    assert edges[0] <= present.min() and present.max() <= edges[-1]


@pytest.mark.parametrize("rows", [10, 12, 15])
def test_a_three_class_target_on_ten_to_fifteen_rows_is_scored(
    make_patients: Make, schema: TableSchema, rows: int
) -> None:
    train, holdout, synthetic = (
        make_patients(rows, 1),
        make_patients(rows, 2),
        make_patients(rows, 3),
    )
    assert train["diagnosis"].nunique() == 3
    report = utility(
        train,
        synthetic,
        holdout,
        schema.modelled_columns,
        schema.column("diagnosis"),
        max_rows=1000,
        seed=0,
        notes=[],
    )
    assert report is not None and report.trtr["accuracy"] is not None


def test_a_target_empty_in_the_synthetic_table_leaves_utility_unmeasured(
    make_patients: Make, schema: TableSchema
) -> None:
    train, holdout, synthetic = make_patients(100, 1), make_patients(100, 2), make_patients(100, 3)
    synthetic["score"] = _empty(100)
    notes: list[str] = []
    report = utility(
        train,
        synthetic,
        holdout,
        schema.modelled_columns,
        schema.column("score"),
        max_rows=1000,
        seed=0,
        notes=notes,
    )
    assert report is None
    assert notes == ["utility not measured: the synthetic table has no value in target 'score'"]


def test_null_free_text_in_synthetic_rows_is_not_invalid(
    make_patients: Make, schema: TableSchema
) -> None:
    with_text = _with_column(schema, {"name": "remarks", "kind": "text", "nullable": False})
    real, synthetic = make_patients(100, 1), make_patients(100, 3)
    real["remarks"] = "seen by the nurse"
    synthetic["remarks"] = pd.Series([None] * 100, dtype="string")
    report = run(real, synthetic, with_text)
    assert report.validity.invalid_rows == 0
