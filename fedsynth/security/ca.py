"""The federation CA on disk: a PKI folder with the root, an inventory and a revocation list.

Layout of `pki/`: `ca.pem`, `ca.key` (0600), `federation.json`, `issued.json` (every certificate
issued, for revocation by name), `crl.pem` (signed by the CA, re-signed on each revocation and by
`fedsynth pki crl`), and `<role>/<name>.pem` + `<role>/<name>.key` (0600) for each party. Public
PEMs (`ca.pem`, `crl.pem`, party certificates) are created 0644, and a rewrite keeps the mode and
owner an operator gave them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from pydantic import BaseModel, ConfigDict

from fedsynth.files import atomic_write_text
from fedsynth.security.certificates import (
    Issued,
    cert_pem,
    check_within_ca,
    create_ca,
    issue_certificate,
    key_pem,
    load_cert,
    load_key,
    write_issued,
    write_private,
    write_public,
)
from fedsynth.security.principals import Role, check_name

CRL_DAYS = 30
"""Days until a CRL's nextUpdate; `fedsynth pki crl` re-signs it before then."""


class IssuedRecord(BaseModel):
    """One certificate the CA issued."""

    model_config = ConfigDict(extra="forbid")

    serial: int
    role: Role
    name: str
    not_after: datetime
    revoked_at: datetime | None = None


class Inventory(BaseModel):
    """The CA's record of its federation and everything it issued."""

    model_config = ConfigDict(extra="forbid")

    federation: str
    issued: list[IssuedRecord] = []


