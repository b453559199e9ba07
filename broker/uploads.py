"""Receiving uploads: resumable from the last acknowledged byte, verified by SHA-256, bounded.

An upload is named by (supplier, job, task, name, size). It belongs to one of the supplier's
pending tasks, whose kind decides what it may send (`TASK_UPLOADS`): rows only as raw or prepared
rows, which are encrypted at rest and purged with their job. Its SHA-256 is declared in the header
or, when the sender hashes while it streams, on the final chunk. A partial upload lives in
`uploads/<id>.part` (encrypted segments for raw and prepared rows, whose hash must come first:
each segment is bound to it). Its hash state stays in memory between streams and is rebuilt
from disk after a restart. Only a complete object whose SHA-256 matches the declared one is
moved into the artifact store; on a mismatch the partial file is deleted and nothing is stored.

One lock per upload guards its partial file and hash state: a stream holds it from its first
chunk to its completion and `begin` holds it to reset a partial, so the file adopted is the one
whose bytes were hashed. Creating an upload, completing one and the purge at the end of its job
take one more lock, so no upload of an ended job is left behind or stored.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import grpc

from broker.artifacts import ArtifactStore
from broker.auditlog import AuditLog
from broker.config import LimitsConfig
from broker.errors import Refusal
from broker.store import Store, TaskRow, UploadRow
from fedsynth.jobs import JobSpec, JobState
from fedsynth.plans import TaskKind
from fedsynth.security.atrest import SegmentWriter
from fedsynth.security.principals import Principal
from fedsynth.wire.direct_file import DirectAppender
from fedsynth.wire.pipeline import PipelinedSink
from fedsynth.wire.v1 import supplier_pb2

ENCRYPTED_KINDS = frozenset({supplier_pb2.UPLOAD_KIND_RAW, supplier_pb2.UPLOAD_KIND_PREPARED})
_STATISTICS = frozenset({supplier_pb2.UPLOAD_KIND_STATISTICS})
TASK_UPLOADS: dict[str, frozenset[int]] = {
    TaskKind.MARGINAL_STATS: _STATISTICS,
    TaskKind.DEPENDENCE_STATS: _STATISTICS,
    TaskKind.AUDIT_CANDIDATE: _STATISTICS,
    TaskKind.SECAGG_ANNOUNCE: _STATISTICS,
    TaskKind.DP_MEASURE: _STATISTICS,
    TaskKind.SYNTHESIZE_LOCALLY: frozenset({supplier_pb2.UPLOAD_KIND_SYNTHETIC}),
    TaskKind.UPLOAD_PREPARED: frozenset({supplier_pb2.UPLOAD_KIND_PREPARED}),
    TaskKind.UPLOAD_RAW: frozenset({supplier_pb2.UPLOAD_KIND_RAW}),
}
"""Upload kinds a task of each kind may send: what the agent's handler for it produces (its
`EGRESS` class). Rows leave a site only as RAW or PREPARED, so they are always encrypted."""
LOCK_WAIT_S = 30.0
MAX_NAME_CHARS = 256


@dataclass
class _Partial:
    """In-memory state of an upload between streams; used only under its upload's lock."""

    row: UploadRow
    received: int
    hasher: hashlib._Hash
    segments: int = 0


