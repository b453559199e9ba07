"""The key announcements of one secure-aggregation round, as the broker relays them.

Each supplier uploads its signed X25519 announcement with its own certificate; the broker
bundles them for the round. A supplier trusts a peer's key only after checking, itself, that
the certificate beside it chains to the federation CA, names that supplier (SPIFFE URI, supplier
role) and signed the key: the broker relays but cannot substitute keys or certificates.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import BaseModel, ConfigDict, Field

from fedsynth.privacy.secagg import KeyAnnouncement, SecAggError, SecAggRound
from fedsynth.security.certificates import verify_chain
from fedsynth.security.principals import IdentityError, Role, principal_from_certificate


class SignedKey(BaseModel):
    """One supplier's announcement and the certificate whose key signed it (PEM)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    announcement: KeyAnnouncement
    certificate_pem: str = Field(min_length=1)


class KeyBundle(BaseModel):
    """Every participant's signed key for one round, relayed by the broker."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    round_id: str = Field(min_length=1)
    participants: list[str] = Field(min_length=2)
    keys: list[SignedKey]

    def round(self) -> SecAggRound:
        return SecAggRound(self.round_id, tuple(self.participants))

    def announcements(self) -> list[KeyAnnouncement]:
        return [k.announcement for k in self.keys]


def certificate_keys(
    bundle: KeyBundle,
    ca_cert: x509.Certificate,
    federation: str,
    revoked: frozenset[int] = frozenset(),
) -> dict[str, ec.EllipticCurvePublicKey]:
    """Each participant's certificate key, after checking the certificate chains to the CA, is
    not among the `revoked` serials and names that supplier."""
    keys: dict[str, ec.EllipticCurvePublicKey] = {}
    for entry in bundle.keys:
        supplier = entry.announcement.supplier
        try:
            cert = x509.load_pem_x509_certificate(entry.certificate_pem.encode())
            verify_chain(cert, ca_cert)
            if cert.serial_number in revoked:
                raise ValueError(f"certificate serial {cert.serial_number} is revoked")
            principal = principal_from_certificate(
                cert, federation, usage=ExtendedKeyUsageOID.CLIENT_AUTH
            )
        except (ValueError, IdentityError) as exc:
            raise SecAggError(
                f"the certificate relayed for {supplier!r} is refused: {exc}; its key is not used"
            ) from exc
        if principal.role is not Role.SUPPLIER or principal.name != supplier:
            raise SecAggError(
                f"the certificate relayed for {supplier!r} belongs to {principal.uri}: refusing "
                "a key announced under another party's name"
            )
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise SecAggError(f"{supplier!r}'s certificate key is not ECDSA")
        if supplier in keys:
            raise SecAggError(f"round {bundle.round_id!r}: {supplier!r} announced twice")
        keys[supplier] = public
    return keys