class FederationCA:
    """A federation CA kept in a folder; `init` creates one, the constructor opens one."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        inventory_path = self.directory / "issued.json"
        if not inventory_path.exists():
            raise FileNotFoundError(
                f"{self.directory}: no federation CA here; create one with "
                "`fedsynth pki init --federation NAME --dir DIR`"
            )
        self.inventory = Inventory.model_validate_json(inventory_path.read_text("utf-8"))
        self.ca = Issued(load_key(self.directory / "ca.key"), load_cert(self.directory / "ca.pem"))

    @property
    def federation(self) -> str:
        return self.inventory.federation

    @property
    def crl_path(self) -> Path:
        return self.directory / "crl.pem"

    @classmethod
    def init(cls, directory: str | Path, federation: str, *, days: int = 3650) -> FederationCA:
        """Create a new CA in `directory` (refuses to overwrite an existing one)."""
        directory = Path(directory)
        check_name(federation, "federation")
        if (directory / "ca.key").exists():
            raise FileExistsError(f"{directory}: a CA already exists; use another --dir")
        ca = create_ca(federation, days=days)
        write_private(directory / "ca.key", key_pem(ca.key))
        write_public(directory / "ca.pem", cert_pem(ca.cert))
        atomic_write_text(
            directory / "federation.json", json.dumps({"federation": federation}, indent=2) + "\n"
        )
        atomic_write_text(
            directory / "issued.json", Inventory(federation=federation).model_dump_json(indent=2)
        )
        opened = cls(directory)
        opened.write_crl()
        return opened

    def paths_for(self, role: Role, name: str) -> tuple[Path, Path]:
        """(certificate, key) paths of a party inside the PKI folder."""
        base = self.directory / Role(role).value
        return base / f"{name}.pem", base / f"{name}.key"

    def issue(
        self,
        role: Role,
        name: str,
        *,
        days: int = 365,
        dns_names: tuple[str, ...] = (),
        ip_addresses: tuple[str, ...] = (),
        valid_from: datetime | None = None,
        replace: bool = False,
    ) -> tuple[Path, Path]:
        """Issue, record and write a party certificate; return its (certificate, key) paths.

        Refuses a (role, name) that still has an unrevoked certificate unless `replace`, which
        revokes it: overwriting the files alone would leave the old serial trusted.
        """
        live = self.live_serials(role, name)
        if live and not replace:
            raise FileExistsError(
                f"{Role(role)}/{name} already has an unrevoked certificate "
                f"(serial {', '.join(map(str, live))}) in {self.directory}; pass --replace to "
                "revoke it and issue a new one"
            )
        issued = issue_certificate(
            self.ca,
            self.federation,
            Role(role),
            name,
            days=days,
            dns_names=dns_names,
            ip_addresses=ip_addresses,
            valid_from=valid_from,
        )
        if live:
            self.revoke(role=role, name=name)
        cert_path, key_path = self.paths_for(role, name)
        write_issued(issued, cert_path, key_path)
        self.inventory.issued.append(
            IssuedRecord(
                serial=issued.cert.serial_number,
                role=Role(role),
                name=name,
                not_after=issued.cert.not_valid_after_utc,
            )
        )
        self._save()
        return cert_path, key_path

    def live_serials(self, role: Role, name: str) -> list[int]:
        """Serials of the unrevoked certificates recorded for (role, name)."""
        return [
            r.serial
            for r in self.inventory.issued
            if r.revoked_at is None and (r.role, r.name) == (Role(role), name)
        ]

    def revoke(
        self, *, serial: int | None = None, role: Role | None = None, name: str | None = None
    ) -> list[int]:
        """Revoke by serial, or every live certificate of (role, name); re-sign the CRL.

        With a serial, a role or name given too must be the serial's: a mismatch means the
        operator meant another certificate, so nothing is revoked.
        """
        if serial is None and (role is None or name is None):
            raise ValueError("revoke needs a serial, or both a role and a name")
        if serial is not None:
            self._check_owner(serial, role, name)
        now = datetime.now(UTC)
        hits = [
            r
            for r in self.inventory.issued
            if r.revoked_at is None
            and (r.serial == serial if serial is not None else (r.role, r.name) == (role, name))
        ]
        if not hits:
            raise self._nothing_to_revoke(serial, role, name)
        for record in hits:
            record.revoked_at = now
        self._save()
        self.write_crl()
        return [r.serial for r in hits]

    def _nothing_to_revoke(
        self, serial: int | None, role: Role | None, name: str | None
    ) -> LookupError:
        """Why a revocation matched no live certificate, in words: never issued (with what was,
        to catch a typo) or already revoked."""
        if serial is not None:
            record = next((r for r in self.inventory.issued if r.serial == serial), None)
            if record is None:
                return LookupError(
                    f"the CA in {self.directory}/ issued no certificate with serial {serial}; "
                    f"{self.directory / 'issued.json'} lists every serial it issued"
                )
            return LookupError(
                f"the certificate with serial {serial} ({record.role} {record.name!r}) is "
                "already revoked; nothing revoked"
            )
        records = [r for r in self.inventory.issued if (r.role, r.name) == (role, name)]
        if records:
            return LookupError(
                f"every certificate issued to {role} {name!r} is already revoked (serial(s) "
                f"{', '.join(str(r.serial) for r in records)}); nothing revoked"
            )
        named = sorted({r.name for r in self.inventory.issued if r.role == role})
        issued = (
            f"its {role} certificates went to {', '.join(named)}"
            if named
            else f"it issued no {role} certificate"
        )
        return LookupError(
            f"no certificate issued to {role} {name!r} by the CA in {self.directory}/ ({issued}); "
            f"check the role and name against {self.directory / 'issued.json'}, or the CA "
            "folder if another CA issued it"
        )

    def _check_owner(self, serial: int, role: Role | None, name: str | None) -> None:
        """Raise LookupError if `serial` is recorded for another role or name than those given."""
        record = next((r for r in self.inventory.issued if r.serial == serial), None)
        if record is None:
            return
        if (role is not None and Role(role) is not record.role) or (
            name is not None and name != record.name
        ):
            raise LookupError(
                f"serial {serial} is the certificate of {record.role}/{record.name}, not "
                f"{role or record.role}/{name or record.name}; nothing revoked (see "
                f"{self.directory / 'issued.json'})"
            )

    def resign_crl(self, days: int = CRL_DAYS) -> datetime:
        """Re-sign `crl.pem` with the same entries, valid `days` more; return its nextUpdate.

        Nothing else refreshes the CRL between revocations, and relying parties warn once it
        is past its nextUpdate.
        """
        check_within_ca(self.ca.cert, datetime.now(UTC), days)
        return self.write_crl(days)

    def write_crl(self, days: int = CRL_DAYS) -> datetime:
        """Write `crl.pem` listing every revoked serial, signed by the CA; return its nextUpdate."""
        now = datetime.now(UTC)
        next_update = now + timedelta(days=days)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.ca.cert.subject)
            .last_update(now)
            .next_update(next_update)
        )
        for record in self.inventory.issued:
            if record.revoked_at is not None:
                builder = builder.add_revoked_certificate(
                    x509.RevokedCertificateBuilder()
                    .serial_number(record.serial)
                    .revocation_date(record.revoked_at)
                    .build()
                )
        crl = builder.sign(self.ca.key, hashes.SHA256())
        write_public(self.crl_path, crl.public_bytes(serialization.Encoding.PEM))
        return next_update

    def _save(self) -> None:
        atomic_write_text(self.directory / "issued.json", self.inventory.model_dump_json(indent=2))


@dataclass(frozen=True)
class CheckedCRL:
    """A CRL whose CA signature verified: the serials it revokes and when it must be renewed."""

    path: Path
    serials: frozenset[int]
    next_update: datetime | None

    def stale_warning(self, now: datetime | None = None) -> str | None:
        """A log message if the CRL is past its nextUpdate, else None.

        A stale CRL is a warning, not a refusal: its revocations still hold, and refusing every
        peer because nobody re-signed the list in time would be an outage.
        """
        now = now or datetime.now(UTC)
        if self.next_update is None or now <= self.next_update:
            return None
        return (
            f"{self.path}: revocation list is stale: its nextUpdate was "
            f"{self.next_update:%Y-%m-%d %H:%M} UTC, so revocations since then may be missing; "
            "re-sign it with `fedsynth pki crl --dir PKI_DIR` and copy the new crl.pem here "
            "(its revocations are still enforced)"
        )


def load_crl(crl_path: str | Path, ca_cert: x509.Certificate) -> CheckedCRL:
    """Read a CRL and check the CA signed it; raise ValueError otherwise."""
    crl_path = Path(crl_path)
    try:
        crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    except ValueError as exc:
        raise ValueError(f"{crl_path}: not a PEM CRL: {exc}") from exc
    if crl.issuer != ca_cert.subject or not crl.is_signature_valid(ca_cert.public_key()):
        raise ValueError(f"{crl_path}: CRL is not signed by the federation CA")
    return CheckedCRL(crl_path, frozenset(r.serial_number for r in crl), crl.next_update_utc)


def load_revoked_serials(crl_path: str | Path, ca_cert: x509.Certificate) -> frozenset[int]:
    """Serials listed in a CRL, after checking the CA signed it; `load_crl` also tells staleness."""
    return load_crl(crl_path, ca_cert).serials
