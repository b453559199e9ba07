"""Python API for data consumers: `Client(...).pull(release_id) -> pandas.DataFrame`.

Nothing is written or returned before the release checks out: the attestation's signature must
chain to the federation CA through a broker certificate, every supplier verdict inside it must
verify, be signed by the supplier it speaks for and cover the released dataset (in `local`, that
supplier's attested part) of the attested job, the broker's own audit must name the released
dataset, the audit report must match its hash, and the downloaded bytes must match the attested
SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from pydantic import BaseModel, ValidationError

from fedsynth.files import check_outputs
from fedsynth.schema import TableSchema
from fedsynth.security.attestation import (
    MERGING_TOPOLOGIES,
    AttestationError,
    SignedDocument,
    verify_document,
    verify_supplier_verdict,
)
from fedsynth.security.certificates import load_cert
from fedsynth.security.principals import Role, federation_of_ca
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.paging import every_page
from fedsynth.wire.stubs import ConsumerStub
from fedsynth.wire.transfer import (
    TransferError,
    TransferIncomplete,
    download_file,
    file_digest,
)
from fedsynth.wire.v1 import common_pb2, consumer_pb2

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[int, int], None]
OUTPUT_SUFFIXES = (".parquet", ".csv")
MAX_AUDIT_HTML_BYTES = 32 * 1024 * 1024
"""The most bytes taken for a release's HTML audit report, whose size the attestation does
not state: a page grown on the broker's disk must not fill the consumer's."""


class ReleaseVerificationError(RuntimeError):
    """The release failed a check; nothing was written. The message names the check."""


class ReleaseNotFound(LookupError):
    """The broker serves no release of that id (never released, withdrawn, or a rejected
    candidate). `reason` is the broker's answer alone, for a caller that words its own hint."""

    def __init__(self, release_id: str, details: str) -> None:
        self.release_id = release_id
        self.reason = f"release {release_id!r}: the broker answered NOT_FOUND ({details})"
        super().__init__(f"{self.reason}; Client.list() shows the releases it serves")


@dataclass(frozen=True)
class VerifiedManifest:
    """A release whose attestation verified: summary fields and the attested document."""

    summary: common_pb2.ReleaseSummary
    attestation: dict[str, Any]
    audit_report: dict[str, Any]

    @property
    def schema(self) -> TableSchema | None:
        """The released table's schema as the broker attested it (column kinds, bounds,
        domains, descriptions); None for a release published without one."""
        attested = self.attestation.get("schema")
        if attested is None:
            return None
        return TableSchema.from_dict(attested, source="the release's attested schema")


