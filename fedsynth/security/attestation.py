"""Signed JSON documents: release attestations by the broker, audit verdicts by suppliers.

A document is canonical JSON (sorted keys, no spaces, UTF-8) signed with ECDSA P-256 / SHA-256
by a party key; the signer's certificate travels with it and must chain to the federation CA.
A supplier's verdict counts only when its signer is that very supplier and it names the job and
the dataset it is attached to.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Set
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import BaseModel, ConfigDict

from fedsynth.security.certificates import cert_pem, verify_chain
from fedsynth.security.principals import IdentityError, Principal, Role, principal_from_certificate

VERDICT_FORMAT = "fedsynth.supplier-verdict/v1"
# Topologies whose release merges outputs each supplier audited on its own: a verdict there covers
# that supplier's part, which the attestation records under `dataset.parts`.
MERGING_TOPOLOGIES = frozenset({"local"})


class AttestationError(ValueError):
    """A signed document that does not verify; the message says which check failed."""


def canonical_json(document: dict[str, Any]) -> bytes:
    """The exact bytes that get signed: sorted keys, compact separators, UTF-8."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SignedDocument:
    """Canonical JSON bytes, the DER signature over them, and the signer's certificate PEM."""

    payload: bytes
    signature: bytes
    certificate_pem: bytes

    def to_json(self) -> dict[str, str]:
        """JSON form for embedding in another document (base64 for the binary fields)."""
        return {
            "payload": self.payload.decode("utf-8"),
            "signature": base64.b64encode(self.signature).decode("ascii"),
            "certificate_pem": self.certificate_pem.decode("ascii"),
        }

    @classmethod
    def from_json(cls, data: Any) -> SignedDocument:
        wire = _SignedWire.model_validate(data)
        try:
            signature = base64.b64decode(wire.signature, validate=True)
        except ValueError as exc:
            raise AttestationError(f"signature is not base64: {exc}") from exc
        return cls(wire.payload.encode(), signature, wire.certificate_pem.encode())


class _SignedWire(BaseModel):
    model_config = ConfigDict(extra="forbid")

    payload: str
    signature: str
    certificate_pem: str


def sign_document(
    document: dict[str, Any], key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> SignedDocument:
    """Sign the canonical form of `document` with `key`, attaching `cert`."""
    payload = canonical_json(document)
    return SignedDocument(payload, key.sign(payload, ec.ECDSA(hashes.SHA256())), cert_pem(cert))


def verify_document(
    signed: SignedDocument,
    ca_cert: x509.Certificate,
    federation: str,
    *,
    role: Role,
    at: datetime | None = None,
    revoked: Set[int] = frozenset(),
) -> tuple[Principal, dict[str, Any]]:
    """Check chain, identity, revocation, role and signature; return the signer and document.

    `at` is the moment the signature must have been valid (default now). `revoked` holds the
    serials on the federation's CRL: a caller that has the CRL must pass it.
    """
    try:
        cert = x509.load_pem_x509_certificate(signed.certificate_pem)
    except ValueError as exc:
        raise AttestationError(f"signer certificate is not PEM: {exc}") from exc
    try:
        verify_chain(cert, ca_cert)
        signer = principal_from_certificate(
            cert, federation, usage=ExtendedKeyUsageOID.CLIENT_AUTH, now=at
        )
    except (ValueError, IdentityError) as exc:
        raise AttestationError(f"signer certificate refused: {exc}") from exc
    if signer.serial in revoked:
        raise AttestationError(
            f"signer certificate serial {signer.serial} ({signer.uri}) is revoked"
        )
    if signer.role is not role:
        raise AttestationError(f"signed by a {signer.role}, expected a {role}")
    public_key = cert.public_key()
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise AttestationError("signer key is not ECDSA")
    try:
        public_key.verify(signed.signature, signed.payload, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as exc:
        raise AttestationError(f"signature by {signer.uri} does not match the document") from exc
    try:
        document = json.loads(signed.payload)
    except ValueError as exc:
        raise AttestationError(f"signed payload is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise AttestationError("signed payload is not a JSON object")
    return signer, document


@dataclass(frozen=True)
class SupplierVerdict:
    """A supplier's audit verdict whose signature verified and whose signer is that supplier."""

    supplier: str
    verdict: str
    job_id: str
    dataset_sha256: str
    job_spec_sha256: str | None
    signer: Principal

    def binding_problems(
        self, *, job_id: str, job_spec_sha256: str, dataset_sha256: str
    ) -> list[str]:
        """Why this verdict does not cover `dataset_sha256` of `job_id` (empty when it does)."""
        problems = []
        if self.job_id != job_id:
            problems.append(
                f"supplier {self.supplier!r}'s verdict is for job {self.job_id!r}, not {job_id!r}"
            )
        if self.job_spec_sha256 is not None and self.job_spec_sha256 != job_spec_sha256:
            problems.append(
                f"supplier {self.supplier!r}'s verdict names job spec {self.job_spec_sha256}, "
                f"not {job_spec_sha256}"
            )
        if self.dataset_sha256 != dataset_sha256:
            problems.append(
                f"supplier {self.supplier!r}'s verdict names dataset {self.dataset_sha256}, "
                f"but the dataset it must cover is {dataset_sha256}"
            )
        return problems


def verify_supplier_verdict(
    signed: SignedDocument,
    ca_cert: x509.Certificate,
    federation: str,
    *,
    revoked: Set[int] | None,
    at: datetime | None = None,
) -> SupplierVerdict:
    """Verify a supplier's signed verdict, and that it was signed by the supplier it names.

    `revoked` is the federation CRL's serials; None only for a party that has no CRL and relies
    on another's check (the consumer, on the broker's signature over the attestation).
    """
    signer, document = verify_document(
        signed, ca_cert, federation, role=Role.SUPPLIER, at=at, revoked=revoked or frozenset()
    )
    if document.get("format") != VERDICT_FORMAT:
        raise AttestationError(
            f"document signed by {signer.uri} is not a {VERDICT_FORMAT} (format "
            f"{document.get('format')!r})"
        )
    fields = {k: document.get(k) for k in ("supplier", "verdict", "job_id", "dataset_sha256")}
    missing = [k for k, v in fields.items() if not isinstance(v, str)]
    if missing:
        raise AttestationError(f"verdict signed by {signer.uri} has no text {missing}")
    spec = document.get("job_spec_sha256")
    if spec is not None and not isinstance(spec, str):
        raise AttestationError(f"verdict signed by {signer.uri} has a non-text job_spec_sha256")
    if fields["supplier"] != signer.name:
        raise AttestationError(
            f"the verdict for supplier {fields['supplier']!r} is signed by {signer.uri}, not by "
            f"spiffe://{federation}/supplier/{fields['supplier']}"
        )
    return SupplierVerdict(**fields, job_spec_sha256=spec, signer=signer)
