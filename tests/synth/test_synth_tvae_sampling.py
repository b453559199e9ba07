"""TVAE samples from its decoder's distribution: shares, spreads and nulls survive sampling.

Taking the argmax of the decoder's logits (and the mean of its scaled values) collapses each
column onto its most likely value: a 28% boolean came out all False, 7 categories as 2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedsynth.schema import TableSchema
from fedsynth.synth.artifact import Artifact
from fedsynth.synth.base import Synthesizer
from fedsynth.synth.tvae import ColumnCode, TVAESynthesizer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

SCHEMA = TableSchema.from_dict(
    {
        "name": "stays",
        "columns": [
            {"name": "smoker", "kind": "boolean"},
            {"name": "diagnosis", "kind": "categorical", "domain": list("abcdefg")},
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 0, "max": 120},
            {"name": "glucose", "kind": "numerical", "min": 1, "max": 40, "nullable": True},
        ],
    }
)
SHARES = [0.30, 0.22, 0.16, 0.13, 0.10, 0.07, 0.02]


def _stays(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    """28% smokers, 7 diagnoses (one at 2%), ages 18-90, glucose with 11% nulls."""
    rng = np.random.default_rng(seed)
    glucose = np.round(rng.normal(6, 1.3, n).clip(1, 40), 1)
    glucose[rng.random(n) < 0.11] = np.nan
    return pd.DataFrame(
        {
            "smoker": rng.random(n) < 0.28,
            "diagnosis": rng.choice(list("abcdefg"), n, p=SHARES),
            "age": rng.integers(18, 91, n),
            "glucose": glucose,
        }
    )


@pytest.fixture(scope="module")
def real() -> pd.DataFrame:
    """The training rows every test compares with."""
    return _stays()


@pytest.fixture(scope="module")
def fitted(real: pd.DataFrame) -> TVAESynthesizer:
    """One short non-DP fit, shared: ten epochs are enough for the marginals."""
    return TVAESynthesizer(epochs=10, batch_size=200).fit(real, SCHEMA)


@pytest.fixture(scope="module")
def synthetic(fitted: TVAESynthesizer) -> pd.DataFrame:
    """Rows sampled once from the shared fit."""
    return fitted.sample(2000, seed=0)


def _tvd(a: pd.Series, b: pd.Series) -> float:
    """Total variation distance between the value shares of two columns."""
    pa, pb = a.astype(str).value_counts(normalize=True), b.astype(str).value_counts(normalize=True)
    return 0.5 * float(pa.subtract(pb, fill_value=0).abs().sum())


def test_tvae_samples_a_boolean_at_about_its_real_share(
    real: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    share = synthetic["smoker"].astype(float).mean()
    assert share == pytest.approx(real["smoker"].mean(), abs=0.06)


def test_tvae_keeps_the_categories_and_their_shares(
    real: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    assert synthetic["diagnosis"].nunique() >= 5
    assert _tvd(real["diagnosis"], synthetic["diagnosis"]) < 0.1


def test_tvae_spreads_an_integer_column_over_most_of_its_range(
    real: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    age, ages = real["age"].astype(float), synthetic["age"].astype(float)
    assert ages.nunique() >= 0.6 * age.nunique()
    span = age.quantile(0.95) - age.quantile(0.05)
    assert ages.quantile(0.95) - ages.quantile(0.05) >= 0.7 * span


def test_tvae_keeps_the_null_share_of_a_float_column(
    real: pd.DataFrame, synthetic: pd.DataFrame
) -> None:
    assert synthetic["glucose"].isna().mean() == pytest.approx(
        real["glucose"].isna().mean(), abs=0.04
    )
    assert synthetic["glucose"].std() > 0.5 * real["glucose"].std()


def test_tvae_sample_is_the_same_for_a_seed_and_differs_across_seeds(
    fitted: TVAESynthesizer,
) -> None:
    pd.testing.assert_frame_equal(fitted.sample(300, seed=7), fitted.sample(300, seed=7))
    assert not fitted.sample(300, seed=7).equals(fitted.sample(300, seed=8))


def test_column_code_draws_slots_from_the_softmax_of_their_logits() -> None:
    code = ColumnCode("x", True, 3, (), (), True)
    probabilities = np.array([0.5, 0.3, 0.15, 0.05])
    logits = np.tile(np.log(probabilities) + 2.0, (40_000, 1))
    values = code.draw(logits, 0.0, np.random.default_rng(0))
    shares = [np.mean(values == k) for k in range(3)] + [np.mean(np.isnan(values))]
    np.testing.assert_allclose(shares, probabilities, atol=0.01)


def test_column_code_adds_the_learned_sigma_to_a_scaled_value() -> None:
    code = ColumnCode("y", False, 0, (10.0,), (1.0,), False)
    block = np.zeros((40_000, 2))
    values = code.draw(block, 0.05, np.random.default_rng(0))
    assert values.mean() == pytest.approx(10.0, abs=0.01)
    assert values.std() == pytest.approx(4 * 0.05, rel=0.05)


def test_tvae_learns_a_sigma_per_continuous_column_and_saves_it(
    fitted: TVAESynthesizer,
) -> None:
    sigmas = fitted.network_.sigma(1)[0].detach().numpy()
    assert sigmas.shape == (2,)
    assert np.all((sigmas >= 0.01) & (sigmas <= 1.0))
    assert not np.allclose(sigmas, 0.1)
    loaded = Synthesizer.from_artifact(Artifact.from_bytes(fitted.to_artifact().to_bytes()))
    pd.testing.assert_frame_equal(loaded.sample(200, seed=3), fitted.sample(200, seed=3))


def test_a_tvae_file_saved_before_sigmas_were_learned_still_loads(
    fitted: TVAESynthesizer,
) -> None:
    artifact = fitted.to_artifact()
    del artifact.arrays["weight:log_sigma.weight"]
    loaded = Synthesizer.from_artifact(artifact)
    assert isinstance(loaded, TVAESynthesizer)
    np.testing.assert_allclose(loaded.network_.sigma(1)[0].detach().numpy(), 0.1, rtol=1e-6)
    assert len(loaded.sample(50, seed=0)) == 50


def test_dp_tvae_samples_categories_and_nulls_instead_of_the_likeliest_value(
    real: pd.DataFrame,
) -> None:
    model = TVAESynthesizer(epochs=5, batch_size=200, epsilon=50.0).fit(real, SCHEMA)
    rows = model.sample(2000, seed=0)
    assert 0.1 <= rows["smoker"].astype(float).mean() <= 0.5
    assert rows["diagnosis"].nunique() >= 5
    assert 0.03 <= rows["glucose"].isna().mean() <= 0.25


def test_fedavg_tvae_samples_both_values_of_a_boolean() -> None:
    model = TVAESynthesizer(batch_size=200, epsilon=50.0, fedavg_rounds=3, local_epochs=2)
    model.start(SCHEMA)
    suppliers = [_stays(700, seed=i) for i in range(3)]
    for _ in range(3):
        model.absorb(np.sum([model.measure(rows) for rows in suppliers], axis=0))
    rows = model.sample(2000, seed=0)
    assert 0.05 <= rows["smoker"].astype(float).mean() <= 0.6
    assert rows["diagnosis"].nunique() >= 5
    pd.testing.assert_frame_equal(rows, model.sample(2000, seed=0))


def test_tvae_fits_a_number_column_that_holds_one_value_among_nulls() -> None:
    rows = _stays(3)
    rows["glucose"] = [5.5, np.nan, np.nan]
    sampled = TVAESynthesizer(epochs=2).fit(rows, SCHEMA).sample(50, seed=0)["glucose"]
    assert sampled.dropna().round(1).eq(5.5).all()


def test_tvae_on_one_row_names_the_rows_it_needs() -> None:
    with pytest.raises(ValueError, match=r"^tvae needs at least 2 rows to fit; got 1\. Fix: "):
        TVAESynthesizer(epochs=2).fit(_stays(1), SCHEMA)