class Client:
    """A consumer's connection to the broker (mutual TLS with the consumer's certificate)."""

    def __init__(
        self,
        broker: str,
        *,
        ca: str | Path,
        cert: str | Path,
        key: str | Path,
        server_name: str | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.broker = broker
        self._channel = secure_channel(broker, ca=ca, cert=cert, key=key, server_name=server_name)
        self.ca_cert = load_cert(ca)
        self.federation = federation_of_ca(self.ca_cert)
        self.timeout = timeout
        self._stub = ConsumerStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def list(self) -> list[common_pb2.ReleaseSummary]:
        """Every release the broker serves, oldest first, fetched a page at a time. These
        summaries are the broker's unsigned word: `show` checks one against its attestation."""
        return every_page(
            lambda token: self._stub.ListReleases(
                common_pb2.ListReleasesRequest(page_token=token), timeout=self.timeout
            ),
            lambda reply: reply.releases,
        )

    def show(self, release_id: str) -> VerifiedManifest:
        """The release's verified manifest. Raises ReleaseNotFound for an id the broker does
        not serve, ReleaseVerificationError if the release does not verify, and grpc.RpcError
        for other refusals (UNAVAILABLE, PERMISSION_DENIED)."""
        try:
            manifest = self._stub.GetRelease(
                common_pb2.ReleaseRef(release_id=release_id), timeout=self.timeout
            )
        except grpc.RpcError as exc:
            if exc.code() is grpc.StatusCode.NOT_FOUND:
                raise ReleaseNotFound(release_id, exc.details()) from exc
            raise
        return self._verify(release_id, manifest)

    def pull_to(
        self,
        release_id: str,
        out: str | Path,
        *,
        on_progress: Progress | None = None,
        on_convert: Callable[[], None] | None = None,
    ) -> VerifiedManifest:
        """Download, verify and write the dataset to `out` (.parquet as served, or .csv).

        An interrupted pull leaves its received bytes beside `out` (a hidden `.part` file);
        pulling the same release to the same file again resumes from them. For a .csv,
        `on_convert` is called once the download verified, before the conversion (which reads
        the whole table); a conversion that does not finish keeps the verified download beside
        `out`, and the next pull to the same file converts it again without downloading.
        """
        out = Path(out)
        if out.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"{out}: the output must end in .parquet or .csv")
        check_outputs({"--out": out})
        verified = self.show(release_id)
        if out.suffix.lower() == ".parquet":
            self._download(release_id, verified, out, on_progress)
            return verified
        # Imported here: the conversion loads pyarrow and pandas, which a .parquet pull skips.
        from consumer_client.csv_output import write_csv

        served = out.with_name(f".{out.name}.parquet")
        if not _holds(served, verified.attestation["dataset"]["sha256"]):
            self._download(release_id, verified, served, on_progress)
        if on_convert:
            on_convert()
        write_csv(served, out)
        served.unlink()
        return verified

    def pull(self, release_id: str, *, on_progress: Progress | None = None) -> pd.DataFrame:
        """The verified release as a DataFrame."""
        # Imported here: a pull to a .parquet file needs neither pyarrow nor pandas, and loading
        # them costs the client about 150 MiB and a second of start-up.
        import pyarrow.parquet as pq

        verified = self.show(release_id)
        with tempfile.TemporaryDirectory() as scratch:
            local = self._download(
                release_id, verified, Path(scratch) / "data.parquet", on_progress
            )
            return pq.read_table(local).to_pandas()

    def audit_html_to(self, release_id: str, out: str | Path) -> VerifiedManifest:
        """Download the release's HTML audit report to `out`, written only if its SHA-256 is
        the one the broker signed in the attestation."""
        out = Path(out)
        check_outputs({"--out": out})
        verified = self.show(release_id)
        expected = verified.attestation.get("audit_html", {}).get("sha256")
        if not isinstance(expected, str):
            raise ReleaseVerificationError(
                f"release {release_id}: the attestation names no HTML audit report"
            )
        self._fetch_part(
            release_id, consumer_pb2.RELEASE_PART_AUDIT_HTML, "audit report", expected, None, out
        )
        return verified

    def _download(
        self,
        release_id: str,
        verified: VerifiedManifest,
        destination: Path,
        on_progress: Progress | None,
    ) -> Path:
        dataset = verified.attestation["dataset"]
        total = int(dataset["size"])
        progress = (lambda done: on_progress(done, total)) if on_progress else None
        self._fetch_part(
            release_id,
            consumer_pb2.RELEASE_PART_DATASET,
            "dataset",
            dataset["sha256"],
            total,
            destination,
            progress,
        )
        return destination

    def _fetch_part(
        self,
        release_id: str,
        part: int,
        label: str,
        sha256: str,
        size: int | None,
        destination: Path,
        on_progress: Callable[[int], None] | None = None,
    ) -> None:
        """Stream one part of a release into `destination`, refused unless it hashes to the
        signed `sha256` and, from its first message, unless the broker announces the signed
        `size` (a part whose size is not signed: at most MAX_AUDIT_HTML_BYTES)."""

        def open_stream(offset: int) -> Any:
            request = consumer_pb2.DownloadRequest(release_id=release_id, part=part, offset=offset)
            return self._stub.Download(request, timeout=self.timeout + (size or 0) / 10e6)

        try:
            download_file(
                open_stream,
                destination,
                expected_sha256=sha256,
                expected_size=size,
                max_size=MAX_AUDIT_HTML_BYTES if size is None else None,
                on_progress=on_progress,
            )
        except TransferIncomplete:
            raise
        except TransferError as exc:
            raise ReleaseVerificationError(f"release {release_id}: {label} refused: {exc}") from exc

    def _verify(self, release_id: str, manifest: common_pb2.ReleaseManifest) -> VerifiedManifest:
        signed = SignedDocument(
            manifest.attestation_json, manifest.signature, manifest.broker_certificate_pem
        )
        try:
            _, attestation = verify_document(
                signed, self.ca_cert, self.federation, role=Role.BROKER
            )
            self._verify_verdicts(attestation)
        except (AttestationError, ValidationError) as exc:
            raise ReleaseVerificationError(
                f"release {release_id}: attestation refused: {exc}"
            ) from exc
        problems = []
        if attestation.get("release_id") != release_id:
            problems.append(f"attestation is for {attestation.get('release_id')!r}")
        if attestation.get("dataset", {}).get("sha256") != manifest.summary.dataset_sha256:
            problems.append("listed dataset hash differs from the attested one")
        summary = manifest.summary
        listed = {
            "name": (summary.name, attestation.get("name")),
            "job": (summary.job_id, attestation.get("job_id")),
            "topology": (summary.topology, attestation.get("topology")),
            "synthesizer": (summary.synthesizer, attestation.get("synthesizer")),
            "dataset size": (summary.dataset_size, attestation.get("dataset", {}).get("size")),
        }
        for field, (said, signed_value) in listed.items():
            if said != signed_value:
                problems.append(
                    f"listed {field} {said!r} differs from the attested {signed_value!r}"
                )
        report_sha = hashlib.sha256(manifest.audit_report_json).hexdigest()
        if attestation.get("audit_report", {}).get("sha256") != report_sha:
            problems.append("audit report does not match the attested hash")
        if attestation.get("audit_report", {}).get("verdict") != "pass":
            problems.append("attested audit verdict is not 'pass'")
        audited = attestation.get("audit_report", {}).get("dataset_sha256")
        if audited != attestation.get("dataset", {}).get("sha256"):
            problems.append(
                f"the broker's audit names dataset {audited}, but the released dataset is "
                f"{attestation.get('dataset', {}).get('sha256')}"
            )
        if problems:
            raise ReleaseVerificationError(f"release {release_id}: " + "; ".join(problems))
        return VerifiedManifest(
            manifest.summary, attestation, _json_object(manifest.audit_report_json)
        )

    def _verify_verdicts(self, attestation: dict[str, Any]) -> None:
        """Raise AttestationError unless every supplier verdict is signed by the supplier it
        speaks for, passed, and covers this release's job and dataset (in `local`, its part).

        Certificates are checked at the attestation's issue time, when the broker vouches the
        verdicts were already signed; revocation is the broker's check, vouched by its signature.
        """
        attested = _Attested.model_validate(attestation)
        parts = attested.dataset.parts
        merging = attested.topology in MERGING_TOPOLOGIES
        if merging != (parts is not None):
            raise AttestationError(
                f"a {attested.topology} release must list its dataset's parts exactly when its "
                "suppliers' outputs were merged"
            )
        seen: set[str] = set()
        for index, entry in enumerate(attested.supplier_verdicts, 1):
            verdict = verify_supplier_verdict(
                SignedDocument.from_json(entry),
                self.ca_cert,
                self.federation,
                revoked=None,
                at=attested.issued_at,
            )
            if verdict.supplier in seen:
                raise AttestationError(f"supplier {verdict.supplier!r} has more than one verdict")
            seen.add(verdict.supplier)
            covers = attested.dataset.sha256 if parts is None else parts.get(verdict.supplier)
            if covers is None:
                raise AttestationError(
                    f"supplier verdict {index} ({verdict.supplier!r}) covers no attested part"
                )
            problems = verdict.binding_problems(
                job_id=attested.job_id,
                job_spec_sha256=attested.job_spec_sha256,
                dataset_sha256=covers,
            )
            if problems:
                raise AttestationError(f"supplier verdict {index}: " + "; ".join(problems))
            if verdict.verdict != "pass":
                raise AttestationError(
                    f"supplier {verdict.supplier!r}'s verdict is {verdict.verdict!r}"
                )
        if parts is not None and set(parts) != seen:
            raise AttestationError(
                f"dataset parts of {sorted(set(parts) - seen)} carry no supplier verdict"
            )


class _AttestedDataset(BaseModel):
    sha256: str
    parts: dict[str, str] | None = None


class _Attested(BaseModel):
    """The attestation fields the verdict checks read; the rest stay as signed."""

    job_id: str
    job_spec_sha256: str
    topology: str
    issued_at: datetime
    dataset: _AttestedDataset
    supplier_verdicts: list[dict[str, Any]] = []


def _holds(path: Path, sha256: str) -> bool:
    """Whether `path` is a file whose SHA-256 is `sha256`: a verified download a CSV
    conversion that did not finish left behind, still intact."""
    return path.is_file() and file_digest(path).sha256 == sha256


def _json_object(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    return value if isinstance(value, dict) else {"value": value}
