"""Each listed attack, tried against a real broker process with real certificates, is refused
with the right gRPC status."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsynth.security.ca import FederationCA
from fedsynth.security.certificates import cert_pem, key_pem, new_key
from fedsynth.security.principals import Role, spiffe_uri
from fedsynth.wire.v1 import (
    common_pb2,
    consumer_pb2_grpc,
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
    supplier_pb2_grpc,
)
from tests.wire.broker_harness import FEDERATION, BrokerProcess

TIMEOUT = 20


def list_releases(channel: grpc.Channel) -> common_pb2.ReleaseList:
    stub = consumer_pb2_grpc.ConsumerServiceStub(channel)
    return stub.ListReleases(common_pb2.ListReleasesRequest(), timeout=TIMEOUT)


def raw_channel(broker: BrokerProcess, cert: bytes | None, key: bytes | None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(broker.pki.directory / "ca.pem").read_bytes(),
        private_key=key,
        certificate_chain=cert,
    )
    return grpc.secure_channel(broker.address, credentials)


def refused_with(call: Callable[[], object], code: grpc.StatusCode) -> str:
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


def handmade_leaf(
    pki: FederationCA, name: str, usages: list[x509.ObjectIdentifier] | None
) -> tuple[bytes, bytes]:
    """A consumer leaf signed by the real CA but with chosen extended key usages (or none)."""
    key = new_key()
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_uri(FEDERATION, Role.CONSUMER, name))]
            ),
            critical=False,
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return cert_pem(builder.sign(pki.ca.key, hashes.SHA256())), key_pem(key)


def intermediate_ca_leaf(pki: FederationCA, name: str) -> tuple[bytes, bytes]:
    """A CA certificate (basicConstraints CA=true) from the real CA, dressed as a consumer."""
    key = new_key()
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(pki.ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(spiffe_uri(FEDERATION, Role.CONSUMER, name))]
            ),
            critical=False,
        )
        .sign(pki.ca.key, hashes.SHA256())
    )
    return cert_pem(cert), key_pem(key)


def test_valid_consumer_is_served(broker: BrokerProcess) -> None:
    assert list_releases(broker.channel(Role.CONSUMER, "alice")).releases is not None


def test_plaintext_connection_is_refused(broker: BrokerProcess) -> None:
    channel = grpc.insecure_channel(broker.address)
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_connection_without_client_certificate_is_refused(broker: BrokerProcess) -> None:
    channel = raw_channel(broker, None, None)
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_certificate_from_another_ca_is_refused(broker: BrokerProcess, tmp_path: Path) -> None:
    impostor = FederationCA.init(tmp_path / "other-pki", FEDERATION)
    cert, key = impostor.issue(Role.CONSUMER, "alice")
    channel = raw_channel(broker, cert.read_bytes(), key.read_bytes())
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_expired_certificate_is_refused(broker: BrokerProcess) -> None:
    cert, key = broker.pki.issue(
        Role.CONSUMER, "expired-eve", days=1, valid_from=datetime.now(UTC) - timedelta(days=10)
    )
    channel = raw_channel(broker, cert.read_bytes(), key.read_bytes())
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_revoked_certificate_is_refused_on_its_next_call(broker: BrokerProcess) -> None:
    broker.pki.issue(Role.CONSUMER, "revoked-bob")
    channel = broker.channel(Role.CONSUMER, "revoked-bob")
    list_releases(channel)
    broker.pki.revoke(role=Role.CONSUMER, name="revoked-bob")
    detail = refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAUTHENTICATED)
    assert "revoked: ask the federation's operator for a new one" in detail


def test_root_ca_certificate_presented_as_leaf_is_refused(broker: BrokerProcess) -> None:
    ca_dir = broker.pki.directory
    channel = raw_channel(
        broker, (ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca.key").read_bytes()
    )
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_intermediate_ca_certificate_presented_as_leaf_is_refused(broker: BrokerProcess) -> None:
    cert, key = intermediate_ca_leaf(broker.pki, "sub-ca")
    channel = raw_channel(broker, cert, key)
    detail = refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAUTHENTICATED)
    assert "CA certificate" in detail


def test_certificate_for_server_auth_only_is_refused(broker: BrokerProcess) -> None:
    cert, key = handmade_leaf(broker.pki, "server-only", [ExtendedKeyUsageOID.SERVER_AUTH])
    channel = raw_channel(broker, cert, key)
    refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAVAILABLE)


def test_certificate_without_any_key_usage_is_refused(broker: BrokerProcess) -> None:
    cert, key = handmade_leaf(broker.pki, "no-usage", None)
    channel = raw_channel(broker, cert, key)
    detail = refused_with(lambda: list_releases(channel), grpc.StatusCode.UNAUTHENTICATED)
    assert "extended key usage" in detail


def test_supplier_the_broker_has_not_enrolled_is_refused(broker: BrokerProcess) -> None:
    stub = supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.SUPPLIER, "not-enrolled"))
    request = supplier_pb2.TaskResult(supplier="not-enrolled", task_id="task-x")
    detail = refused_with(
        lambda: stub.ReportResult(request, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED
    )
    assert "not enrolled" in detail


def test_consumer_cannot_call_supplier_methods(broker: BrokerProcess) -> None:
    stub = supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.CONSUMER, "alice"))
    request = supplier_pb2.TaskResult(supplier="hospital-a", task_id="task-x")
    refused_with(
        lambda: stub.ReportResult(request, timeout=TIMEOUT), grpc.StatusCode.PERMISSION_DENIED
    )


def test_consumer_cannot_call_operator_methods(broker: BrokerProcess) -> None:
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.CONSUMER, "alice"))
    refused_with(
        lambda: stub.ListJobs(operator_pb2.ListJobsRequest(), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )


def test_supplier_cannot_call_operator_or_consumer_methods(broker: BrokerProcess) -> None:
    channel = broker.channel(Role.SUPPLIER, "hospital-a")
    operator = operator_pb2_grpc.OperatorServiceStub(channel)
    refused_with(
        lambda: operator.SubmitJob(operator_pb2.SubmitJobRequest(spec_json=b"{}"), timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    refused_with(lambda: list_releases(channel), grpc.StatusCode.PERMISSION_DENIED)


def test_refusals_are_in_the_audit_log(broker: BrokerProcess) -> None:
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.CONSUMER, "alice"))
    with pytest.raises(grpc.RpcError):
        stub.ListJobs(operator_pb2.ListJobsRequest(), timeout=TIMEOUT)
    with sqlite3.connect(broker.state_dir / "broker.sqlite3") as db:
        rows = db.execute(
            "SELECT actor, subject FROM audit_log WHERE action = 'access.refused'"
        ).fetchall()
    assert (
        spiffe_uri(FEDERATION, Role.CONSUMER, "alice"),
        "/fedsynth.v1.OperatorService/ListJobs",
    ) in rows
