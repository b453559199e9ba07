"""Key announcements relayed by the broker: a supplier uses a peer's key only when the
certificate beside it chains to the federation CA and names that very supplier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedsynth.privacy.accountant import zcdp_cost
from fedsynth.privacy.announcements import KeyBundle, SignedKey, certificate_keys
from fedsynth.privacy.ledger import BudgetExceeded, PrivacyLedger
from fedsynth.privacy.secagg import (
    SecAggError,
    SecAggParty,
    SecAggRound,
    fixed_point_for,
    unmask_sum,
)
from fedsynth.privacy.spec import BudgetCap
from fedsynth.security.ca import FederationCA, load_revoked_serials
from fedsynth.security.certificates import load_cert, load_key
from fedsynth.security.principals import Role

NAMES = ("alpha", "bravo", "charlie")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> FederationCA:
    ca = FederationCA.init(tmp_path_factory.mktemp("pki"), "fed")
    for name in NAMES:
        ca.issue(Role.SUPPLIER, name)
    return ca


def signed(
    pki: FederationCA, name: str, round_: SecAggRound, as_name: str | None = None
) -> tuple[SecAggParty, SignedKey]:
    """`name`'s party and its bundle entry; `as_name` forges the certificate of another party."""
    cert, key = pki.paths_for(Role.SUPPLIER, name)
    party = SecAggParty(name, load_key(key))
    shown = pki.paths_for(Role.SUPPLIER, as_name)[0] if as_name else cert
    return party, SignedKey(announcement=party.announce(round_), certificate_pem=shown.read_text())


def test_verified_keys_let_the_round_sum_exactly(pki: FederationCA) -> None:
    round_ = SecAggRound("job/round-1", NAMES)
    parties, entries = zip(*(signed(pki, n, round_) for n in NAMES), strict=True)
    bundle = KeyBundle(round_id=round_.round_id, participants=list(NAMES), keys=list(entries))
    keys = certificate_keys(bundle, load_cert(pki.directory / "ca.pem"), "fed")
    fixed = fixed_point_for(3)
    vectors = {n: np.arange(4.0) * (i + 1) for i, n in enumerate(NAMES)}
    masked = {
        p.supplier: p.mask(round_, fixed.encode(vectors[p.supplier]), bundle.announcements(), keys)
        for p in parties
    }
    np.testing.assert_allclose(fixed.decode(unmask_sum(round_, masked)), np.arange(4.0) * 6)


def test_a_certificate_of_another_supplier_beside_a_key_is_refused(pki: FederationCA) -> None:
    round_ = SecAggRound("job/round-1", NAMES[:2])
    _, honest = signed(pki, "alpha", round_)
    _, forged = signed(pki, "bravo", round_, as_name="alpha")
    bundle = KeyBundle(
        round_id=round_.round_id, participants=list(NAMES[:2]), keys=[honest, forged]
    )
    with pytest.raises(SecAggError, match=r"relayed for 'bravo' belongs to .*supplier/alpha"):
        certificate_keys(bundle, load_cert(pki.directory / "ca.pem"), "fed")


def test_a_certificate_from_another_ca_is_refused(pki: FederationCA, tmp_path: Path) -> None:
    other = FederationCA.init(tmp_path / "other", "fed")
    other.issue(Role.SUPPLIER, "alpha")
    round_ = SecAggRound("job/round-1", NAMES[:2])
    _, entry = signed(other, "alpha", round_)
    _, honest = signed(pki, "bravo", round_)
    bundle = KeyBundle(round_id=round_.round_id, participants=list(NAMES[:2]), keys=[entry, honest])
    with pytest.raises(SecAggError, match=r"relayed for 'alpha' is refused"):
        certificate_keys(bundle, load_cert(pki.directory / "ca.pem"), "fed")


def test_a_revoked_peer_certificate_is_refused(tmp_path: Path) -> None:
    pki = FederationCA.init(tmp_path / "pki", "fed")
    for name in NAMES[:2]:
        pki.issue(Role.SUPPLIER, name)
    round_ = SecAggRound("job/round-1", NAMES[:2])
    entries = [signed(pki, n, round_)[1] for n in NAMES[:2]]
    bundle = KeyBundle(round_id=round_.round_id, participants=list(NAMES[:2]), keys=entries)
    ca = load_cert(pki.directory / "ca.pem")
    assert set(certificate_keys(bundle, ca, "fed", load_revoked_serials(pki.crl_path, ca))) == {
        "alpha",
        "bravo",
    }
    pki.revoke(role=Role.SUPPLIER, name="bravo")
    with pytest.raises(SecAggError, match=r"relayed for 'bravo' is refused: .* revoked"):
        certificate_keys(bundle, ca, "fed", load_revoked_serials(pki.crl_path, ca))


def test_the_shared_encoding_cannot_wrap_for_any_number_of_parties() -> None:
    for parties in (2, 3, 10, 100, 1000):
        fixed = fixed_point_for(parties)
        total = sum(fixed.encode(np.array([fixed.bound, -fixed.bound])) for _ in range(parties))
        np.testing.assert_allclose(
            fixed.decode(total), [parties * fixed.bound, -parties * fixed.bound]
        )


def test_a_budget_check_refuses_what_a_charge_would_and_records_nothing(tmp_path: Path) -> None:
    ledger = PrivacyLedger(tmp_path / "l.sqlite3", supplier="a", cap=BudgetCap(epsilon=1.0))
    small, large = zcdp_cost(0.001), zcdp_cost(1.0)
    ledger.check("s", small)
    with pytest.raises(BudgetExceeded, match="over the cap"):
        ledger.check("s", large)
    assert ledger.history("s") == []
