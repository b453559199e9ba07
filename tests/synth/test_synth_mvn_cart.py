"""Multivariate normal and sequential CART: fit, dependence, privacy knob, model files."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from fedsynth.schema import TableSchema
from fedsynth.synth import ArtifactError, MultivariateNormal, SequentialCART, Synthesizer
from fedsynth.synth.cart import DEFAULT_MIN_SAMPLES_LEAF

Make = Callable[..., pd.DataFrame]


@pytest.mark.parametrize("model", [MultivariateNormal, SequentialCART])
def test_same_seed_same_rows_and_model_file_round_trip(
    model: type[Synthesizer], schema: TableSchema, make_patients: Make
) -> None:
    fitted = model().fit(make_patients(1000), schema)
    first = fitted.sample(400, seed=3)
    assert first.equals(fitted.sample(400, seed=3))
    loaded = Synthesizer.from_artifact(fitted.to_artifact())
    assert loaded.sample(400, seed=3).equals(first)
    assert list(first.columns) == schema.names


def test_mvn_keeps_means_and_linear_correlation(schema: TableSchema, make_patients: Make) -> None:
    real = make_patients(3000)
    out = MultivariateNormal().fit(real, schema).sample(20_000, seed=1)
    assert out["age"].mean() == pytest.approx(real["age"].mean(), rel=0.03)
    real_corr = real[["age", "income"]].corr().iloc[0, 1]
    assert out[["age", "income"]].corr().iloc[0, 1] == pytest.approx(real_corr, abs=0.08)
    assert out["income"].isna().mean() == pytest.approx(real["income"].isna().mean(), abs=0.03)


def test_cart_draws_real_values_from_leaves(schema: TableSchema, make_patients: Make) -> None:
    real = make_patients(2000)
    out = SequentialCART().fit(real, schema).sample(3000, seed=2)
    assert set(out["bmi"].dropna()) <= set(real["bmi"].dropna())
    assert set(out["admission"]) <= set(real["admission"])


def test_cart_keeps_dependence_and_null_pattern(schema: TableSchema, make_patients: Make) -> None:
    real = make_patients(3000)
    out = SequentialCART().fit(real, schema).sample(6000, seed=4)
    stay_real = (real["discharge"] - real["admission"]).dt.days
    stay = (out["discharge"] - out["admission"]).dt.days
    assert (stay >= 0).mean() > 0.97
    assert stay.median() == pytest.approx(stay_real.median(), abs=4)
    assert (out["income"].isna() == out["bmi"].isna()).mean() > 0.95


def test_cart_smoothing_moves_values_off_the_real_ones(
    schema: TableSchema, make_patients: Make
) -> None:
    real = make_patients(2000)
    plain = set(real["income"].dropna())
    out = SequentialCART(smoothing=True).fit(real, schema).sample(2000, seed=5)
    assert (~out["income"].dropna().isin(plain)).mean() > 0.5
    assert out["income"].dropna().between(0, 500000).all()


def test_cart_min_samples_leaf_is_a_safe_default_and_bounds_leaves(
    schema: TableSchema, make_patients: Make
) -> None:
    assert DEFAULT_MIN_SAMPLES_LEAF >= 5
    fitted = SequentialCART(min_samples_leaf=50).fit(make_patients(2000), schema)
    for tree in fitted.trees_[1:]:
        leaves = tree.left < 0
        assert tree.count[leaves].min() >= 50


def test_cart_visit_order_must_cover_the_modelled_columns(
    schema: TableSchema, make_patients: Make
) -> None:
    with pytest.raises(ValueError, match="visit_order must list every modelled column"):
        SequentialCART(visit_order=["age", "sex"]).fit(make_patients(100), schema)


def test_cart_file_with_tree_pointing_outside_is_refused(
    schema: TableSchema, make_patients: Make
) -> None:
    artifact = SequentialCART().fit(make_patients(500), schema).to_artifact()
    artifact.arrays["t3_left"] = artifact.arrays["t3_left"].copy()
    artifact.arrays["t3_left"][0] = 10_000
    with pytest.raises(ArtifactError, match="child index"):
        Synthesizer.from_artifact(artifact)


def test_mvn_samples_booleans_at_their_real_share() -> None:
    """Booleans are standardised at fit; sampling must read them back on the 0/1 scale."""
    schema = TableSchema.from_dict(
        {
            "name": "flags",
            "columns": [
                {"name": "mostly", "kind": "boolean", "nullable": False},
                {"name": "always", "kind": "boolean", "nullable": False},
                {"name": "x", "kind": "numerical", "min": 0, "max": 1},
            ],
        }
    )
    n = 2000
    real = pd.DataFrame(
        {
            "mostly": np.arange(n) % 10 != 0,
            "always": np.ones(n, dtype=bool),
            "x": np.random.default_rng(0).random(n),
        }
    )
    out = MultivariateNormal().fit(real, schema).sample(5000, seed=1)
    assert out["mostly"].mean() == pytest.approx(0.9, abs=0.03)
    assert out["always"].all()
