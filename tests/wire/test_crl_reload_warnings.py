"""The broker's revocation list: a `crl.pem` that cannot be used is warned about once per version
of the file (not on every call) while the previous list stays in force, and a list that loads is
logged at INFO with its number of revoked serials."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import grpc
import pytest

from broker.tls import RevocationList
from fedsynth.security.ca import FederationCA
from fedsynth.security.principals import Role
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc
from tests.wire.broker_harness import BrokerProcess, running_broker

KEEPING = "keeping the previous revocation list"
LOADED = "revocation list {} loaded: {} revoked serials"
CALLS = 200
"""is_revoked calls per version of the file: each RPC makes one or two."""


@pytest.fixture
def ca(tmp_path: Path) -> FederationCA:
    """A federation CA that has revoked one operator, alice."""
    pki = FederationCA.init(tmp_path / "pki", "health-eu")
    pki.issue(Role.OPERATOR, "alice")
    pki.revoke(role=Role.OPERATOR, name="alice")
    return pki


def serial_of(ca: FederationCA, name: str) -> int:
    return ca.inventory.issued[[r.name for r in ca.inventory.issued].index(name)].serial


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_loading_the_list_is_logged_at_info_with_its_count(
    ca: FederationCA, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="broker.tls"):
        held = RevocationList(ca.crl_path, ca.directory / "ca.pem")
        ca.issue(Role.OPERATOR, "bob")
        ca.revoke(role=Role.OPERATOR, name="bob")
        assert held.is_revoked(serial_of(ca, "bob"))
        for _ in range(CALLS):
            held.is_revoked(1)
    assert messages(caplog, logging.INFO) == [
        LOADED.format(ca.crl_path, 1),
        LOADED.format(ca.crl_path, 2),
    ]
    assert messages(caplog, logging.WARNING) == []


def test_an_unreadable_crl_is_warned_about_once_and_the_previous_list_holds(
    ca: FederationCA, caplog: pytest.LogCaptureFixture
) -> None:
    held = RevocationList(ca.crl_path, ca.directory / "ca.pem")
    alice = serial_of(ca, "alice")
    ca.crl_path.write_text("garbage\n")
    with caplog.at_level(logging.INFO, logger="broker.tls"):
        assert all(held.is_revoked(alice) for _ in range(CALLS))
    (warning,) = messages(caplog, logging.WARNING)
    assert KEEPING in warning and "(1 revoked serials)" in warning
    assert f"{ca.crl_path}: not a PEM CRL" in warning and "until the file changes" in warning
    assert "fedsynth pki crl" in warning
    assert messages(caplog, logging.INFO) == []


def test_each_new_bad_version_is_warned_about_once(
    ca: FederationCA, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    held = RevocationList(ca.crl_path, ca.directory / "ca.pem")
    alice = serial_of(ca, "alice")
    other = FederationCA.init(tmp_path / "other", "health-eu")
    versions = [
        lambda: ca.crl_path.write_text("garbage\n"),
        lambda: ca.crl_path.write_text("other garbage, same file\n"),
        lambda: ca.crl_path.write_bytes(other.crl_path.read_bytes()),
        ca.crl_path.unlink,
    ]
    with caplog.at_level(logging.INFO, logger="broker.tls"):
        for damage in versions:
            damage()
            assert all(held.is_revoked(alice) for _ in range(CALLS))
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == len(versions), warnings
    assert all(KEEPING in w for w in warnings)
    assert "not signed by the federation CA" in warnings[2]
    assert "No such file" in warnings[3]


def test_a_good_list_after_a_bad_one_is_loaded_and_logged(
    ca: FederationCA, caplog: pytest.LogCaptureFixture
) -> None:
    held = RevocationList(ca.crl_path, ca.directory / "ca.pem")
    ca.crl_path.write_text("garbage\n")
    held.is_revoked(1)
    ca.issue(Role.OPERATOR, "bob")
    ca.revoke(role=Role.OPERATOR, name="bob")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="broker.tls"):
        assert held.is_revoked(serial_of(ca, "bob")) and held.is_revoked(serial_of(ca, "alice"))
        held.is_revoked(1)
    assert messages(caplog, logging.INFO) == [LOADED.format(ca.crl_path, 2)]
    assert messages(caplog, logging.WARNING) == []


def _list_jobs(broker: BrokerProcess, name: str) -> None:
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, name))
    stub.ListJobs(operator_pb2.ListJobsRequest(), timeout=20)


def _log_lines(broker: BrokerProcess, text: str) -> list[str]:
    return [line for line in (broker.root / "broker.log").read_text().splitlines() if text in line]


LOADED_ONE = "loaded: 1 revoked serials"


def test_a_broker_with_a_garbage_crl_warns_once_and_still_refuses_the_revoked(
    tmp_path: Path,
) -> None:
    with running_broker(tmp_path) as broker:
        broker.pki.issue(Role.OPERATOR, "mallory")
        broker.pki.revoke(role=Role.OPERATOR, name="mallory")
        _list_jobs(broker, "ops")  # the broker loads the list that revokes mallory
        broker.pki.crl_path.write_text("garbage\n")
        for _ in range(30):
            _list_jobs(broker, "ops")
        with pytest.raises(grpc.RpcError) as refused:
            _list_jobs(broker, "mallory")
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        broker.pki.write_crl()
        _list_jobs(broker, "ops")
        deadline = time.monotonic() + 10
        while len(_log_lines(broker, LOADED_ONE)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    warned = _log_lines(broker, KEEPING)
    assert len(warned) == 1 and "not a PEM CRL" in warned[0], warned
    assert len(_log_lines(broker, "loaded: 0 revoked serials")) == 1  # at start
    assert len(_log_lines(broker, LOADED_ONE)) == 2  # mallory's revocation; the list re-signed
