"""Python API for data consumers: `Client(...).pull(release_id) -> pandas.DataFrame`.

Nothing is written or returned before the release checks out: the attestation's signature must
chain to the federation CA through a broker certificate, every supplier verdict inside it must
verify, the audit report must match its hash, and the downloaded bytes must match the attested
SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedsynth.files import atomic_path, check_outputs
from fedsynth.security.attestation import AttestationError, SignedDocument, verify_document
from fedsynth.security.certificates import load_cert
from fedsynth.security.principals import Role, federation_of_ca
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.stubs import ConsumerStub
from fedsynth.wire.transfer import TransferError, TransferIncomplete, download_file
from fedsynth.wire.v1 import common_pb2, consumer_pb2

if TYPE_CHECKING:
    import pandas as pd

Progress = Callable[[int, int], None]


class ReleaseVerificationError(RuntimeError):
    """The release failed a check; nothing was written. The message names the check."""


@dataclass(frozen=True)
class VerifiedManifest:
    """A release whose attestation verified: summary fields and the attested document."""

    summary: common_pb2.ReleaseSummary
    attestation: dict[str, Any]
    audit_report: dict[str, Any]


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
        """Every release the broker serves."""
        reply = self._stub.ListReleases(common_pb2.ListReleasesRequest(), timeout=self.timeout)
        return list(reply.releases)

    def show(self, release_id: str) -> VerifiedManifest:
        """The release's verified manifest (raises ReleaseVerificationError if it does not)."""
        manifest = self._stub.GetRelease(
            common_pb2.ReleaseRef(release_id=release_id), timeout=self.timeout
        )
        return self._verify(release_id, manifest)

    def pull_to(
        self, release_id: str, out: str | Path, *, on_progress: Progress | None = None
    ) -> VerifiedManifest:
        """Download, verify and write the dataset to `out` (.parquet as served, or .csv).

        An interrupted pull leaves its received bytes beside `out` (a hidden `.part` file);
        pulling the same release to the same file again resumes from them.
        """
        out = Path(out)
        if out.suffix.lower() not in {".parquet", ".csv"}:
            raise ValueError(f"{out}: the output must end in .parquet or .csv")
        check_outputs({"--out": out})
        verified = self.show(release_id)
        if out.suffix.lower() == ".parquet":
            self._download(release_id, verified, out, on_progress)
            return verified
        import pyarrow.parquet as pq

        served = out.with_name(f".{out.name}.parquet")
        self._download(release_id, verified, served, on_progress)
        try:
            frame = pq.read_table(served).to_pandas()
            with atomic_path(out) as tmp:
                frame.to_csv(tmp, index=False)
        finally:
            served.unlink(missing_ok=True)
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

    def _download(
        self,
        release_id: str,
        verified: VerifiedManifest,
        destination: Path,
        on_progress: Progress | None,
    ) -> Path:
        dataset = verified.attestation["dataset"]
        total = int(dataset["size"])

        def open_stream(offset: int) -> Any:
            request = consumer_pb2.DownloadRequest(
                release_id=release_id, part=consumer_pb2.RELEASE_PART_DATASET, offset=offset
            )
            return self._stub.Download(request, timeout=self.timeout + total / 10e6)

        try:
            download_file(
                open_stream,
                destination,
                expected_sha256=dataset["sha256"],
                expected_size=total,
                on_progress=(lambda done: on_progress(done, total)) if on_progress else None,
            )
        except TransferIncomplete:
            raise
        except TransferError as exc:
            raise ReleaseVerificationError(f"release {release_id}: dataset refused: {exc}") from exc
        return destination

    def _verify(self, release_id: str, manifest: common_pb2.ReleaseManifest) -> VerifiedManifest:
        signed = SignedDocument(
            manifest.attestation_json, manifest.signature, manifest.broker_certificate_pem
        )
        try:
            _, attestation = verify_document(
                signed, self.ca_cert, self.federation, role=Role.BROKER
            )
            for verdict in attestation.get("supplier_verdicts", []):
                _, document = verify_document(
                    SignedDocument.from_json(verdict),
                    self.ca_cert,
                    self.federation,
                    role=Role.SUPPLIER,
                )
                if document.get("verdict") != "pass":
                    raise AttestationError(f"a supplier verdict is {document.get('verdict')!r}")
        except AttestationError as exc:
            raise ReleaseVerificationError(
                f"release {release_id}: attestation refused: {exc}"
            ) from exc
        problems = []
        if attestation.get("release_id") != release_id:
            problems.append(f"attestation is for {attestation.get('release_id')!r}")
        if attestation.get("dataset", {}).get("sha256") != manifest.summary.dataset_sha256:
            problems.append("listed dataset hash differs from the attested one")
        report_sha = hashlib.sha256(manifest.audit_report_json).hexdigest()
        if attestation.get("audit_report", {}).get("sha256") != report_sha:
            problems.append("audit report does not match the attested hash")
        if attestation.get("audit_report", {}).get("verdict") != "pass":
            problems.append("attested audit verdict is not 'pass'")
        if problems:
            raise ReleaseVerificationError(f"release {release_id}: " + "; ".join(problems))
        return VerifiedManifest(
            manifest.summary, attestation, _json_object(manifest.audit_report_json)
        )


def _json_object(data: bytes) -> dict[str, Any]:
    value = json.loads(data)
    return value if isinstance(value, dict) else {"value": value}
