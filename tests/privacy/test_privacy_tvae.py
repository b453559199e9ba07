"""TVAE and DP-TVAE: opacus's epsilon, public-only modes, weights stored without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedsynth.schema import TableSchema
from fedsynth.synth.artifact import MAGIC
from fedsynth.synth.base import Synthesizer
from fedsynth.synth.tvae import TVAESynthesizer

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.usefixtures("one_torch_thread"),
]

SCHEMA = TableSchema.from_dict(
    {
        "name": "people",
        "columns": [
            {"name": "age", "kind": "numerical", "dtype": "int", "min": 18, "max": 90},
            {"name": "income", "kind": "numerical", "min": 0, "max": 200, "nullable": True},
            {"name": "sex", "kind": "categorical", "domain": ["F", "M"]},
        ],
    }
)


def _people(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    age = rng.integers(18, 91, n)
    income = np.clip(age + rng.normal(0, 10, n), 0, 200)
    income[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame({"age": age, "income": income, "sex": rng.choice(["F", "M"], n)})


def _dp(epsilon: float = 2.0) -> TVAESynthesizer:
    return TVAESynthesizer(epochs=2, batch_size=60, hidden=32, latent=8, epsilon=epsilon)


def test_dp_tvae_reports_the_epsilon_of_opacus_rdp_accountant() -> None:
    rdp = pytest.importorskip("opacus.accountants.rdp")
    model = _dp(epsilon=2.0).fit(_people(), SCHEMA)
    accountant = rdp.RDPAccountant()
    accountant.history = [(model.noise_multiplier_, model.sample_rate_, model.steps_)]
    assert model.epsilon_ == pytest.approx(accountant.get_epsilon(delta=1e-6), rel=1e-12)
    assert model.epsilon_ <= 2.0
    assert model.steps_ > 0


def test_dp_tvae_modes_come_from_the_schema_not_the_rows() -> None:
    pytest.importorskip("opacus")
    a = _dp().fit(_people(seed=0), SCHEMA)
    b = _dp().fit(_people(seed=1), SCHEMA)
    assert a.codes_ == b.codes_
    assert a.rounding_ == b.rounding_


def test_dp_sgd_noise_does_not_follow_the_public_seed() -> None:
    pytest.importorskip("opacus")
    a = _dp().fit(_people(), SCHEMA)
    b = _dp().fit(_people(), SCHEMA)
    wa, wb = a.network_.state_dict(), b.network_.state_dict()
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_tvae_without_dp_is_reproducible_from_its_seed() -> None:
    a = TVAESynthesizer(epochs=1, batch_size=100, hidden=16, latent=4).fit(_people(), SCHEMA)
    b = TVAESynthesizer(epochs=1, batch_size=100, hidden=16, latent=4).fit(_people(), SCHEMA)
    pd.testing.assert_frame_equal(a.sample(20, seed=1), b.sample(20, seed=1))


def test_dp_tvae_saves_weights_as_arrays_and_reloads_the_same_sampler(tmp_path: Path) -> None:
    pytest.importorskip("opacus")
    model = _dp().fit(_people(), SCHEMA)
    model.save(tmp_path / "tvae.fsynth")
    assert (tmp_path / "tvae.fsynth").read_bytes().startswith(MAGIC)
    loaded = Synthesizer.load(tmp_path / "tvae.fsynth")
    assert isinstance(loaded, TVAESynthesizer)
    assert loaded.epsilon_ == model.epsilon_
    pd.testing.assert_frame_equal(loaded.sample(40, seed=2), model.sample(40, seed=2))


def test_tvae_without_dp_learns_modes_and_samples_valid_rows() -> None:
    model = TVAESynthesizer(epochs=2, batch_size=100, hidden=32, latent=8).fit(_people(), SCHEMA)
    rows = model.sample(100, seed=0)
    assert list(rows.columns) == SCHEMA.names
    assert rows["age"].between(18, 90).all()
    assert not hasattr(model, "epsilon_")


def test_tvae_refuses_a_non_finite_epsilon() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        TVAESynthesizer(epsilon=float("inf"))


def test_fedavg_rounds_of_dp_updates_spend_at_most_the_target_per_supplier() -> None:
    pytest.importorskip("opacus")
    model = TVAESynthesizer(batch_size=50, hidden=16, latent=4, epsilon=3.0, fedavg_rounds=2)
    model.start(SCHEMA)
    before = model.weights()
    suppliers = {name: _people(150, seed=i) for i, name in enumerate(("a", "b", "c"))}
    spent: dict[str, list] = {name: [] for name in suppliers}
    for _ in range(2):
        updates = []
        for name, rows in suppliers.items():
            deltas, cost = model.local_update(rows)
            assert cost is not None
            spent[name].append(cost)
            updates.append(deltas)
        model.apply_updates(updates)
    for costs in spent.values():
        assert sum(costs[1:], costs[0]).epsilon_at(1e-6) <= 3.0
    assert any(not np.allclose(before[k], v) for k, v in model.weights().items())
    assert len(model.sample(30, seed=0)) == 30


def test_fedavg_round_costs_are_what_each_update_spends_and_compose_to_the_target() -> None:
    pytest.importorskip("opacus")
    model = TVAESynthesizer(batch_size=40, hidden=8, latent=2, epsilon=2.0, fedavg_rounds=3)
    model.start(SCHEMA)
    costs = model.round_costs(rows=150)
    assert len(costs) == 3
    _, spent = model.local_update(_people(150))
    assert spent is not None and spent.rdp == costs[0].rdp
    total = sum(costs[1:], costs[0]).epsilon_at(model.delta)
    assert 0.97 * 2.0 <= total <= 2.0


def test_absorbing_the_summed_round_vectors_adds_the_suppliers_mean_delta() -> None:
    pytest.importorskip("opacus")
    model = TVAESynthesizer(batch_size=50, hidden=8, latent=2, epsilon=4.0, fedavg_rounds=2)
    model.start(SCHEMA)
    before = model.weights()
    vectors = [model.measure(_people(120, seed=i)) for i in range(3)]
    assert all(v[-1] == 1.0 for v in vectors)
    mean = np.mean(vectors, axis=0)[:-1]
    model.absorb(np.sum(vectors, axis=0))
    after = np.concatenate([v.ravel() for v in model.weights().values()])
    start = np.concatenate([v.ravel() for v in before.values()])
    np.testing.assert_allclose(after, start + mean, atol=1e-6)
    with pytest.raises(ValueError, match="finite sums"):
        model.absorb(np.zeros(3))


def test_fedavg_with_zero_updates_keeps_the_global_weights() -> None:
    model = TVAESynthesizer(hidden=16, latent=4)
    model.start(SCHEMA)
    before = model.weights()
    model.apply_updates([{k: np.zeros_like(v) for k, v in before.items()}] * 2)
    after = model.weights()
    assert all(np.array_equal(before[k], after[k]) for k in before)
