"""The accountant: RDP curves, composition, (epsilon, delta) conversion, equality with opacus."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedsynth.privacy.accountant import (
    ORDERS,
    PrivacyCost,
    approximate_cost,
    compose,
    gaussian_cost,
    laplace_cost,
    rho_for_epsilon,
    subsampled_gaussian_cost,
    zcdp_cost,
)
from fedsynth.privacy.mechanisms import gaussian_noise, gaussian_sigma, laplace_noise


@pytest.mark.parametrize(
    ("q", "sigma", "steps"), [(0.01, 1.1, 1000), (0.05, 0.8, 300), (0.2, 2.5, 50), (1.0, 4.0, 10)]
)
def test_dp_sgd_epsilon_equals_opacus_rdp_accountant(q: float, sigma: float, steps: int) -> None:
    opacus_rdp = pytest.importorskip("opacus.accountants.rdp")
    accountant = opacus_rdp.RDPAccountant()
    accountant.history = [(sigma, q, steps)]
    theirs = accountant.get_epsilon(delta=1e-5)
    ours = subsampled_gaussian_cost(q, sigma, steps).epsilon_at(1e-5)
    assert ours == pytest.approx(theirs, rel=1e-12)


def test_composition_adds_rdp_curves_and_approximate_parts() -> None:
    a, b = gaussian_cost(2.0), gaussian_cost(3.0)
    total = compose([a, b, approximate_cost(0.5, 1e-7)])
    assert total.rdp == pytest.approx(np.asarray(a.rdp) + np.asarray(b.rdp))
    assert total.epsilon == 0.5 and total.delta == 1e-7
    assert total.epsilon_at(1e-5) > a.epsilon_at(1e-5)


def test_gaussian_cost_is_zcdp_with_rho_sensitivity_squared_over_two_sigma_squared() -> None:
    cost = gaussian_cost(sigma=2.0, l2_sensitivity=3.0, count=2)
    rho = 2 * 9 / (2 * 4)
    assert cost.rdp == pytest.approx([a * rho for a in ORDERS])


def test_rho_for_epsilon_spends_the_whole_target_and_no_more() -> None:
    for eps in (0.5, 1.0, 4.0):
        rho = rho_for_epsilon(eps, 1e-6)
        assert zcdp_cost(rho).epsilon_at(1e-6) == pytest.approx(eps, rel=1e-6)
        assert zcdp_cost(rho).epsilon_at(1e-6) <= eps
        assert zcdp_cost(rho * 1.01).epsilon_at(1e-6) > eps


def test_laplace_rdp_tends_to_pure_epsilon_at_high_orders() -> None:
    cost = laplace_cost(scale=2.0)
    assert cost.rdp is not None
    assert cost.rdp[-1] <= 0.5 + 1e-12
    assert cost.rdp[-1] > 0.4


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf])
def test_costs_refuse_negative_nan_and_infinite_budgets(bad: float) -> None:
    with pytest.raises(ValueError, match="epsilon"):
        PrivacyCost(epsilon=bad)
    with pytest.raises(ValueError, match="delta"):
        PrivacyCost(delta=bad)


def test_gaussian_noise_has_the_stated_variance_over_many_seeds() -> None:
    sigma = gaussian_sigma(rho=0.05, l2_sensitivity=2.0)
    draws = np.concatenate(
        [gaussian_noise(500, sigma, np.random.default_rng(s)) for s in range(40)]
    )
    assert np.var(draws) == pytest.approx(sigma**2, rel=0.05)
    assert abs(np.mean(draws)) < 4 * sigma / np.sqrt(draws.size)


def test_laplace_noise_has_variance_two_b_squared() -> None:
    draws = np.concatenate([laplace_noise(500, 1.5, np.random.default_rng(s)) for s in range(40)])
    assert np.var(draws) == pytest.approx(2 * 1.5**2, rel=0.07)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0.5, 20.0), min_size=1, max_size=5),
    st.floats(1e-9, 1e-3),
)
def test_composition_never_costs_less_than_any_part(sigmas: list[float], delta: float) -> None:
    parts = [gaussian_cost(s) for s in sigmas]
    total = compose(parts).epsilon_at(delta)
    assert all(total >= p.epsilon_at(delta) - 1e-9 for p in parts)


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.14])
def test_an_epsilon_below_what_the_orders_certify_is_refused_naming_the_floor(
    epsilon: float,
) -> None:
    from pydantic import ValidationError

    from fedsynth.privacy.orders import least_epsilon
    from fedsynth.privacy.spec import PrivacySpec

    floor = least_epsilon(1e-6)
    assert 0.13 < floor < 0.15
    with pytest.raises(ValueError, match=rf"is below {floor:.3f}, the least this accountant"):
        rho_for_epsilon(epsilon, 1e-6)
    with pytest.raises(ValidationError, match="raise epsilon or delta"):
        PrivacySpec(epsilon=epsilon)
    assert rho_for_epsilon(0.15, 1e-6) > 0
