"""Distinguishability on tables a classifier provably cannot, and provably can, separate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.detection import detection
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.model_validate(
    {
        "name": "t",
        "columns": [
            {"name": "x", "kind": "numerical"},
            {"name": "c", "kind": "categorical", "domain": ["a", "b", "c"]},
        ],
    }
)


def _table(x: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    return pd.DataFrame({"x": x, "c": pd.Categorical(rng.choice(["a", "b", "c"], size=len(x)))})


def test_same_distribution_gives_auc_near_half_and_small_pmse() -> None:
    rng = np.random.default_rng(0)
    real = _table(rng.normal(size=800), rng)
    syn = _table(rng.normal(size=800), rng)
    report = detection(real, syn, SCHEMA.columns, max_rows=5000, seed=0, notes=[])
    assert 0.4 < report.auc < 0.6
    assert report.pmse_ratio < 0.05


def test_disjoint_ranges_give_auc_one_and_pmse_at_its_maximum() -> None:
    rng = np.random.default_rng(0)
    real = _table(rng.uniform(0, 1, size=600), rng)
    syn = _table(rng.uniform(5, 6, size=600), rng)
    report = detection(real, syn, SCHEMA.columns, max_rows=5000, seed=0, notes=[])
    assert report.auc > 0.99
    assert report.pmse_ratio > 0.9
    assert abs(report.pmse - report.pmse_ratio * 0.25) < 1e-12


def test_exact_copies_are_indistinguishable_not_anti_correlated() -> None:
    rng = np.random.default_rng(1)
    real = _table(rng.normal(size=600), rng)
    report = detection(real, real.copy(), SCHEMA.columns, max_rows=5000, seed=0, notes=[])
    assert abs(report.auc - 0.5) < 0.02


def test_rows_are_capped_per_side() -> None:
    rng = np.random.default_rng(2)
    real = _table(rng.normal(size=900), rng)
    report = detection(real, real.iloc[:500], SCHEMA.columns, max_rows=300, seed=0, notes=[])
    assert (report.rows_real, report.rows_synthetic) == (300, 300)
