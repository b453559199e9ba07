"""Singling out: predicates from synthetic rows that isolate one training record."""

from __future__ import annotations

import numpy as np
import pandas as pd

from fedsynth.audit.singling_out import singling_out
from fedsynth.schema import TableSchema

SCHEMA = TableSchema.model_validate({"name": "t", "columns": [{"name": "x", "kind": "numerical"}]})


def _run(synthetic_values: np.ndarray):
    train = pd.DataFrame({"x": np.arange(100.0)})
    holdout = pd.DataFrame({"x": np.arange(100.0) + 0.5})
    return singling_out(
        train,
        pd.DataFrame({"x": synthetic_values}),
        holdout,
        SCHEMA.columns,
        predicates=50,
        max_reference=1000,
        rng=np.random.default_rng(0),
    )


def test_extreme_copied_value_singles_out_its_owner_but_no_holdout_record() -> None:
    report = _run(np.zeros(50))
    assert report.predicates == 50
    assert report.success_rate == 1.0
    assert report.holdout_success_rate == 0.0


def test_central_values_single_out_nobody() -> None:
    report = _run(np.full(50, 50.0))
    assert report.success_rate == 0.0
    assert report.holdout_success_rate == 0.0
