"""`fedsynth pki` fixes: broker rotation keeps its names, --days bounds, file modes, CRL renewal."""

from __future__ import annotations

import logging
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from typer.testing import CliRunner

from broker.tls import RevocationList
from fedsynth.files import atomic_path, atomic_write_bytes
from fedsynth.security.ca import FederationCA, load_crl, load_revoked_serials
from fedsynth.security.certificates import load_cert, served_names
from fedsynth.security.cli import app
from fedsynth.security.principals import Role

runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def refused(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 2, result.output
    return result.output


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def broker_args(pki: Path, *extra: str) -> list[str]:
    return ["issue", "--dir", str(pki), "--role", "broker", "--name", "broker", *extra]


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    FederationCA.init(tmp_path / "pki", "fed")
    return tmp_path / "pki"


# 1. Rotating the broker certificate keeps the names agents dial.


def test_broker_replace_without_names_keeps_the_old_dns_and_ips(pki: Path) -> None:
    invoke(*broker_args(pki, "--dns", "broker.example.org", "--ip", "10.0.0.5"))
    cert_path = pki / "broker" / "broker.pem"
    old = load_cert(cert_path).serial_number
    output = invoke(*broker_args(pki, "--replace"))
    new = load_cert(cert_path)
    assert served_names(new) == (("broker.example.org",), ("10.0.0.5",))
    assert "serves      DNS:broker.example.org, IP:10.0.0.5" in output
    assert "dropped" not in output and "localhost" not in output
    assert old in load_revoked_serials(pki / "crl.pem", load_cert(pki / "ca.pem"))


def test_broker_replace_with_names_uses_them_and_prints_the_difference(pki: Path) -> None:
    invoke(*broker_args(pki, "--dns", "broker.example.org", "--ip", "10.0.0.5"))
    output = invoke(*broker_args(pki, "--replace", "--dns", "new.example.org", "--ip", "10.0.0.5"))
    assert served_names(load_cert(pki / "broker" / "broker.pem")) == (
        ("new.example.org",),
        ("10.0.0.5",),
    )
    assert "dropped     DNS:broker.example.org" in output
    assert "added       DNS:new.example.org" in output
    assert "IP:10.0.0.5" not in output.split("dropped")[1]


def test_broker_replace_whose_certificate_is_gone_needs_names(pki: Path) -> None:
    invoke(*broker_args(pki, "--dns", "broker.example.org"))
    cert_path = pki / "broker" / "broker.pem"
    old = load_cert(cert_path).serial_number
    cert_path.unlink()
    assert "--dns/--ip" in refused(*broker_args(pki, "--replace"))
    assert FederationCA(pki).live_serials(Role.BROKER, "broker") == [old]
    invoke(*broker_args(pki, "--replace", "--dns", "broker.example.org"))
    assert served_names(load_cert(cert_path)) == (("broker.example.org",), ())


def test_new_broker_without_names_serves_localhost_and_says_so(pki: Path) -> None:
    assert "serves      DNS:localhost, IP:127.0.0.1" in invoke(*broker_args(pki))


# 2. --days past what a date can hold is a one-line error with the maximum.


def test_init_days_past_year_9999_is_a_one_line_error_with_the_maximum(tmp_path: Path) -> None:
    args = ["init", "--federation", "x", "--dir", str(tmp_path / "p")]
    output = refused(*args, "--days", "99999999")
    assert output.count("\n") == 1 and output.startswith("error: ")
    largest = int(output.split("largest --days allowed is ")[1].split()[0])
    assert not (tmp_path / "p" / "ca.key").exists()
    invoke(*args, "--days", str(largest - 1))
    assert load_cert(tmp_path / "p" / "ca.pem").not_valid_after_utc.year == 9999


def test_issue_days_past_year_9999_is_a_one_line_error(pki: Path) -> None:
    args = ["issue", "--dir", str(pki), "--role", "operator", "--name", "a"]
    output = refused(*args, "--days", "99999999999")
    assert output.count("\n") == 1 and "largest --days allowed is" in output


# 3. Public PEMs are 0644, rewrites keep an operator's mode and owner, keys stay 0600.


def test_public_pems_are_0644_and_keys_0600(pki: Path) -> None:
    invoke(*broker_args(pki))
    for public in (pki / "ca.pem", pki / "crl.pem", pki / "broker" / "broker.pem"):
        assert mode(public) == 0o644, public
    for key in (pki / "ca.key", pki / "broker" / "broker.key"):
        assert mode(key) == 0o600, key


def test_rewrites_keep_the_operators_mode_but_keys_return_to_0600(pki: Path) -> None:
    invoke(*broker_args(pki))
    crl, cert, key = pki / "crl.pem", pki / "broker" / "broker.pem", pki / "broker" / "broker.key"
    crl.chmod(0o640)
    cert.chmod(0o444)
    key.chmod(0o644)
    invoke(*broker_args(pki, "--replace"))  # revokes (rewrites crl.pem) and rewrites both
    invoke("crl", "--dir", str(pki))
    assert (mode(crl), mode(cert), mode(key)) == (0o640, 0o444, 0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_revoke_keeps_the_owner_an_operator_gave_crl_pem(pki: Path) -> None:
    crl = pki / "crl.pem"
    os.chown(crl, 4321, 4322)
    invoke("issue", "--dir", str(pki), "--role", "operator", "--name", "alice")
    invoke("revoke", "--dir", str(pki), "--role", "operator", "--name", "alice")
    assert (crl.stat().st_uid, crl.stat().st_gid, mode(crl)) == (4321, 4322, 0o644)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_broker_key_replaced_by_root_stays_its_service_users_and_0600(pki: Path) -> None:
    invoke(*broker_args(pki))
    _, key = FederationCA(pki).paths_for(Role.BROKER, "broker")
    os.chown(key, 4321, 4322)
    invoke(*broker_args(pki, "--replace"))
    assert (key.stat().st_uid, key.stat().st_gid, mode(key)) == (4321, 4322, 0o600)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_rewrite_not_allowed_to_keep_the_owner_keeps_the_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "crl.pem"
    atomic_write_bytes(target, b"old", mode=0o644)
    os.chown(target, 4321, 4322)
    real_chown = os.chown

    def unprivileged_chown(path: Path, uid: int, gid: int) -> None:
        if uid != -1:
            raise PermissionError("only root may give a file away")
        real_chown(path, uid, gid)

    monkeypatch.setattr(os, "chown", unprivileged_chown)
    atomic_write_bytes(target, b"new", mode=0o644)
    assert target.read_bytes() == b"new"
    assert (target.stat().st_uid, target.stat().st_gid) == (os.geteuid(), 4322)


def test_atomic_path_without_mode_is_still_private(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_bytes(b"{}")
    target.chmod(0o644)
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"[]")
    assert mode(target) == 0o600


def test_atomic_path_refuses_a_mode_that_is_not_permission_bits(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="permission bits"), atomic_path(tmp_path / "x", mode=644):
        pass
    assert list(tmp_path.iterdir()) == []


# 4. `pki crl` renews the CRL; a CRL past its nextUpdate is reported, still enforced.


def test_pki_crl_resigns_the_same_entries_with_a_new_next_update(pki: Path) -> None:
    invoke("issue", "--dir", str(pki), "--role", "operator", "--name", "alice")
    invoke("revoke", "--dir", str(pki), "--role", "operator", "--name", "alice")
    ca_cert = load_cert(pki / "ca.pem")
    before = load_crl(pki / "crl.pem", ca_cert)
    output = invoke("crl", "--dir", str(pki), "--days", "90")
    after = load_crl(pki / "crl.pem", ca_cert)
    assert after.serials == before.serials and len(after.serials) == 1
    assert after.next_update is not None
    assert timedelta(days=89) < after.next_update - datetime.now(UTC) <= timedelta(days=90)
    assert f"next update {after.next_update:%Y-%m-%d}" in output and "1 revoked" in output


def test_pki_crl_refuses_days_past_the_ca_and_leaves_the_crl(pki: Path) -> None:
    before = (pki / "crl.pem").read_bytes()
    assert "largest --days allowed is" in refused("crl", "--dir", str(pki), "--days", "99999999")
    assert (pki / "crl.pem").read_bytes() == before


def test_a_stale_crl_is_reported_but_its_serials_still_count(
    pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca = FederationCA(pki)
    ca.issue(Role.OPERATOR, "alice")
    (serial,) = ca.revoke(role=Role.OPERATOR, name="alice")
    assert load_crl(ca.crl_path, ca.ca.cert).stale_warning() is None
    past = datetime.now(UTC) - timedelta(days=40)
    stale = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.ca.cert.subject)
        .last_update(past)
        .next_update(past + timedelta(days=30))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(past).build()
        )
        .sign(ca.ca.key, hashes.SHA256())
    )
    ca.crl_path.write_bytes(stale.public_bytes(serialization.Encoding.PEM))
    checked = load_crl(ca.crl_path, ca.ca.cert)
    warning = checked.stale_warning()
    assert warning is not None and "fedsynth pki crl" in warning and str(ca.crl_path) in warning
    assert checked.serials == {serial} == load_revoked_serials(ca.crl_path, ca.ca.cert)
    with caplog.at_level(logging.WARNING, logger="broker.tls"):
        held = RevocationList(ca.crl_path, pki / "ca.pem")
        assert held.is_revoked(serial) and held.is_revoked(serial)
    assert [r.getMessage() for r in caplog.records] == [warning]
    invoke("crl", "--dir", str(pki))
    assert load_crl(ca.crl_path, ca.ca.cert).stale_warning() is None


