"""Server TLS that follows its files: certificate rotation without a restart, and a revocation
list reloaded when it changes."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fedsynth.security.ca import CheckedCRL, load_crl
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


Stamp = tuple[tuple[int, int, int, int], ...]
"""What identifies a version of some files without reading them: inode, mtime, ctime, size."""


def _stamp(*paths: Path) -> Stamp | None:
    """The files' stamp now, None while one cannot be found: replacing, rewriting or chmod-ing
    one changes it."""
    try:
        stats = [p.stat() for p in paths]
    except OSError:
        return None
    return tuple((st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size) for st in stats)


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
        self._stamp: Stamp | None = _stamp(ca, cert, key)
        configuration = self._configuration()
        self.credentials = grpc.dynamic_ssl_server_credentials(
            configuration,
            self._fetch,
            require_client_authentication=True,
        )

    def _configuration(self) -> grpc.ServerCertificateConfiguration:
        cert_pem = _read("tls.cert", self.cert)
        key_pem = _read("tls.key", self.key)
        if self.key.stat().st_mode & 0o077:
            log.warning(
                "tls.key %s can be read by other users (mode %o): chmod 600 it",
                self.key,
                self.key.stat().st_mode & 0o777,
            )
        ca_pem = _read("tls.ca", self.ca)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise ValueError(f"tls.cert {self.cert}: not a PEM certificate") from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise ValueError(
                f"tls.key {self.key}: not an unencrypted PEM private key (fedsynth pki issue "
                "writes one)"
            ) from None
        if cert.public_key() != key.public_key():
            raise ValueError(f"{self.key} does not belong to {self.cert}")
        check_broker_identity(self.ca, self.cert, self.federation, self.name)
        return grpc.ssl_server_certificate_configuration(
            [(key_pem, cert_pem)], root_certificates=ca_pem
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """The new configuration if the files changed and are good, else None (keep serving).
        Files that fail are not tried, nor warned about, again until they change: this runs
        before every handshake."""
        with self._lock:
            stamp = _stamp(self.ca, self.cert, self.key)
            if stamp == self._stamp:
                return None
            self._stamp = stamp
            try:
                configuration = self._configuration()
            except (OSError, ValueError) as exc:
                log.warning("keeping the current TLS identity until its files change: %s", exc)
                return None
            log.info("TLS identity reloaded from %s", self.cert)
            return configuration


def _read(field: str, path: Path) -> bytes:
    """The bytes of the file a config field names; an error naming the field otherwise."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"{field} {path}: file not found") from None
    except IsADirectoryError:
        raise ValueError(f"{field} {path}: is a folder, not a PEM file") from None
    except PermissionError:
        raise ValueError(f"{field} {path}: not readable by this user") from None


STALE_WARNING_S = 3600.0
"""How often a broker holding a CRL past its nextUpdate says so in its log."""


class RevocationList:
    """Revoked certificate serials from a CA-signed CRL, reloaded when the file changes.

    A CRL that cannot be read or is not signed by the CA keeps the previous list in force, with
    one warning per version of the file (it is checked on every call, so more would flood the
    log). A CRL past its nextUpdate is still enforced and logged (at most hourly): refusing every
    peer because nobody re-signed the list in time would be an outage.
    """

    def __init__(self, crl: Path | None, ca: Path) -> None:
        self.path = crl
        self.ca_cert = load_cert(ca)
        self._lock = threading.Lock()
        self._stamp: Stamp | None = ()
        self._crl: CheckedCRL | None = None
        self._warned_at = -STALE_WARNING_S
        if crl is not None:
            self._stamp = _stamp(crl)
            _read("tls.crl", crl)
            try:
                self._loaded(load_crl(crl, self.ca_cert))
            except ValueError as exc:
                raise ValueError(f"tls.crl {exc}") from exc

    def is_revoked(self, serial: int) -> bool:
        self._reload()
        self._warn_if_stale()
        return self._crl is not None and serial in self._crl.serials

    def _warn_if_stale(self) -> None:
        crl = self._crl
        if crl is None or time.monotonic() - self._warned_at < STALE_WARNING_S:
            return
        message = crl.stale_warning()
        if message is not None:
            self._warned_at = time.monotonic()
            log.warning("%s", message)

    def _loaded(self, crl: CheckedCRL) -> None:
        """Enforce `crl` from now on; say so, and whether it is already stale."""
        self._crl = crl
        log.info("revocation list %s loaded: %d revoked serials", self.path, len(crl.serials))
        self._warned_at = -STALE_WARNING_S
        self._warn_if_stale()

    def _reload(self) -> None:
        """Load the CRL again if the file changed since it was last tried; a file that fails is
        not tried (nor warned about) again until it changes."""
        if self.path is None:
            return
        with self._lock:
            stamp = _stamp(self.path)
            if stamp == self._stamp:
                return
            self._stamp = stamp
            try:
                crl = load_crl(self.path, self.ca_cert)
            except (OSError, ValueError) as exc:
                kept = (
                    f"{len(self._crl.serials)} revoked serials" if self._crl else "no revocations"
                )
                log.warning(
                    "tls.crl: keeping the previous revocation list (%s) until the file changes: "
                    "%s; copy the federation's crl.pem over %s (`fedsynth pki crl --dir PKI_DIR` "
                    "re-signs it)",
                    kept,
                    exc,
                    self.path,
                )
                return
            self._loaded(crl)
