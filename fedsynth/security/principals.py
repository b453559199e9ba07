"""Who a certificate speaks for: SPIFFE URI SANs `spiffe://<federation>/<role>/<name>`.

Every party is identified by the single SPIFFE URI in its certificate; this module turns a
verified peer certificate into a `Principal` and refuses certificates that must not act as leaves.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{0,62}[a-z0-9])?$")
_SPIFFE = re.compile(r"^spiffe://([^/]+)/([^/]+)/([^/]+)$")


class Role(StrEnum):
    """The four kinds of party in a federation."""

    BROKER = "broker"
    SUPPLIER = "supplier"
    OPERATOR = "operator"
    CONSUMER = "consumer"


class IdentityError(ValueError):
    """A certificate that does not name a usable principal; the message says why."""


@dataclass(frozen=True)
class Principal:
    """An authenticated party: federation, role and name, plus the certificate serial."""

    federation: str
    role: Role
    name: str
    serial: int = 0

    @property
    def uri(self) -> str:
        return spiffe_uri(self.federation, self.role, self.name)


def check_name(value: str, what: str = "name") -> str:
    """Return `value` if it is a valid federation or party name, else raise naming the rule."""
    if not _NAME.match(value):
        raise IdentityError(
            f"{what} {value!r} is not allowed: use 1-64 lowercase letters, digits, '.', '_' "
            "or '-', starting and ending with a letter or digit"
        )
    return value


def spiffe_uri(federation: str, role: Role | str, name: str) -> str:
    """The SPIFFE URI naming `name` in `role` within `federation`."""
    return f"spiffe://{check_name(federation, 'federation')}/{Role(role)}/{check_name(name)}"


def parse_spiffe_uri(uri: str) -> tuple[str, Role, str]:
    """Split a SPIFFE URI into (federation, role, name)."""
    match = _SPIFFE.match(uri)
    if not match:
        raise IdentityError(f"{uri!r} is not spiffe://<federation>/<role>/<name>")
    federation, role, name = match.groups()
    try:
        parsed_role = Role(role)
    except ValueError as exc:
        raise IdentityError(f"{uri!r}: unknown role {role!r}; roles are {list(Role)}") from exc
    return check_name(federation, "federation"), parsed_role, check_name(name)


def principal_from_certificate(
    cert: x509.Certificate,
    federation: str,
    *,
    usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH,
    now: datetime | None = None,
) -> Principal:
    """The principal a leaf certificate speaks for, after the checks a TLS stack may skip.

    Refuses CA certificates, certificates outside their validity window, certificates whose
    extended key usage lacks `usage`, and certificates without exactly one SPIFFE URI of
    `federation`. The chain itself must already have been verified (TLS or `verify_chain`).
    """
    now = now or datetime.now(UTC)
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise IdentityError("a CA certificate cannot be used as a party certificate")
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        raise IdentityError(
            f"certificate serial {cert.serial_number} is not valid now "
            f"(valid {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d})"
        )
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("certificate has no extended key usage") from exc
    if usage not in usages:
        raise IdentityError(
            f"certificate's extended key usage does not allow {usage.dotted_string} "
            f"({'client' if usage == ExtendedKeyUsageOID.CLIENT_AUTH else 'server'} auth)"
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("certificate has no subject alternative name") from exc
    spiffe = [
        u
        for u in san.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith("spiffe://")
    ]
    if len(spiffe) != 1:
        raise IdentityError(f"certificate must carry exactly one SPIFFE URI, found {spiffe}")
    cert_federation, role, name = parse_spiffe_uri(spiffe[0])
    if cert_federation != federation:
        raise IdentityError(f"certificate belongs to federation {cert_federation!r}")
    return Principal(federation, role, name, cert.serial_number)


def federation_of_ca(ca_cert: x509.Certificate) -> str:
    """The federation a root CA certificate was created for (its `spiffe://<federation>` SAN)."""
    try:
        san = ca_cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound as exc:
        raise IdentityError("CA certificate has no spiffe://<federation> SAN") from exc
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://") and "/" not in uri[len("spiffe://") :]:
            return check_name(uri[len("spiffe://") :], "federation")
    raise IdentityError("CA certificate has no spiffe://<federation> SAN")
