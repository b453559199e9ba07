"""Synthetic numbers and dates beyond the real range: measured (BoundaryAdherence), judged by the
policy, and shown outside the overlay bins instead of being folded into the outer ones."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.audit import AuditPolicy, run
from fedsynth.audit.fidelity import boundary_adherence, fidelity
from fedsynth.audit.html import render_html
from fedsynth.frame import conform
from fedsynth.schema import TableSchema

AGES = TableSchema.model_validate(
    {
        "name": "ages",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
            {"name": "admitted", "kind": "datetime"},
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
        ],
    }
)

values = st.lists(
    st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
    min_size=1,
    max_size=40,
)


def _ages(low: int, high: int, n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return conform(
        pd.DataFrame(
            {
                "age": rng.integers(low, high + 1, n),
                "admitted": pd.Timestamp("2023-01-01")
                + pd.to_timedelta(rng.integers(0, 365, n), unit="D"),
                "sex": rng.choice(["F", "M"], n),
            }
        ),
        AGES,
    )


def _array(items: list[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in items], dtype=float)


@settings(max_examples=80, deadline=None)
@given(values, values)
def test_boundary_adherence_counts_values_one_by_one(real: list, synthetic: list) -> None:
    """SDMetrics' BoundaryAdherence, spelled out value by value (benchmarks/audit_vs_sdmetrics.py
    compares the two implementations side by side): missing synthetic values are left out
    where the real column has missing values too, and count as outside where it has none."""
    known = [v for v in real if v is not None]
    checked = [v for v in synthetic if v is not None] if len(known) < len(real) else synthetic
    ours = boundary_adherence(_array(real), _array(synthetic))
    if not known or not checked:
        assert ours is None
        return
    inside = [v is not None and min(known) <= v <= max(known) for v in checked]
    assert ours == pytest.approx(sum(inside) / len(inside), abs=1e-15)


def test_boundary_adherence_is_the_share_of_synthetic_values_in_the_real_range() -> None:
    real = np.array([21.0, 50.0, 89.0, np.nan])
    synthetic = np.array([4.0, 21.0, 60.0, 89.0, 104.0, np.nan])
    assert boundary_adherence(real, synthetic) == 3 / 5
    assert boundary_adherence(real[:3], synthetic) == 3 / 6  # no real gap: a gap is outside
    assert boundary_adherence(np.array([np.nan]), synthetic) is None


def test_synthetic_values_beyond_the_real_range_are_reported_and_plotted_outside_it() -> None:
    real = _ages(21, 89, 600, seed=0)
    synthetic = _ages(21, 89, 600, seed=1)
    synthetic.loc[synthetic.index[:29], "age"] = np.linspace(4, 20, 29).round()
    synthetic.loc[synthetic.index[29:35], "age"] = 104
    report = fidelity(real, synthetic, AGES.columns)
    age = next(s for s in report.columns if s.column == "age")
    assert age.boundary_adherence == pytest.approx(1 - 35 / 600)
    assert age.real_range == ("21", "89") and age.synthetic_range == ("4", "104")
    shown = age.distribution
    assert shown.synthetic_below == pytest.approx(29 / 600)
    assert shown.synthetic_above == pytest.approx(6 / 600)
    inside = sum(shown.synthetic)
    assert inside + shown.synthetic_below + shown.synthetic_above == pytest.approx(1.0)
    assert inside == pytest.approx(1 - 35 / 600)
    admitted = next(s for s in report.columns if s.column == "admitted")
    sex = next(s for s in report.columns if s.column == "sex")
    assert sex.boundary_adherence is None and sex.distribution.synthetic_below is None
    assert report.boundary_adherence == pytest.approx(
        (age.boundary_adherence + admitted.boundary_adherence) / 2
    )


def test_a_release_mostly_beyond_the_real_range_fails_boundary_adherence() -> None:
    real, holdout = _ages(21, 89, 400, seed=0), _ages(21, 89, 400, seed=1)
    wide = run(real, _ages(0, 120, 400, seed=2), AGES, holdout=holdout)
    failed = {c.name: c for c in wide.failed_checks}
    assert "fidelity.boundary_adherence" in failed
    assert failed["fidelity.boundary_adherence"].threshold == AuditPolicy().min_boundary_adherence
    assert wide.fidelity.boundary_adherence is not None and wide.fidelity.boundary_adherence < 0.9
    same = run(real, _ages(21, 89, 400, seed=3), AGES, holdout=holdout)
    check = next(c for c in same.checks if c.name == "fidelity.boundary_adherence")
    assert check.passed and check.value > 0.99


def test_a_release_without_numbers_or_dates_notes_boundary_adherence_unchecked() -> None:
    schema = TableSchema.model_validate(
        {"name": "t", "columns": [{"name": "sex", "kind": "categorical", "domain": ["F", "M"]}]}
    )
    frame = pd.DataFrame({"sex": ["F", "M"] * 20})
    report = run(frame, frame.copy(), schema)
    assert report.fidelity.boundary_adherence is None
    assert any(n.startswith("fidelity.boundary_adherence not checked") for n in report.notes)


def test_the_report_page_lists_columns_beyond_the_real_range_with_both_ranges() -> None:
    real, holdout = _ages(21, 89, 400, seed=0), _ages(21, 89, 400, seed=1)
    synthetic = _ages(21, 89, 400, seed=2)
    synthetic.loc[synthetic.index[:40], "age"] = 4
    page = render_html(run(real, synthetic, AGES, holdout=holdout))
    assert "Boundary adherence 0.950" in page
    assert "<tr><td>age</td><td>90.0%</td><td>21 to 89</td><td>4 to 89</td>" in page
    assert "<td>10.0%</td><td>0.0%</td></tr>" in page
    assert "fidelity.boundary_adherence" in page
