"""Receiving uploads: resumable from the last acknowledged byte, verified by SHA-256, bounded.

An upload is named by (supplier, job, task, name, size); its SHA-256 is declared in the header
or, when the sender hashes while it streams, on the final chunk. A partial upload lives in
`uploads/<id>.part` (encrypted segments for raw and prepared rows, whose hash must come first:
each segment is bound to it). Its hash state stays in memory between streams and is rebuilt
from disk after a restart. Only a complete object whose SHA-256 matches the declared one is
moved into the artifact store; on a mismatch the partial file is deleted and nothing is stored.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from broker.artifacts import ArtifactStore
from broker.auditlog import AuditLog
from broker.errors import Refusal
from broker.store import Store, UploadRow
from fedsynth.jobs import JobSpec, JobState
from fedsynth.security.atrest import SegmentWriter
from fedsynth.security.principals import Principal
from fedsynth.wire.direct_file import DirectAppender
from fedsynth.wire.pipeline import PipelinedSink
from fedsynth.wire.v1 import supplier_pb2

ENCRYPTED_KINDS = frozenset({supplier_pb2.UPLOAD_KIND_RAW, supplier_pb2.UPLOAD_KIND_PREPARED})
LOCK_WAIT_S = 30.0


@dataclass
class _Partial:
    """In-memory state of an upload between streams."""

    row: UploadRow
    received: int
    hasher: hashlib._Hash
    lock: threading.Lock = field(default_factory=threading.Lock)
    segments: int = 0


class UploadReceiver:
    """Begins, resumes and completes uploads for authenticated suppliers."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        audit: AuditLog,
        directory: Path,
        max_upload_bytes: int,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.audit = audit
        self.directory = directory
        self.max_upload_bytes = max_upload_bytes
        self._partials: dict[str, _Partial] = {}
        self._guard = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def begin(
        self, principal: Principal, header: supplier_pb2.UploadHeader
    ) -> supplier_pb2.UploadStatus:
        """Open or resume the upload `header` describes; reply with the bytes already held."""
        self._check_header(principal, header)
        upload_id = hashlib.sha256(
            "\0".join(
                [principal.name, header.job_id, header.task_id, header.name, str(header.size)]
            ).encode()
        ).hexdigest()[:32]
        row = self.store.upload(upload_id)
        if row is not None and row.state == "complete" and self._stored(row):
            return supplier_pb2.UploadStatus(
                upload_id=upload_id, received=row.size, complete=True, sha256=row.sha256
            )
        if row is not None and row.state == "receiving" and header.sha256:
            if not row.sha256:
                self.store.declare_upload_hash(upload_id, header.sha256)
                row = replace(row, sha256=header.sha256)
                with self._guard:
                    if upload_id in self._partials:
                        self._partials[upload_id].row = row
            elif row.sha256 != header.sha256:
                row = None  # the sender's object changed: its partial bytes are of another one
        if row is None or row.state != "receiving":
            row = UploadRow(
                upload_id=upload_id,
                supplier=principal.name,
                job_id=header.job_id,
                task_id=header.task_id,
                name=header.name,
                kind=supplier_pb2.UploadKind.Name(header.kind),
                size=header.size,
                sha256=header.sha256,
                encrypted=header.kind in ENCRYPTED_KINDS,
                state="receiving",
            )
            self.store.create_upload(row)
            self._part_path(upload_id).unlink(missing_ok=True)
            with self._guard:
                self._partials.pop(upload_id, None)
            self.audit.append(
                principal.uri,
                "upload.begin",
                upload_id,
                job_id=header.job_id,
                name=header.name,
                size=header.size,
                sha256=header.sha256,
            )
        partial = self._partial(row)
        if not partial.lock.acquire(timeout=LOCK_WAIT_S):
            raise Refusal(
                grpc.StatusCode.ABORTED, "the previous stream of this upload is still open"
            )
        try:
            if partial.received == row.size and partial.row.sha256:
                return self._seal_and_complete(principal, partial)
        finally:
            partial.lock.release()
        return supplier_pb2.UploadStatus(upload_id=upload_id, received=partial.received)

    def receive(
        self, principal: Principal, chunks: Iterator[supplier_pb2.UploadChunk]
    ) -> supplier_pb2.UploadStatus:
        """Append a stream of chunks; complete the upload when the last byte arrives."""
        first = next(chunks, None)
        if first is None:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "empty upload stream")
        row = self.store.upload(first.upload_id)
        if row is None or row.state != "receiving":
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"no open upload {first.upload_id!r}; call BeginUpload first",
            )
        if row.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"upload {row.upload_id} belongs to supplier {row.supplier!r}",
            )
        partial = self._partial(row)
        if not partial.lock.acquire(timeout=LOCK_WAIT_S):
            raise Refusal(grpc.StatusCode.ABORTED, "another stream is writing this upload")
        try:
            return self._append(principal, partial, first, chunks)
        except OSError:
            with self._guard:
                self._partials.pop(row.upload_id, None)
            raise
        finally:
            partial.lock.release()

    def _append(
        self,
        principal: Principal,
        partial: _Partial,
        first: supplier_pb2.UploadChunk,
        chunks: Iterator[supplier_pb2.UploadChunk],
    ) -> supplier_pb2.UploadStatus:
        row = partial.row
        with DirectAppender(self._part_path(row.upload_id)) as fh:
            writer = self._writer(partial, fh)
            sink = PipelinedSink(fh.write if writer is None else writer.write, partial.hasher)
            try:
                chunk: supplier_pb2.UploadChunk | None = first
                while chunk is not None:
                    self._write_chunk(partial, sink, chunk)
                    chunk = next(chunks, None)
            finally:
                try:
                    sink.close()
                finally:
                    fh.fsync()
        if partial.received < row.size:
            return supplier_pb2.UploadStatus(upload_id=row.upload_id, received=partial.received)
        if not partial.row.sha256:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"all {row.size} bytes of upload {row.upload_id} arrived but no SHA-256 was "
                "declared: send it on the final chunk (or in the header of a new BeginUpload)",
            )
        return self._seal_and_complete(principal, partial)

    def _seal_and_complete(
        self, principal: Principal, partial: _Partial
    ) -> supplier_pb2.UploadStatus:
        """All bytes are in: seal an encrypted file, check the hash, adopt or reject."""
        path = self._part_path(partial.row.upload_id)
        if partial.row.encrypted:
            with open(path, "ab") as fh:
                self.artifacts.encrypted_writer(partial.row.sha256, fh, partial.segments).close()
                fh.flush()
                os.fsync(fh.fileno())
        return self._complete(principal, partial, path)

    def _writer(self, partial: _Partial, fh: DirectAppender) -> SegmentWriter | None:
        if not partial.row.encrypted:
            return None
        return self.artifacts.encrypted_writer(partial.row.sha256, fh, partial.segments)

    def _write_chunk(
        self, partial: _Partial, sink: PipelinedSink, chunk: supplier_pb2.UploadChunk
    ) -> None:
        if chunk.upload_id != partial.row.upload_id:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "one stream carries one upload id")
        if chunk.offset != partial.received:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"chunk at offset {chunk.offset}; the broker holds {partial.received} "
                "bytes, resume from there",
            )
        if chunk.sha256:
            self._declare(partial, chunk.sha256)
        data = chunk.data  # each access to a bytes field copies it; take it once
        if not data:
            return
        if partial.received + len(data) > partial.row.size:
            raise Refusal(
                grpc.StatusCode.OUT_OF_RANGE,
                f"data runs past the declared size of {partial.row.size} bytes",
            )
        sink.put(data)
        if partial.row.encrypted:
            partial.segments += 1
        partial.received += len(data)

    def _declare(self, partial: _Partial, sha256: str) -> None:
        """Take the hash declared on a chunk; it may not contradict one declared before."""
        if partial.row.sha256 == sha256:
            return
        if partial.row.sha256:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"upload {partial.row.upload_id} was declared with SHA-256 {partial.row.sha256};"
                f" a chunk declares {sha256}",
            )
        _check_sha256(sha256)
        self.store.declare_upload_hash(partial.row.upload_id, sha256)
        partial.row = replace(partial.row, sha256=sha256)

    def _complete(
        self, principal: Principal, partial: _Partial, path: Path
    ) -> supplier_pb2.UploadStatus:
        row = partial.row
        actual = partial.hasher.hexdigest()
        with self._guard:
            self._partials.pop(row.upload_id, None)
        if actual != row.sha256:
            path.unlink(missing_ok=True)
            self.store.set_upload_state(row.upload_id, "rejected")
            self.audit.append(
                principal.uri,
                "upload.rejected",
                row.upload_id,
                reason="sha256 mismatch",
                declared=row.sha256,
                actual=actual,
            )
            raise Refusal(
                grpc.StatusCode.DATA_LOSS,
                f"upload {row.upload_id}: received bytes hash to {actual}, declared "
                f"{row.sha256}; nothing was stored, upload again from offset 0",
            )
        self.artifacts.adopt(path, row.sha256, encrypted=row.encrypted)
        self.store.set_upload_state(row.upload_id, "complete")
        self.audit.append(
            principal.uri,
            "upload.complete",
            row.upload_id,
            job_id=row.job_id,
            name=row.name,
            size=row.size,
            sha256=row.sha256,
            encrypted=row.encrypted,
        )
        return supplier_pb2.UploadStatus(
            upload_id=row.upload_id, received=row.size, complete=True, sha256=row.sha256
        )

    def _partial(self, row: UploadRow) -> _Partial:
        with self._guard:
            partial = self._partials.get(row.upload_id)
            if partial is None:
                partial = self._rebuild(row)
                self._partials[row.upload_id] = partial
            return partial

    def _rebuild(self, row: UploadRow) -> _Partial:
        """Hash state of a partial file left by an earlier process (or none)."""
        path = self._part_path(row.upload_id)
        partial = _Partial(row, 0, hashlib.sha256())
        if not path.exists():
            return partial
        with open(path, "rb+") as fh:
            if row.encrypted:
                end, partial.segments, partial.received = self.artifacts.resume_encrypted(
                    row.sha256, fh, partial.hasher
                )
                fh.truncate(end)
            else:
                while block := fh.read(1024 * 1024):
                    partial.hasher.update(block)
                    partial.received += len(block)
        return partial

    def _stored(self, row: UploadRow) -> bool:
        return self.artifacts.has(row.sha256, encrypted=row.encrypted)

    def _part_path(self, upload_id: str) -> Path:
        return self.directory / f"{upload_id}.part"

    def _check_header(self, principal: Principal, header: supplier_pb2.UploadHeader) -> None:
        if header.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"supplier {principal.name!r} cannot upload as {header.supplier!r}",
            )
        if header.size > self.max_upload_bytes:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"upload of {header.size} bytes exceeds the broker limit of "
                f"{self.max_upload_bytes} bytes (limits.max_upload_bytes)",
            )
        if header.sha256:
            _check_sha256(header.sha256)
        elif header.kind in ENCRYPTED_KINDS:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                "raw and prepared rows are encrypted at rest under their SHA-256 as they arrive: "
                "declare sha256 in the upload header",
            )
        if not header.name or header.kind == supplier_pb2.UPLOAD_KIND_UNSPECIFIED:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "an upload needs a name and a kind")
        try:
            job = self.store.job(header.job_id)
        except KeyError as exc:
            raise Refusal(grpc.StatusCode.NOT_FOUND, f"no job {header.job_id!r}") from exc
        if JobState(job.state).finished:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"job {job.job_id} is {job.state}; it takes no more uploads",
            )
        participants = {s.supplier for s in JobSpec.from_json(job.spec_json).suppliers}
        if principal.name not in participants:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"supplier {principal.name!r} takes no part in job {job.job_id}",
            )

    def purge_job(self, job_id: str, actor: str) -> int:
        """Delete the encrypted raw and prepared rows of a finished job; return how many.

        Objects are stored by content, so the same rows uploaded for another job that is still
        running are one file: it is deleted when the last job holding it ends.
        """
        purged = 0
        for row in self.store.uploads_of_job(job_id):
            if row.encrypted and row.state in {"complete", "receiving"}:
                self._part_path(row.upload_id).unlink(missing_ok=True)
                self.store.set_upload_state(row.upload_id, "purged")
                if not self.store.encrypted_holders(row.sha256):
                    self.artifacts.delete(row.sha256, encrypted=True)
                purged += 1
        if purged:
            self.audit.append(actor, "rows.purged", job_id, uploads=purged)
        return purged


def _check_sha256(value: str) -> None:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "sha256 must be 64 lowercase hex digits")
