"""Secure aggregation: exact sums, masked vectors independent of the data, attacks refused."""

from __future__ import annotations

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fedsynth.privacy.rounds import noise_share
from fedsynth.privacy.secagg import (
    DropoutError,
    FixedPoint,
    KeyAnnouncement,
    SecAggError,
    SecAggParty,
    SecAggRound,
    secure_sum,
    unmask_sum,
)

NAMES = ("alpha", "bravo", "charlie")
SIGNING = {n: ec.generate_private_key(ec.SECP256R1()) for n in NAMES}
VERIFY = {n: k.public_key() for n, k in SIGNING.items()}
FIXED = FixedPoint(bound=1e6, parties=3)


def _parties() -> dict[str, SecAggParty]:
    return {n: SecAggParty(n, SIGNING[n]) for n in NAMES}


def _masked(round_: SecAggRound, parties: dict[str, SecAggParty], vectors: dict) -> dict:
    announcements = [parties[p].announce(round_) for p in round_.participants]
    return {
        p: parties[p].mask(round_, FIXED.encode(vectors[p]), announcements, VERIFY)
        for p in round_.participants
    }


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(-(10**6), 10**6), min_size=3, max_size=3 * 8).map(lambda v: v[:3]))
def test_unmasked_sum_is_exact(values: list[int]) -> None:
    vectors = {n: np.array([float(v), 0.5, -2.25]) for n, v in zip(NAMES, values, strict=True)}
    total = secure_sum(SecAggRound("r", NAMES), _parties(), vectors, FIXED, VERIFY)
    assert np.array_equal(total, sum(vectors.values()))


def test_masked_vector_is_independent_of_the_data() -> None:
    zeros, large = [], []
    for i in range(300):
        round_ = SecAggRound(f"round-{i}", NAMES)
        for data, out in ((0.0, zeros), (9.9e5, large)):
            vectors = {n: np.full(4, data if n == "alpha" else 1.0) for n in NAMES}
            out.append(_masked(round_, _parties(), vectors)["alpha"])
    as_unit = [np.concatenate(v).astype(np.float64) / 2.0**64 for v in (zeros, large)]
    assert stats.ks_2samp(*as_unit).pvalue > 1e-3
    for sample in as_unit:
        assert stats.kstest(sample, "uniform").pvalue > 1e-3


def test_a_dropped_supplier_restarts_the_round_without_it() -> None:
    parties = _parties()
    round_ = SecAggRound("r1", NAMES)
    vectors = {n: np.array([1.0, 2.0]) * (i + 1) for i, n in enumerate(NAMES)}
    masked = _masked(round_, parties, vectors)
    del masked["charlie"]
    with pytest.raises(DropoutError) as caught:
        unmask_sum(round_, masked)
    assert caught.value.missing == ("charlie",)
    restarted = round_.without(caught.value.missing)
    assert restarted.participants == ("alpha", "bravo") and restarted.round_id != "r1"
    total = FIXED.decode(unmask_sum(restarted, _masked(restarted, parties, vectors)))
    assert np.array_equal(total, vectors["alpha"] + vectors["bravo"])


def test_a_key_substituted_by_the_broker_is_refused() -> None:
    parties = _parties()
    round_ = SecAggRound("r1", NAMES)
    announcements = [parties[p].announce(round_) for p in NAMES]
    broker_party = SecAggParty("bravo", ec.generate_private_key(ec.SECP256R1()))
    forged = broker_party.announce(round_)
    tampered = [a if a.supplier != "bravo" else forged for a in announcements]
    with pytest.raises(SecAggError, match="not signed by its certificate"):
        parties["alpha"].mask(round_, FIXED.encode(np.zeros(2)), tampered, VERIFY)


def test_an_announcement_replayed_from_another_round_is_refused() -> None:
    parties = _parties()
    old = SecAggRound("r1", NAMES)
    new = SecAggRound("r2", NAMES)
    stale = parties["bravo"].announce(old)
    current = [parties[p].announce(new) for p in NAMES]
    replayed = [a if a.supplier != "bravo" else stale for a in current]
    with pytest.raises(SecAggError, match="one round only"):
        parties["alpha"].mask(new, FIXED.encode(np.zeros(2)), replayed, VERIFY)
    relabelled = KeyAnnouncement(**{**stale.model_dump(), "round_id": "r2"})
    replayed = [a if a.supplier != "bravo" else relabelled for a in current]
    with pytest.raises(SecAggError, match="not signed"):
        parties["alpha"].mask(new, FIXED.encode(np.zeros(2)), replayed, VERIFY)


def test_encoding_refuses_settings_whose_sum_could_wrap() -> None:
    with pytest.raises(SecAggError, match="wrap"):
        FixedPoint(bound=2.0**40, parties=1000, fraction_bits=24)
    with pytest.raises(SecAggError, match="within"):
        FIXED.encode(np.array([2e6]))


def test_a_site_subtracting_its_own_share_from_the_sum_still_meets_the_whole_noise() -> None:
    """The round's sum goes back to every site: one that subtracts its own noisy vector must
    find the others' rows under the whole planned noise; the broker sees k/(k-1) of it."""
    sigma, k, cells = 3.0, len(NAMES), 50
    sd = sigma * np.sqrt(noise_share(k, secure=True))
    sums, others = [], []
    parties = _parties()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        shares = {n: rng.normal(0, sd, cells) for n in NAMES}
        total = secure_sum(SecAggRound(f"n{seed}", NAMES), parties, shares, FIXED, VERIFY)
        sums.append(total)
        others.append(total - shares[NAMES[0]])
    assert np.var(np.concatenate(others)) == pytest.approx(sigma**2, rel=0.1)
    assert np.var(np.concatenate(sums)) == pytest.approx(k / (k - 1) * sigma**2, rel=0.1)


@given(st.integers(1, 10_000), st.booleans())
def test_the_shares_of_all_sites_but_one_add_up_to_the_whole_noise(k: int, secure: bool) -> None:
    share = noise_share(k, secure)
    if secure and k > 1:
        assert (k - 1) * share == pytest.approx(1.0)
    else:
        assert share == 1.0
