"""Attribute disclosure with the meaningful-disclosure rule, on cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.attribute import attribute_disclosure
from fedsynth.schema import TableSchema

ZIPS = [f"z{i}" for i in range(200)]
SCHEMA = TableSchema.model_validate(
    {
        "name": "t",
        "columns": [
            {"name": "zip", "kind": "categorical", "domain": ZIPS, "role": "quasi_identifier"},
            {"name": "s", "kind": "categorical", "domain": ["a", "b"], "role": "sensitive"},
        ],
    }
)


def _table(zips: list[str], values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "zip": pd.Categorical(zips, categories=ZIPS),
            "s": pd.Categorical(values, categories=["a", "b"]),
        }
    )


def _run(train: pd.DataFrame, synthetic: pd.DataFrame, holdout: pd.DataFrame | None):
    zip_column, s_column = SCHEMA.columns
    return attribute_disclosure(
        train,
        synthetic,
        holdout,
        [zip_column],
        s_column,
        bins=10,
        max_records=1000,
        rng=np.random.default_rng(0),
    )


def test_copied_rows_with_unique_quasi_identifiers_disclose_every_member() -> None:
    rng = np.random.default_rng(0)
    train = _table(ZIPS, rng.choice(["a", "b"], size=200))
    holdout = _table(ZIPS, rng.choice(["a", "b"], size=200))
    report = _run(train, train.copy(), holdout)
    assert report.match_rate == 1.0
    assert report.correct_rate == 1.0
    assert report.meaningful_rate == 1.0
    assert report.holdout_meaningful_rate is not None
    assert 0.35 < report.holdout_meaningful_rate < 0.65


def test_correct_guesses_no_better_than_the_marginal_are_not_meaningful() -> None:
    values = np.array(["a"] * 180 + ["b"] * 20)
    train = _table(["z0"] * 200, values)
    report = _run(train, train.copy(), None)
    assert report.match_rate == 1.0
    assert abs(report.correct_rate - 0.9) < 1e-12
    assert abs(report.baseline_accuracy - 0.9) < 1e-12
    assert report.meaningful_rate == 0.0
    assert report.holdout_meaningful_rate is None


def test_unmatched_quasi_identifiers_disclose_nothing() -> None:
    rng = np.random.default_rng(1)
    train = _table(ZIPS[:100], rng.choice(["a", "b"], size=100))
    synthetic = _table(ZIPS[100:], rng.choice(["a", "b"], size=100))
    report = _run(train, synthetic, None)
    assert report.match_rate == 0.0 and report.meaningful_rate == 0.0
