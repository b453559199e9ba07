"""The broker refuses to start with a certificate that is not the one its config names."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.tls import check_broker_identity
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role


@pytest.fixture(scope="module")
def qa(tmp_path_factory: pytest.TempPathFactory) -> FederationCA:
    ca = FederationCA.init(tmp_path_factory.mktemp("pki"), "qa")
    ca.issue(Role.BROKER, "broker", ip_addresses=("127.0.0.1",))
    ca.issue(Role.OPERATOR, "ops")
    return ca


def ca_pem(pki: FederationCA) -> Path:
    return pki.directory / "ca.pem"


def broker_pem(pki: FederationCA) -> Path:
    return pki.paths_for(Role.BROKER, "broker")[0]


def test_the_broker_certificate_its_config_names_is_accepted(qa: FederationCA) -> None:
    check_broker_identity(ca_pem(qa), broker_pem(qa), "qa", "broker")


def test_an_operator_certificate_is_refused_as_the_broker_identity(qa: FederationCA) -> None:
    operator_pem = qa.paths_for(Role.OPERATOR, "ops")[0]
    with pytest.raises(
        ValueError, match=r"operator certificate spiffe://qa/operator/ops, not this broker's"
    ):
        check_broker_identity(ca_pem(qa), operator_pem, "qa", "broker")


def test_a_ca_of_another_federation_than_the_config_is_refused(qa: FederationCA) -> None:
    with pytest.raises(
        ValueError, match=r"CA of federation 'qa' but the config says federation: other"
    ):
        check_broker_identity(ca_pem(qa), broker_pem(qa), "other", "broker")


def test_a_certificate_for_another_broker_name_is_refused(qa: FederationCA) -> None:
    with pytest.raises(
        ValueError,
        match=r"spiffe://qa/broker/broker, not of this broker \(spiffe://qa/broker/other-broker\)",
    ):
        check_broker_identity(ca_pem(qa), broker_pem(qa), "qa", "other-broker")


def test_a_broker_certificate_from_another_ca_of_the_same_name_is_refused(
    qa: FederationCA, tmp_path: Path
) -> None:
    impostor = FederationCA.init(tmp_path, "qa")
    impostor.issue(Role.BROKER, "broker")
    with pytest.raises(ValueError, match=r"tls.cert .*not issued by the CA"):
        check_broker_identity(ca_pem(qa), broker_pem(impostor), "qa", "broker")


def test_the_ca_certificate_itself_is_refused_as_the_broker_identity(qa: FederationCA) -> None:
    with pytest.raises(ValueError, match=r"tls.cert .*not issued by the CA"):
        check_broker_identity(ca_pem(qa), ca_pem(qa), "qa", "broker")
