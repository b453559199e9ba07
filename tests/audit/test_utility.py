"""TSTR vs TRTR on synthetic tables whose usefulness for the task is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsynth.audit.utility import utility
from fedsynth.schema import TableSchema


def test_training_rows_as_synthetic_give_ratio_one(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema
) -> None:
    report = utility(
        train,
        train,
        holdout,
        schema.modelled_columns,
        schema.column("diagnosis"),
        max_rows=10_000,
        seed=0,
        notes=[],
    )
    assert report.task == "classification"
    assert set(report.tstr) == {"accuracy", "macro_f1", "roc_auc"}
    assert report.primary_metric == "macro_f1"
    assert report.ratio == {"accuracy": 1.0, "macro_f1": 1.0, "roc_auc": 1.0}


def test_labels_unrelated_to_features_lose_utility(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema
) -> None:
    broken = train.copy()
    shuffled = broken["diagnosis"].sample(frac=1, random_state=0).to_numpy()
    broken["diagnosis"] = pd.Series(shuffled, index=broken.index).astype(train["diagnosis"].dtype)
    report = utility(
        train,
        broken,
        holdout,
        schema.modelled_columns,
        schema.column("diagnosis"),
        max_rows=10_000,
        seed=0,
        notes=[],
    )
    assert report.trtr["roc_auc"] > 0.85
    assert report.tstr["roc_auc"] < 0.65
    assert report.primary_ratio is not None and report.primary_ratio < 0.6


def test_regression_target_reports_r2_and_inverted_mae_ratio(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema
) -> None:
    noisy = train.copy()
    noisy["age"] = noisy["age"].astype(float) + np.random.default_rng(0).normal(0, 25, len(train))
    noisy["age"] = noisy["age"].clip(0, 120).round().astype("Int64")
    report = utility(
        train,
        noisy,
        holdout,
        schema.modelled_columns,
        schema.column("age"),
        max_rows=10_000,
        seed=0,
        notes=[],
    )
    assert report.task == "regression" and report.primary_metric == "r2"
    assert report.trtr["r2"] > 0.8
    assert report.tstr["mae"] > report.trtr["mae"]
    assert report.ratio["mae"] == pytest.approx(report.trtr["mae"] / report.tstr["mae"])
    assert report.ratio["mae"] < 1


def test_single_class_synthetic_target_still_scores() -> None:
    schema = TableSchema.model_validate(
        {
            "name": "t",
            "columns": [
                {"name": "x", "kind": "numerical"},
                {"name": "y", "kind": "boolean"},
            ],
        }
    )
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    real = pd.DataFrame({"x": x, "y": pd.array(x > 0, dtype="boolean")})
    syn = pd.DataFrame({"x": x, "y": pd.array(np.zeros(400, bool), dtype="boolean")})
    report = utility(
        real, syn, real, schema.columns, schema.column("y"), max_rows=400, seed=0, notes=[]
    )
    assert report.tstr["roc_auc"] == 0.5
    assert report.trtr["accuracy"] > 0.95


def test_a_class_with_a_single_training_row_does_not_stop_the_audit(
    train: pd.DataFrame, holdout: pd.DataFrame, schema: TableSchema
) -> None:
    rare = train.copy()
    dtype = rare["diagnosis"].dtype
    values = rare["diagnosis"].astype(str).to_numpy().copy()
    present = sorted(set(values))
    values[values == present[-1]] = present[0]
    values[0] = present[-1]
    rare["diagnosis"] = pd.Series(values, index=rare.index).astype(dtype)
    report = utility(
        rare,
        rare,
        holdout,
        schema.modelled_columns,
        schema.column("diagnosis"),
        max_rows=10_000,
        seed=0,
        notes=[],
    )
    assert report.ratio["accuracy"] == pytest.approx(1.0)
