"""Property: prepared + quarantined + duplicates removed = input rows, whatever the input."""

from __future__ import annotations

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedsynth.prep import PrepSpec, prepare
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.from_yaml(
    """
name: t
columns:
  - {name: code, kind: categorical, domain: [a, b]}
  - {name: amount, kind: numerical, dtype: int, min: 0, max: 100, nullable: false}
  - {name: when, kind: datetime}
  - {name: flag, kind: boolean}
"""
)
SPEC = PrepSpec.from_yaml(
    """
source: fuzz
columns:
  code: {case: lower, values: {x: a, y: b}}
  amount: {range: {min: 0, max: 90, action: clip}}
  when: {date_formats: ["%d.%m.%Y", "%Y-%m-%d"]}
dedup: {keys: [code, when]}
"""
)
CELLS = {
    "code": st.sampled_from(["a", "B", "x", "Y", "z", "", "NA", " a "]),
    "amount": st.sampled_from(["0", "5", "99", "100", "101", "-1", "2.5", "abc", "", "1e2"]),
    "when": st.sampled_from(["01.02.2020", "2020-02-01", "2020-02-30", "soon", "", "?"]),
    "flag": st.sampled_from(["yes", "no", "TRUE", "0", "maybe", ""]),
}
ROWS = st.lists(st.fixed_dictionaries(CELLS), min_size=0, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_every_input_row_is_prepared_quarantined_or_a_counted_duplicate(rows: list[dict]) -> None:
    raw = pd.DataFrame(rows, columns=list(CELLS), dtype=object)
    result = prepare(raw, SPEC, SCHEMA)
    report = result.report
    assert report.rows_in == len(raw)
    assert report.rows_out + report.rows_quarantined + report.duplicates_removed == len(raw)
    assert len(result.prepared) == report.rows_out
    assert len({e.source_row for e in result.quarantine}) == report.rows_quarantined
    assert result.prepared["amount"].dropna().between(0, 90).all()
    assert set(result.prepared["code"].dropna().astype(str)) <= {"a", "b"}
