"""`fedsynth pki init|issue|revoke` writes a usable federation PKI with private keys kept 0600."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from fedsynth.security.ca import FederationCA, load_revoked_serials
from fedsynth.security.certificates import load_cert, verify_chain
from fedsynth.security.cli import app
from fedsynth.security.principals import Role, principal_from_certificate

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_init_issue_and_revoke(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    invoke("init", "--federation", "health-eu", "--dir", str(pki))
    invoke("issue", "--dir", str(pki), "--role", "supplier", "--name", "hospital-a", "--days", "30")
    invoke(
        "issue",
        "--dir",
        str(pki),
        "--role",
        "broker",
        "--name",
        "main",
        "--dns",
        "broker.example.org",
        "--ip",
        "127.0.0.1",
    )
    ca_cert = load_cert(pki / "ca.pem")
    supplier = load_cert(pki / "supplier" / "hospital-a.pem")
    verify_chain(supplier, ca_cert)
    assert principal_from_certificate(supplier, "health-eu").name == "hospital-a"
    broker = load_cert(pki / "broker" / "main.pem")
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["broker.example.org"]
    assert "spiffe://health-eu/broker/main" in san.get_values_for_type(
        x509.UniformResourceIdentifier
    )
    for key in (pki / "ca.key", pki / "supplier" / "hospital-a.key", pki / "broker" / "main.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    invoke("revoke", "--dir", str(pki), "--role", "supplier", "--name", "hospital-a")
    assert supplier.serial_number in load_revoked_serials(pki / "crl.pem", ca_cert)


def test_init_refuses_to_overwrite_a_ca(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    result = runner.invoke(app, ["init", "--federation", "fed", "--dir", str(tmp_path)])
    assert result.exit_code == 2 and "already exists" in result.output


def test_bad_party_name_is_refused_with_the_rule(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    result = runner.invoke(
        app, ["issue", "--dir", str(tmp_path), "--role", "consumer", "--name", "Bad/Name"]
    )
    assert result.exit_code == 2 and "lowercase" in result.output


def test_revoking_an_unknown_party_names_the_inventory(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    result = runner.invoke(
        app, ["revoke", "--dir", str(tmp_path), "--role", "consumer", "--name", "nobody"]
    )
    assert result.exit_code == 2 and "issued.json" in result.output


def test_crl_not_signed_by_the_ca_is_refused(tmp_path: Path) -> None:
    ours = FederationCA.init(tmp_path / "ours", "fed")
    theirs = FederationCA.init(tmp_path / "theirs", "fed")
    theirs.issue(Role.CONSUMER, "x")
    theirs.revoke(role=Role.CONSUMER, name="x")
    with pytest.raises(ValueError, match="not signed by the federation CA"):
        load_revoked_serials(theirs.crl_path, ours.ca.cert)
