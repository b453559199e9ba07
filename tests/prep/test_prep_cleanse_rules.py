"""Each cleansing rule: what it changes, what it quarantines, and the report's counts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.prep import PrepSpec, prepare
from fedsynth.prep.report import REDACTED, write_quarantine
from fedsynth.prep.spec import DEFAULT_MISSING_TOKENS, ColumnSpec, PrepSpecError
from fedsynth.prep.standardize import clean_text
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.from_yaml(
    """
name: visits
columns:
  - {name: visit, kind: categorical, domain: [a, b, c, d, e, f]}
  - {name: name, kind: identifier}
  - {name: temp, kind: numerical, min: 30, max: 45}
  - {name: count, kind: numerical, dtype: int, nullable: false}
  - {name: day, kind: datetime}
  - {name: kind, kind: categorical, domain: [x, y]}
"""
)


def _raw(**overrides: list[str]) -> pd.DataFrame:
    base = {
        "visit": ["a", "b", "c"],
        "name": ["Ann", "Bob", "Cy"],
        "temp": ["37.0", "38.5", "36.6"],
        "count": ["1", "2", "3"],
        "day": ["2024-01-01", "2024-01-02", "2024-01-03"],
        "kind": ["x", "y", "x"],
    }
    base.update(overrides)
    return pd.DataFrame(base)


def _spec(text: str = "") -> PrepSpec:
    return PrepSpec.from_yaml("source: s\n" + text)


def _reasons(result) -> set[tuple[int, str, str]]:
    return {(e.source_row, e.column, e.rule) for e in result.quarantine}


def test_missing_tokens_become_null() -> None:
    result = prepare(_raw(temp=["NA", "?", "-999"]), _spec(), SCHEMA)
    assert result.prepared["temp"].isna().all()
    assert result.report.count("missing_token", "temp") == 3


def test_missing_tokens_become_null_under_case_folding() -> None:
    raw = _raw(kind=["NA", " N/A ", "X"])
    result = prepare(raw, _spec("columns: {kind: {case: lower}}"), SCHEMA)
    assert result.quarantine == []
    assert result.prepared["kind"].tolist()[2] == "x"
    assert result.prepared["kind"][:2].isna().all()
    assert result.report.count("missing_token", "kind") == 2


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([*DEFAULT_MISSING_TOKENS, "na", " NA ", "Null", "n/a"]),
            st.text(max_size=6),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_case_option_never_changes_which_cells_are_missing(values: list[str]) -> None:
    series = pd.Series(values, dtype=object)
    expected = [v.strip() in DEFAULT_MISSING_TOKENS for v in values]
    for case in (None, "lower", "upper"):
        steps = clean_text(series, ColumnSpec(case=case), DEFAULT_MISSING_TOKENS)
        assert steps["final"][0].isna().tolist() == expected, case


def test_column_specific_missing_token_nulls_only_that_column() -> None:
    raw = _raw(temp=["unknown", "37", "37"], kind=["x", "unknown", "x"])
    spec = _spec("columns: {temp: {missing: [unknown]}}")
    result = prepare(raw, spec, SCHEMA)
    assert pd.isna(result.prepared["temp"].iloc[0])
    assert _reasons(result) == {(2, "kind", "domain")}


WIDE = TableSchema.from_yaml(
    """
name: wide
columns:
  - {name: balance, kind: numerical, min: -10000, max: 10000}
  - {name: score, kind: numerical, min: 0}
