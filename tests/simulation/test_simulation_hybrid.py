"""Hybrid synthesis: a fitted model with a rare category raised to a chosen share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedsynth.schema import TableSchema
from fedsynth.simulation import HybridError, HybridSampler, HybridSpec
from fedsynth.synth import GaussianCopula, SequentialCART

SCHEMA = TableSchema.from_dict(
    {
        "name": "visits",
        "columns": [
            {"name": "diagnosis", "kind": "categorical", "domain": ["flu", "cold", "rare_x"]},
            {"name": "severity", "kind": "categorical", "domain": ["mild", "severe"]},
            {"name": "age", "kind": "numerical", "min": 0, "max": 100},
        ],
    }
)


def _visits(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    diagnosis = rng.choice(["flu", "cold", "rare_x"], n, p=[0.6, 0.38, 0.02])
    rare = diagnosis == "rare_x"
    severe = rng.random(n) < np.where(rare, 0.8, 0.1)
    age = np.where(rare, rng.normal(70, 5, n), rng.normal(40, 12, n)).clip(0, 100)
    return pd.DataFrame(
        {"diagnosis": diagnosis, "severity": np.where(severe, "severe", "mild"), "age": age}
    )


@pytest.fixture(scope="module")
def model() -> SequentialCART:
    return SequentialCART().fit(_visits(4000, seed=0), SCHEMA)


@pytest.fixture(scope="module")
def model_rows(model: SequentialCART) -> pd.DataFrame:
    return model.sample(40_000, seed=5)


def test_rare_category_is_raised_to_the_chosen_share(model: SequentialCART) -> None:
    rows = HybridSampler(model, "diagnosis", {"rare_x": 0.2}).sample(5000, seed=1)
    assert len(rows) == 5000
    assert (rows["diagnosis"] == "rare_x").sum() == 1000


def test_conditional_structure_given_the_rare_category_stays_the_models(
    model: SequentialCART, model_rows: pd.DataFrame
) -> None:
    rows = HybridSampler(model, "diagnosis", {"rare_x": 0.2}).sample(5000, seed=1)
    boosted = rows[rows["diagnosis"] == "rare_x"]
    reference = model_rows[model_rows["diagnosis"] == "rare_x"]
    assert len(reference) > 400
    p_hybrid = (boosted["severity"] == "severe").mean()
    p_model = (reference["severity"] == "severe").mean()
    assert p_hybrid == pytest.approx(p_model, abs=0.06)
    assert p_hybrid > 0.6
    assert boosted["age"].mean() == pytest.approx(reference["age"].mean(), abs=2.0)


def test_other_rows_keep_the_models_relative_shares(
    model: SequentialCART, model_rows: pd.DataFrame
) -> None:
    rows = HybridSampler(model, "diagnosis", {"rare_x": 0.2}).sample(5000, seed=1)
    others = rows[rows["diagnosis"] != "rare_x"]
    reference = model_rows[model_rows["diagnosis"] != "rare_x"]
    assert (others["diagnosis"] == "flu").mean() == pytest.approx(
        (reference["diagnosis"] == "flu").mean(), abs=0.03
    )
    flu = others[others["diagnosis"] == "flu"]
    assert (flu["severity"] == "severe").mean() < 0.2


def test_rows_are_shuffled_and_repeat_with_the_seed(model: SequentialCART) -> None:
    sampler = HybridSampler(model, "diagnosis", {"rare_x": 0.3, "cold": 0.1})
    first = sampler.sample(400, seed=9)
    pd.testing.assert_frame_equal(first, sampler.sample(400, seed=9))
    assert not first.equals(sampler.sample(400, seed=10))
    assert (first["diagnosis"].iloc[:120] == "rare_x").mean() < 0.9


def test_works_with_the_gaussian_copula_too() -> None:
    copula = GaussianCopula().fit(_visits(2000, seed=3), SCHEMA)
    rows = HybridSampler(copula, "diagnosis", {"rare_x": 0.25}).sample(800, seed=2)
    assert (rows["diagnosis"] == "rare_x").sum() == 200


@pytest.mark.parametrize(
    ("column", "shares", "message"),
    [
        ("diagnosis", {"unknown": 0.1}, "not in the domain"),
        ("diagnosis", {"rare_x": 0.7, "cold": 0.6}, "sum to 1.3"),
        ("diagnosis", {"rare_x": -0.1}, "greater than or equal to 0"),
        ("age", {"50": 0.1}, "categorical"),
        ("nope", {"a": 0.1}, "no column 'nope'"),
        ("diagnosis", {"rare_x": 0.2, "flu": 0.2, "cold": 0.2}, "must sum to 1"),
    ],
)
def test_impossible_overrides_are_refused_clearly(
    model: SequentialCART, column: str, shares: dict[str, float], message: str
) -> None:
    with pytest.raises(HybridError, match=message):
        HybridSampler(model, column, shares).sample(100, seed=0)


def test_overrides_file_lists_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "overrides.yaml"
    path.write_text("column: diagnosis\nshares: {rare_x: 1.5}\nextra: 1\n", encoding="utf-8")
    with pytest.raises(HybridError) as caught:
        HybridSpec.load(path)
    message = str(caught.value)
    assert str(path) in message and "2 problem(s)" in message
    assert (
        "extra" in message and "shares.rare_x: Input should be less than or equal to 1" in message
    )
