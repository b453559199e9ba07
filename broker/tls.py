"""Server TLS that follows its files: certificate rotation without a restart, and a revocation
list reloaded when it changes."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedsynth.security.ca import load_revoked_serials
from fedsynth.security.certificates import load_cert, verify_chain
from fedsynth.security.principals import (
    IdentityError,
    Role,
    federation_of_ca,
    principal_from_certificate,
    spiffe_uri,
)

log = logging.getLogger(__name__)


def check_broker_identity(ca_path: Path, cert_path: Path, federation: str, name: str) -> None:
    """Raise ValueError unless `tls.ca` is the CA of `federation` and `tls.cert` is the broker
    certificate it issued for `name`: serving with any other identity misleads every peer."""
    wanted = spiffe_uri(federation, Role.BROKER, name)
    ca_cert = load_cert(ca_path)
    try:
        ca_federation = federation_of_ca(ca_cert)
    except IdentityError as exc:
        raise ValueError(f"tls.ca {ca_path}: {exc}") from exc
    if ca_federation != federation:
        raise ValueError(
            f"tls.ca {ca_path} is the CA of federation {ca_federation!r} but the config says "
            f"federation: {federation}; point tls.ca at the {federation!r} CA or fix federation"
        )
    cert = load_cert(cert_path)
    try:
        verify_chain(cert, ca_cert)
        principal = principal_from_certificate(cert, federation)
    except ValueError as exc:
        raise ValueError(f"tls.cert {cert_path}: {exc}; the broker needs {wanted}") from exc
    if principal.role is not Role.BROKER:
        raise ValueError(
            f"tls.cert {cert_path} is the {principal.role} certificate {principal.uri}, not this "
            f"broker's ({wanted}); set tls.cert and tls.key to the broker's pair"
        )
    if principal.uri != wanted:
        raise ValueError(
            f"tls.cert {cert_path} is the certificate of {principal.uri}, not of this broker "
            f"({wanted}); issue one with `fedsynth pki issue --role broker --name {name}` "
            "or fix name in the config"
        )


def _stamp(*paths: Path) -> tuple[tuple[int, int], ...]:
    return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)


class RotatingCredentials:
    """Mutual-TLS server credentials re-read from disk before each new handshake when changed.

    A certificate/key pair that does not match (a rotation caught half-way), or a certificate
    that is not this broker's (`check_broker_identity`), is ignored until it is, so the broker
    keeps serving with the previous pair.
    """

    def __init__(self, ca: Path, cert: Path, key: Path, *, federation: str, name: str) -> None:
        self.ca, self.cert, self.key = ca, cert, key
        self.federation, self.name = federation, name
        self._lock = threading.Lock()
        self._stamp = _stamp(ca, cert, key)
        self.credentials = grpc.dynamic_ssl_server_credentials(
            self._configuration(),
            self._fetch,
            require_client_authentication=True,
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert_pem, key_pem = self.cert.read_bytes(), self.key.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        key = serialization.load_pem_private_key(key_pem, password=None)
        if cert.public_key() != key.public_key():
            raise ValueError(f"{self.key} does not belong to {self.cert}")
        check_broker_identity(self.ca, self.cert, self.federation, self.name)
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=self.ca.read_bytes()
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            try:
                stamp = _stamp(self.ca, self.cert, self.key)
                if stamp == self._stamp:
                    return None
                configuration = self._configuration()
            except (OSError, ValueError) as exc:
                log.warning("keeping the current TLS identity: %s", exc)
                return None
            self._stamp = stamp
            log.info("TLS identity reloaded from %s", self.cert)
            return configuration


class RevocationList:
    """Revoked certificate serials from a CA-signed CRL, reloaded when the file changes.

    A CRL that cannot be read or is not signed by the CA keeps the previous list in force.
    """

    def __init__(self, crl: Path | None, ca: Path) -> None:
        self.path = crl
        self.ca_cert = load_cert(ca)
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int], ...] = ()
        self._serials: frozenset[int] = frozenset()
        if crl is not None:
            self._stamp = _stamp(crl)
            self._serials = load_revoked_serials(crl, self.ca_cert)

    def is_revoked(self, serial: int) -> bool:
        self._reload()
        return serial in self._serials

    def _reload(self) -> None:
        if self.path is None:
            return
        with self._lock:
            try:
                stamp = _stamp(self.path)
                if stamp == self._stamp:
                    return
                self._serials = load_revoked_serials(self.path, self.ca_cert)
            except (OSError, ValueError) as exc:
                log.warning("keeping the previous revocation list: %s", exc)
                return
            self._stamp = stamp