@dataclass
class _Slot:
    """The lock of one upload, and how many calls hold or wait for it (dropped at none)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class UploadReceiver:
    """Begins, resumes and completes uploads for authenticated suppliers."""

    def __init__(
        self,
        store: Store,
        artifacts: ArtifactStore,
        audit: AuditLog,
        directory: Path,
        limits: LimitsConfig,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.audit = audit
        self.directory = directory
        self.limits = limits
        self._partials: dict[str, _Partial] = {}
        self._slots: dict[str, _Slot] = {}
        self._guard = threading.Lock()
        self._settle = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def begin(
        self, principal: Principal, header: supplier_pb2.UploadHeader
    ) -> supplier_pb2.UploadStatus:
        """Open or resume the upload `header` describes; reply with the bytes already held.

        Resuming waits (up to LOCK_WAIT_S) for a stream of the upload that is still open, as
        one behind a dropped connection can be; a header for another object (hash or kind), which
        would discard the partial bytes, is refused at once while a stream of them is open.
        """
        self._check_header(principal, header)
        upload_id = hashlib.sha256(
            "\0".join(
                [principal.name, header.job_id, header.task_id, header.name, str(header.size)]
            ).encode()
        ).hexdigest()[:32]
        replacing = _replaces(self.store.upload(upload_id), header)
        busy = (
            f"a stream of upload {upload_id} is still open; it must end before the upload can "
            "begin again with another object"
            if replacing
            else "the previous stream of this upload is still open"
        )
        with self._locked(upload_id, wait=not replacing, busy=busy):
            row = self.store.upload(upload_id)
            if row is not None and row.state == "complete" and self._stored(row):
                return supplier_pb2.UploadStatus(
                    upload_id=upload_id, received=row.size, complete=True, sha256=row.sha256
                )
            if _replaces(row, header):
                row = None  # the sender's object changed: its partial bytes are of another one
            elif row is not None and row.state == "receiving" and header.sha256 and not row.sha256:
                self.store.declare_upload_hash(upload_id, header.sha256)
                row = replace(row, sha256=header.sha256)
                with self._guard:
                    if upload_id in self._partials:
                        self._partials[upload_id].row = row
            if row is None or row.state != "receiving":
                row = self._create(principal, header, upload_id)
            partial = self._partial(row)
            if partial.received == row.size and partial.row.sha256:
                return self._seal_and_complete(principal, partial)
            return supplier_pb2.UploadStatus(upload_id=upload_id, received=partial.received)

    def receive(
        self, principal: Principal, chunks: Iterator[supplier_pb2.UploadChunk]
    ) -> supplier_pb2.UploadStatus:
        """Append a stream of chunks; complete the upload when the last byte arrives."""
        first = next(chunks, None)
        if first is None:
            raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "empty upload stream")
        upload_id = self._receiving(principal, first.upload_id).upload_id
        with self._locked(upload_id, wait=True, busy="another stream is writing this upload"):
            partial = self._partial(self._receiving(principal, upload_id))
            try:
                return self._append(principal, partial, first, chunks)
            except OSError:
                self._forget(upload_id)
                raise

    def _receiving(self, principal: Principal, upload_id: str) -> UploadRow:
        """The caller's upload `upload_id`, refused unless it is still receiving bytes."""
        row = self.store.upload(upload_id)
        if row is None or row.state != "receiving":
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"no open upload {upload_id!r}; call BeginUpload first",
            )
        if row.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"upload {row.upload_id} belongs to supplier {row.supplier!r}",
            )
        return row

    @contextmanager
    def _locked(self, upload_id: str, *, wait: bool, busy: str) -> Iterator[None]:
        """Hold upload `upload_id`'s lock, waiting up to LOCK_WAIT_S for it or (`wait` false)
        not at all: ABORTED with `busy` while another call holds it.

        The last call to leave deletes the partial bytes if the end of the upload's job purged
        it meanwhile: `purge_job` leaves them to the calls it finds here (`_drop_if_idle`)."""
        with self._guard:
            slot = self._slots.setdefault(upload_id, _Slot())
            slot.users += 1
        try:
            if not slot.lock.acquire(timeout=LOCK_WAIT_S if wait else 0):
                raise Refusal(grpc.StatusCode.ABORTED, busy)
            try:
                yield
            finally:
                slot.lock.release()
        finally:
            with self._guard:
                slot.users -= 1
                last = not slot.users
                if last:
                    del self._slots[upload_id]
            if last:
                self._drop_if_purged(upload_id)

    def _drop_if_purged(self, upload_id: str) -> None:
        """Delete the partial bytes and state of an upload its job's end has purged."""
        row = self.store.upload(upload_id)
        if row is not None and row.state == "purged":
            self._forget(upload_id)
            self._part_path(upload_id).unlink(missing_ok=True)

    def _create(
        self, principal: Principal, header: supplier_pb2.UploadHeader, upload_id: str
    ) -> UploadRow:
        """Record a new upload under `upload_id`, dropping partial bytes of an earlier object.

        The task is checked again and the supplier's limits counted under the settle lock, so
        an upload cannot be created for a task its job's end has just closed, nor past a limit.
        """
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
        with self._settle:
            self._open_task(principal, header)
            self._check_one_per_task(header)
            self._check_room(principal.name, header.size, upload_id)
            self._forget(upload_id)
            self._part_path(upload_id).unlink(missing_ok=True)
            self.store.create_upload(row)
        self.audit.append(
            principal.uri,
            "upload.begin",
            upload_id,
            job_id=header.job_id,
            task_id=header.task_id,
            name=header.name,
            kind=row.kind,
            size=header.size,
            sha256=header.sha256,
        )
        return row

    def _check_one_per_task(self, header: supplier_pb2.UploadHeader) -> None:
        """A task sends one file: an upload under another name for the same task is refused, so
        a supplier cannot pile finished objects on the broker's disk through one open task."""
        taken = [n for n in self.store.task_upload_names(header.task_id) if n != header.name]
        if taken:
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"task {header.task_id} already has its upload {taken[0]!r}; a task sends one "
                "file (resume it under that name)",
            )

    def _check_room(self, supplier: str, size: int, upload_id: str) -> None:
        """Refuse an upload past the supplier's limits on unfinished uploads (count, bytes)."""
        count, held = self.store.open_uploads(supplier, excluding=upload_id)
        if count >= self.limits.max_open_uploads:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"supplier {supplier!r} has {count} unfinished uploads, the broker limit "
                "(limits.max_open_uploads): complete one, or wait for its job to end",
            )
        if held + size > self.limits.max_open_upload_bytes:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"supplier {supplier!r} has {held} bytes in unfinished uploads; {size} more "
                f"would pass the broker limit of {self.limits.max_open_upload_bytes} bytes "
                "(limits.max_open_upload_bytes): complete one, or wait for its job to end",
            )

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
        elif partial.row.size == 0:
            path.touch()  # an empty object had no chunk to create its file
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
        """Adopt the file this call holds the lock of, once its hash is the declared one."""
        row = partial.row
        actual = partial.hasher.hexdigest()
        if actual != row.sha256:
            self._forget(row.upload_id)
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
        with self._settle:
            current = self.store.upload(row.upload_id)
            if current is None or current.state != "receiving":
                raise Refusal(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"upload {row.upload_id}: job {row.job_id} ended while it was sent; "
                    "nothing was stored",
                )
            self.artifacts.adopt(path, row.sha256, encrypted=row.encrypted)
            self.store.set_upload_state(row.upload_id, "complete")
        self._forget(row.upload_id)
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
        """The hash state of `row` (its lock held), rebuilt from its partial file if need be."""
        with self._guard:
            partial = self._partials.get(row.upload_id)
        if partial is None:
            partial = self._rebuild(row)
            with self._guard:
                self._partials[row.upload_id] = partial
        return partial

    def _forget(self, upload_id: str) -> None:
        """Drop the in-memory state of an upload; the next stream rebuilds it from disk."""
        with self._guard:
            self._partials.pop(upload_id, None)

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
        """Refuse a header that is malformed, over a limit, or not for one of the caller's
        pending tasks in a running job, of a kind that task sends."""
        if header.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"supplier {principal.name!r} cannot upload as {header.supplier!r}",
            )
        if header.size > self.limits.max_upload_bytes:
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"upload of {header.size} bytes exceeds the broker limit of "
                f"{self.limits.max_upload_bytes} bytes (limits.max_upload_bytes)",
            )
        if (
            header.kind == supplier_pb2.UPLOAD_KIND_STATISTICS
            and header.size > self.limits.max_statistics_bytes
        ):
            raise Refusal(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"statistics upload of {header.size} bytes exceeds the broker limit of "
                f"{self.limits.max_statistics_bytes} bytes (limits.max_statistics_bytes)",
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
        _check_name(header.name)
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
        task = self._open_task(principal, header)
        allowed = TASK_UPLOADS.get(task.kind, frozenset())
        if header.kind not in allowed:
            expected = " or ".join(sorted(map(supplier_pb2.UploadKind.Name, allowed))) or "nothing"
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"{task.kind} tasks upload {expected}, not {_kind_name(header.kind)}; rows "
                "go up only as UPLOAD_KIND_RAW or UPLOAD_KIND_PREPARED, encrypted at rest",
            )

    def _open_task(self, principal: Principal, header: supplier_pb2.UploadHeader) -> TaskRow:
        """The caller's pending task that the upload names, or a refusal that says why not."""
        try:
            task = self.store.task(header.task_id)
        except KeyError as exc:
            raise Refusal(
                grpc.StatusCode.NOT_FOUND,
                f"no task {header.task_id!r}: an upload names the task the broker sent it for",
            ) from exc
        if task.supplier != principal.name:
            raise Refusal(
                grpc.StatusCode.PERMISSION_DENIED,
                f"task {task.task_id} is not assigned to {principal.name!r}",
            )
        if task.job_id != header.job_id:
            raise Refusal(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"task {task.task_id} belongs to job {task.job_id}, not {header.job_id}",
            )
        if task.state != "pending":
            raise Refusal(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"task {task.task_id} is {task.state}; it takes no more uploads",
            )
        return task

    def purge_job(self, job_id: str, actor: str) -> int:
        """Delete what a finished job's uploads leave: its encrypted raw and prepared rows and
        the partial bytes of every unfinished upload, of any kind. Returns how many uploads.

        Objects are stored by content, so the same rows uploaded for another job that is still
        running are one file: it is deleted when the last job holding it ends. An upload with a
        stream still open is marked purged now; the stream deletes its bytes when it ends.
        """
        rows = partials = 0
        with self._settle:
            for row in self.store.uploads_of_job(job_id):
                live = row.state == "receiving" or (row.encrypted and row.state == "complete")
                if not live:
                    continue
                self.store.set_upload_state(row.upload_id, "purged")
                if row.state == "receiving":
                    self._drop_if_idle(row.upload_id)
                if not row.encrypted:
                    partials += 1
                    continue
                if not self.store.encrypted_holders(row.sha256):
                    self.artifacts.delete(row.sha256, encrypted=True)
                rows += 1
        if rows:
            self.audit.append(actor, "rows.purged", job_id, uploads=rows)
        if partials:
            self.audit.append(actor, "uploads.discarded", job_id, uploads=partials)
        return rows + partials

    def _drop_if_idle(self, upload_id: str) -> None:
        """Delete an upload's partial bytes unless a call holds its lock (which then does)."""
        with self._guard:
            if upload_id in self._slots:
                return
            self._partials.pop(upload_id, None)
            self._part_path(upload_id).unlink(missing_ok=True)


def _replaces(row: UploadRow | None, header: supplier_pb2.UploadHeader) -> bool:
    """Whether `header` is of another object than the unfinished upload `row` holds bytes of."""
    if row is None or row.state != "receiving":
        return False
    other_hash = bool(header.sha256) and bool(row.sha256) and header.sha256 != row.sha256
    return other_hash or row.kind != _kind_name(header.kind)


def _kind_name(kind: int) -> str:
    """The enum name of an upload kind; a number the protocol does not define, as such."""
    try:
        return supplier_pb2.UploadKind.Name(kind)
    except ValueError:
        return str(kind)


def _check_name(name: str) -> None:
    """Upload names are labels, never paths: bounded, printable, with no '..' or root."""
    if (
        len(name) > MAX_NAME_CHARS
        or not name.isprintable()
        or name.startswith("/")
        or "\\" in name
        or ".." in name.split("/")
    ):
        raise Refusal(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"upload name {name[:80]!r} is not allowed: at most {MAX_NAME_CHARS} printable "
            "characters, '/'-separated, not absolute, with no '..' part and no backslash",
        )


def _check_sha256(value: str) -> None:
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise Refusal(grpc.StatusCode.INVALID_ARGUMENT, "sha256 must be 64 lowercase hex digits")