"""
)


def test_default_sentinel_is_a_value_where_the_column_bounds_admit_it() -> None:
    raw = pd.DataFrame({"balance": ["-999", "NA", ""], "score": ["-999", "1", "2"]})
    result = prepare(raw, _spec(), WIDE)
    assert result.prepared["balance"].tolist()[0] == -999
    assert result.prepared["balance"][1:].isna().all() and pd.isna(result.prepared["score"][0])
    assert result.report.count("missing_token", "balance") == 1
    assert result.report.count("missing_token", "score") == 1


@pytest.mark.parametrize(
    "text",
    ['missing: ["-999"]', 'columns: {balance: {missing: ["-999"]}}'],
)
def test_sentinel_the_spec_lists_is_missing_even_where_the_bounds_admit_it(text: str) -> None:
    raw = pd.DataFrame({"balance": ["-999", "5"], "score": ["1", "2"]})
    result = prepare(raw, _spec(text), WIDE)
    assert pd.isna(result.prepared["balance"][0]) and result.prepared["balance"][1] == 5
    assert result.report.count("missing_token", "balance") == 1


def test_trim_is_counted_and_applied() -> None:
    result = prepare(_raw(kind=[" x", "y ", "x"]), _spec(), SCHEMA)
    assert result.prepared["kind"].astype(str).tolist() == ["x", "y", "x"]
    assert result.report.count("trim", "kind") == 2


def test_value_map_recodes_and_may_null() -> None:
    spec = _spec("columns: {kind: {case: lower, values: {yes: x, no: y, unsure: null}}}")
    result = prepare(_raw(kind=["YES", "No", "unsure"]), spec, SCHEMA)
    assert result.prepared["kind"].astype(object).tolist()[:2] == ["x", "y"]
    assert pd.isna(result.prepared["kind"].iloc[2])
    assert result.report.count("value_map", "kind") == 3


def test_value_outside_the_domain_is_quarantined_with_reason() -> None:
    result = prepare(_raw(kind=["x", "z", "x"]), _spec(), SCHEMA)
    assert result.report.rows_quarantined == 1
    assert _reasons(result) == {(2, "kind", "domain")}
    assert "map it under 'values'" in result.quarantine[0].reason


def test_text_that_is_not_a_number_is_quarantined() -> None:
    result = prepare(_raw(temp=["37", "hot", "36"]), _spec(), SCHEMA)
    assert _reasons(result) == {(2, "temp", "type")}
    assert result.quarantine[0].value == "hot"


def test_fraction_in_an_integer_column_is_quarantined() -> None:
    result = prepare(_raw(count=["1", "2.5", "3.0"]), _spec(), SCHEMA)
    assert _reasons(result) == {(2, "count", "type")}
    assert result.prepared["count"].tolist() == [1, 3]


def test_unparseable_and_impossible_dates_are_quarantined() -> None:
    result = prepare(_raw(day=["2024-02-30", "2024-01-02", "yesterday"]), _spec(), SCHEMA)
    assert _reasons(result) == {(1, "day", "type"), (3, "day", "type")}


def test_schema_bounds_quarantine_values_outside() -> None:
    result = prepare(_raw(temp=["29.9", "45.1", "45"]), _spec(), SCHEMA)
    assert _reasons(result) == {(1, "temp", "minimum"), (2, "temp", "maximum")}


def test_required_column_left_empty_is_quarantined() -> None:
    result = prepare(_raw(count=["1", "", "3"]), _spec(), SCHEMA)
    assert _reasons(result) == {(2, "count", "not_null")}


@pytest.mark.parametrize(
    ("action", "expected"),
    [("nullify", [None, 40.0, None]), ("clip", [35.0, 40.0, 42.0])],
)
def test_range_rule_nulls_or_clips(action: str, expected: list[float | None]) -> None:
    spec = _spec(f"columns: {{temp: {{range: {{min: 35, max: 42, action: {action}}}}}}}")
    result = prepare(_raw(temp=["31", "40", "44"]), spec, SCHEMA)
    got = [None if pd.isna(v) else v for v in result.prepared["temp"]]
    assert got == expected
    assert result.report.count(f"range_{action}", "temp") == 2


def test_range_rule_quarantine_names_the_range() -> None:
    spec = _spec("columns: {temp: {range: {min: 35, max: 42}}}")
    result = prepare(_raw(temp=["31", "40", "41"]), spec, SCHEMA)
    assert _reasons(result) == {(1, "temp", "range")}
    assert "[35.0, 42.0]" in result.quarantine[0].reason


def test_unit_conversion_applies_before_range_rules() -> None:
    spec = _spec("columns: {temp: {unit: {from: F, to: C}, range: {min: 35, max: 42}}}")
    result = prepare(_raw(temp=["98.6", "100.4", "212"]), spec, SCHEMA)
    assert result.prepared["temp"].tolist() == pytest.approx([37.0, 38.0])
    assert _reasons(result) == {(3, "temp", "range")}


RATIOS = TableSchema.from_yaml(
    """
name: ratios
columns:
  - {name: a, kind: numerical}
  - {name: b, kind: numerical}
  - {name: ratio, kind: numerical}