def test_fresh_crl_goes_stale_after_its_next_update(pki: Path) -> None:
    checked = load_crl(pki / "crl.pem", load_cert(pki / "ca.pem"))
    assert checked.next_update is not None
    assert checked.stale_warning(checked.next_update) is None
    assert checked.stale_warning(checked.next_update + timedelta(seconds=1)) is not None


# 5. revoke --serial with --role/--name checks they are the serial's.


def test_revoke_serial_with_another_partys_name_is_refused(pki: Path) -> None:
    ca = FederationCA(pki)
    ca.issue(Role.OPERATOR, "alice")
    ca.issue(Role.OPERATOR, "bob")
    bob = load_cert(ca.paths_for(Role.OPERATOR, "bob")[0]).serial_number
    args = ["revoke", "--dir", str(pki), "--serial", str(bob)]
    output = refused(*args, "--role", "operator", "--name", "alice")
    assert "operator/bob" in output and "nothing revoked" in output
    assert "supplier/bob" in refused(*args, "--role", "supplier")
    assert FederationCA(pki).live_serials(Role.OPERATOR, "bob") == [bob]
    assert f"revoked serial(s): {bob}" in invoke(*args, "--role", "operator", "--name", "bob")
    assert FederationCA(pki).live_serials(Role.OPERATOR, "alice") != []


def test_revoke_that_matches_nothing_says_why_in_a_sentence(pki: Path) -> None:
    FederationCA(pki).issue(Role.SUPPLIER, "hospital-a")
    revoke = ["revoke", "--dir", str(pki)]
    unknown = refused(*revoke, "--role", "supplier", "--name", "nobody")
    assert f"no certificate issued to supplier 'nobody' by the CA in {pki}/" in unknown
    assert "its supplier certificates went to hospital-a" in unknown
    assert "check the role and name" in unknown
    invoke(*revoke, "--role", "supplier", "--name", "hospital-a")
    again = refused(*revoke, "--role", "supplier", "--name", "hospital-a")
    assert "every certificate issued to supplier 'hospital-a' is already revoked" in again
    assert "issued no certificate with serial 12345" in refused(*revoke, "--serial", "12345")
    half = refused(*revoke, "--role", "supplier")
    assert "give --serial, or both --role and --name" in half
    for output in (unknown, again, half):
        assert "=" not in output and "None" not in output
