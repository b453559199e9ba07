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


def test_issue_refuses_a_certificate_that_outlives_the_ca(tmp_path: Path) -> None:
    ca = FederationCA.init(tmp_path, "fed", days=3650)
    args = ["issue", "--dir", str(tmp_path), "--role", "consumer", "--name", "x"]
    result = runner.invoke(app, [*args, "--days", "100000"])
    assert result.exit_code == 2, result.output
    assert f"{ca.ca.cert.not_valid_after_utc:%Y-%m-%d}" in result.output
    largest = int(result.output.split("largest --days allowed is ")[1].split()[0])
    assert not ca.paths_for(Role.CONSUMER, "x")[0].exists()
    assert runner.invoke(app, [*args, "--days", str(largest + 1)]).exit_code == 2
    invoke(*args, "--days", str(largest))
    issued = load_cert(ca.paths_for(Role.CONSUMER, "x")[0])
    assert issued.not_valid_after_utc <= ca.ca.cert.not_valid_after_utc


def test_issue_refuses_to_overwrite_a_party_with_a_live_certificate(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    args = ["issue", "--dir", str(tmp_path), "--role", "supplier", "--name", "hospital-a"]
    invoke(*args)
    cert_path, key_path = FederationCA(tmp_path).paths_for(Role.SUPPLIER, "hospital-a")
    before = cert_path.read_bytes(), key_path.read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "already has an unrevoked certificate" in result.output
    assert "--replace" in result.output
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before
    assert len(FederationCA(tmp_path).inventory.issued) == 1


def test_replace_revokes_the_old_serial_and_issues_a_new_one(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    args = ["issue", "--dir", str(tmp_path), "--role", "supplier", "--name", "hospital-a"]
    invoke(*args)
    cert_path, _ = FederationCA(tmp_path).paths_for(Role.SUPPLIER, "hospital-a")
    old = load_cert(cert_path).serial_number
    assert f"revoked serial(s): {old}" in invoke(*args, "--replace")
    new = load_cert(cert_path).serial_number
    revoked = load_revoked_serials(tmp_path / "crl.pem", load_cert(tmp_path / "ca.pem"))
    assert old in revoked and new not in revoked and new != old
    assert FederationCA(tmp_path).live_serials(Role.SUPPLIER, "hospital-a") == [new]


def test_refused_replacement_leaves_the_old_certificate_unrevoked(tmp_path: Path) -> None:
    FederationCA.init(tmp_path, "fed")
    args = ["issue", "--dir", str(tmp_path), "--role", "supplier", "--name", "hospital-a"]
    invoke(*args)
    cert_path, _ = FederationCA(tmp_path).paths_for(Role.SUPPLIER, "hospital-a")
    old = load_cert(cert_path).serial_number
    result = runner.invoke(app, [*args, "--replace", "--days", "100000"])
    assert result.exit_code == 2 and "outlive the federation CA" in result.output
    assert load_cert(cert_path).serial_number == old
    assert FederationCA(tmp_path).live_serials(Role.SUPPLIER, "hospital-a") == [old]