"""
)


def test_infinite_derived_value_is_quarantined_not_written() -> None:
    raw = pd.DataFrame({"a": ["1", "-1", "4", "0"], "b": ["0", "0", "2", "0"]})
    result = prepare(raw, _spec("derive: [{name: ratio, expr: a / b}]"), RATIOS)
    assert np.isfinite(result.prepared["ratio"].dropna()).all()
    assert result.prepared["ratio"].tolist()[0] == 2.0 and pd.isna(result.prepared["ratio"][1])
    assert _reasons(result) == {(1, "ratio", "not_finite"), (2, "ratio", "not_finite")}
    assert all("divided by zero" in e.reason for e in result.quarantine)
    assert result.report.rows_quarantined == 2 and result.report.rows_out == 2


def test_unit_conversion_overflowing_to_infinity_is_quarantined() -> None:
    raw = pd.DataFrame({"a": ["1e308", "2"], "b": ["1", "1"], "ratio": ["1", "1"]})
    spec = _spec("columns: {a: {unit: {from: x, to: y, factor: 10}}}")
    result = prepare(raw, spec, RATIOS)
    assert _reasons(result) == {(1, "a", "not_finite")}
    assert result.prepared["a"].tolist() == [20.0]


def test_unit_converted_values_of_an_integer_column_are_rounded_not_quarantined() -> None:
    schema = TableSchema.from_yaml(
        "name: h\ncolumns:\n  - {name: height, kind: numerical, dtype: int, min: 0, max: 300}\n"
    )
    converted = _spec("columns: {height: {unit: {from: in, to: cm}}}")
    result = prepare(pd.DataFrame({"height": ["66", "70.5"]}), converted, schema)
    assert result.prepared["height"].tolist() == [168, 179]
    assert result.quarantine == []
    as_written = prepare(pd.DataFrame({"height": ["170.5"]}), _spec(), schema)
    assert _reasons(as_written) == {(1, "height", "type")}


def test_exact_duplicates_are_removed_and_counted() -> None:
    raw = _raw(
        visit=["a", "a", "c"],
        name=["Ann", "Ann", "Cy"],
        temp=["37", "37", "37"],
        count=["1", "1", "3"],
        day=["2024-01-01"] * 3,
        kind=["x", "x", "y"],
    )
    result = prepare(raw, _spec("dedup: {}"), SCHEMA)
    assert result.report.duplicates_removed == 1
    assert result.prepared["visit"].astype(str).tolist() == ["a", "c"]


@pytest.mark.parametrize(("keep", "kept_temp"), [("first", 37.0), ("last", 38.0)])
def test_key_duplicates_keep_the_declared_row(keep: str, kept_temp: float) -> None:
    raw = _raw(visit=["a", "a", "b"], temp=["37", "38", "39"])
    result = prepare(raw, _spec(f"dedup: {{keys: [visit], keep: {keep}}}"), SCHEMA)
    assert result.report.duplicates_removed == 1
    assert result.prepared["temp"].tolist()[0] == kept_temp


def test_rows_with_an_empty_key_are_not_duplicates_of_each_other() -> None:
    schema = TableSchema.from_yaml(
        "name: t\ncolumns: [{name: k, kind: text}, {name: v, kind: numerical}]"
    )
    raw = pd.DataFrame({"k": ["", "", "a"], "v": ["1", "1", "1"]})
    result = prepare(raw, _spec("dedup: {keys: [k]}"), schema)
    assert result.report.duplicates_removed == 0


def test_direct_identifier_values_are_redacted_in_quarantine() -> None:
    schema = TableSchema.from_yaml(
        "name: t\ncolumns: [{name: name, kind: identifier, nullable: false},"
        " {name: v, kind: numerical}]"
    )
    raw = pd.DataFrame({"name": ["Ann Secret", "Bob"], "v": ["1", "x"]})
    spec = _spec("missing: []\ncolumns: {name: {values: {Bob: ''}}}")
    result = prepare(raw, spec, schema)
    assert "name" not in result.prepared.columns
    assert all("Secret" not in str(e.value) for e in result.quarantine)
    assert {e.value for e in result.quarantine if e.column == "v"} == {"x"}


def test_identifier_breaking_a_rule_is_redacted_in_quarantine() -> None:
    schema = TableSchema.from_yaml(
        "name: t\ncolumns: [{name: name, kind: identifier}, {name: v, kind: numerical}]"
    )
    raw = pd.DataFrame({"name": ["Ann Secret"], "v": ["1"]})
    spec = _spec("derive: [{name: v, expr: 'v'}]\ncolumns: {name: {type: number}}")
    result = prepare(raw, spec, schema)
    assert [e.value for e in result.quarantine] == [REDACTED]


def test_quarantine_shows_a_converted_cell_as_the_source_wrote_it() -> None:
    spec = _spec("columns: {temp: {unit: {from: F, to: C}}}")
    result = prepare(_raw(temp=["98.6", "212", "99.5"]), spec, SCHEMA)
    assert [(e.source_row, e.value, e.rule) for e in result.quarantine] == [(2, "212", "maximum")]


def test_quarantine_file_lists_row_column_value_rule_reason(tmp_path: Path) -> None:
    result = prepare(_raw(temp=["37", "hot", "50"]), _spec(), SCHEMA)
    path = tmp_path / "q.csv"
    write_quarantine(result.quarantine, path)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["source_row"], r["column"], r["value"], r["rule"]) for r in rows] == [
        ("2", "temp", "hot", "type"),
        ("3", "temp", "50", "maximum"),
    ]
    assert list(tmp_path.iterdir()) == [path]


def test_a_unit_conversion_must_land_in_the_schemas_unit() -> None:
    schema = TableSchema.from_yaml(
        "name: h\ncolumns:\n  - {name: height, kind: numerical, min: 0, max: 300, unit: cm}\n"
    )
    wrong = _spec("columns: {height: {unit: {from: in, to: m, factor: 0.0254}}}")
    with pytest.raises(PrepSpecError, match=r"'height' converts in to m, .* in cm; .*'cm'"):
        prepare(pd.DataFrame({"height": ["66"]}), wrong, schema)
    right = _spec("columns: {height: {unit: {from: in, to: cm}}}")
    assert prepare(pd.DataFrame({"height": ["66"]}), right, schema).prepared["height"].tolist() == [
        pytest.approx(167.64)
    ]
