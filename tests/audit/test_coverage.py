"""Rare-category coverage on tables with a known rare category."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.coverage import coverage
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.model_validate(
    {
        "name": "t",
        "columns": [
            {"name": "c", "kind": "categorical", "domain": ["common", "uncommon", "rare"]},
            {"name": "x", "kind": "numerical"},
        ],
    }
)


def _table(common: int, uncommon: int, rare: int) -> pd.DataFrame:
    values = ["common"] * common + ["uncommon"] * uncommon + ["rare"] * rare
    return pd.DataFrame(
        {
            "c": pd.Categorical(values, categories=["common", "uncommon", "rare"]),
            "x": np.zeros(len(values)),
        }
    )


def test_missing_rare_category_is_reported_absent() -> None:
    report = coverage(_table(970, 25, 5), _table(975, 25, 0), SCHEMA.columns, rare_share=0.01)
    assert [(r.column, r.value) for r in report.rare_categories] == [("c", "rare")]
    assert report.rare_categories[0].real_share == 0.005
    assert report.rare_present == 0.0
    assert report.rare_in_proportion == 0.0
    assert abs(report.category_coverage - 2 / 3) < 1e-12


def test_rare_category_in_proportion_passes_and_overrepresentation_does_not() -> None:
    kept = coverage(_table(970, 25, 5), _table(969, 25, 6), SCHEMA.columns, rare_share=0.01)
    assert kept.rare_present == 1.0 and kept.rare_in_proportion == 1.0
    boosted = coverage(_table(970, 25, 5), _table(955, 25, 20), SCHEMA.columns, rare_share=0.01)
    assert boosted.rare_present == 1.0 and boosted.rare_in_proportion == 0.0


def test_no_rare_category_means_nothing_to_judge() -> None:
    report = coverage(_table(50, 50, 0), _table(50, 50, 0), SCHEMA.columns, rare_share=0.01)
    assert report.rare_categories == [] and report.rare_in_proportion is None
