"""X.509 building blocks: ECDSA P-256 keys, the federation CA, party certificates and chains."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fedsynth.files import atomic_path, atomic_write_bytes, keep_owner
from fedsynth.security.principals import Role, spiffe_uri

PUBLIC_MODE = 0o644
"""Mode of new public PEMs (CA certificate, CRL, party certificates): every party may read them."""

LAST_DATE = datetime.max.replace(tzinfo=UTC)
"""The latest validity end Python dates and X.509 GeneralizedTime (year 9999) both hold."""


@dataclass(frozen=True)
class Issued:
    """A private key with its certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def create_ca(federation: str, *, days: int = 3650) -> Issued:
    """A self-signed federation root CA whose subject and SAN name the federation."""
    now = datetime.now(UTC)
    check_representable(now, days)
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{federation} federation CA")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{federation}")]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue_certificate(
    ca: Issued,
    federation: str,
    role: Role,
    name: str,
    *,
    days: int = 365,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    valid_from: datetime | None = None,
) -> Issued:
    """A leaf certificate for `name` in `role`, signed by the federation CA.

    Every leaf may authenticate as a TLS client; the broker's may also serve TLS and carries
    `dns_names` / `ip_addresses` for hostname checks.
    """
    role = Role(role)
    start = valid_from or datetime.now(UTC) - timedelta(minutes=5)
    check_within_ca(ca.cert, start, days)
    key = new_key()
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
    alt_names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(spiffe_uri(federation, role, name))
    ]
    if role is Role.BROKER:
        usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        alt_names += [x509.DNSName(d) for d in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{role}/{name}")]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def check_representable(start: datetime, days: int) -> None:
    """Raise ValueError naming the largest --days if `start` + `days` is past year 9999, the last
    date a certificate can carry (Python would raise OverflowError)."""
    largest = (LAST_DATE - start).days
    if days > largest:
        raise ValueError(
            f"--days {days} ends after year 9999, the last date a certificate can carry; "
            f"the largest --days allowed is {largest}"
        )


def check_within_ca(ca_cert: x509.Certificate, start: datetime, days: int) -> None:
    """Raise ValueError if a leaf or CRL valid `days` from `start` would outlive the CA that signs
    it: clients stop trusting it when the CA expires, whatever its own dates say."""
    ca_end = ca_cert.not_valid_after_utc
    largest = (ca_end - start).days
    if days <= largest:
        return
    if largest < 1:
        raise ValueError(
            f"the federation CA expires {ca_end:%Y-%m-%d %H:%M} UTC, less than a day after "
            f"{start:%Y-%m-%d %H:%M} UTC; create a new CA with `fedsynth pki init`"
        )
    raise ValueError(
        f"--days {days} would outlive the federation CA, which is valid until "
        f"{ca_end:%Y-%m-%d %H:%M} UTC; the largest --days allowed is {largest}"
    )


def verify_chain(cert: x509.Certificate, ca_cert: x509.Certificate) -> None:
    """Raise ValueError unless `cert` is signed by `ca_cert` (the federation root) and not it."""
    if cert.issuer != ca_cert.subject or cert == ca_cert:
        raise ValueError(f"certificate {cert.subject.rfc4514_string()} is not issued by the CA")
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature) as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise ValueError(
            f"certificate {cert.subject.rfc4514_string()} is not issued by the CA: its signature "
            f"does not verify against the CA's key{detail}"
        ) from exc


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_cert(path: str | Path) -> x509.Certificate:
    path = Path(path)
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: certificate file not found") from exc
    except ValueError as exc:
        raise ValueError(f"{path}: not a PEM certificate: {exc}") from exc


def load_key(path: str | Path) -> ec.EllipticCurvePrivateKey:
    path = Path(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: key file not found") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: expected an ECDSA P-256 private key")
    return key


def write_private(path: str | Path, data: bytes) -> None:
    """Write secret bytes atomically with mode 0600 (set before any byte is written); a key
    rewritten in place keeps its owner, so the service user it was given to can still read it."""
    with atomic_path(path) as tmp:
        os.chmod(tmp, 0o600)
        keep_owner(tmp, Path(path))
        tmp.write_bytes(data)


def write_public(path: str | Path, data: bytes) -> None:
    """Write a public PEM atomically: 0644 when new, an existing file's mode and owner kept."""
    atomic_write_bytes(path, data, mode=PUBLIC_MODE)


def write_issued(issued: Issued, cert_path: Path, key_path: Path) -> None:
    """Write a party's key (0600) and certificate (public)."""
    write_private(key_path, key_pem(issued.key))
    write_public(cert_path, cert_pem(issued.cert))


def served_names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (DNS names, IP addresses) a broker certificate serves, from its SAN."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = tuple(san.get_values_for_type(x509.DNSName))
    ips = tuple(str(a) for a in san.get_values_for_type(x509.IPAddress))
    return dns, ips
