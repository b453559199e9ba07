"""Chunked, resumable, SHA-256-hashed bulk transfer of files over the wire contract.

Uploads: `BeginUpload` tells how many bytes the broker already holds, chunks follow from there;
after a dropped connection the sender asks again and resumes. Downloads: the receiver asks from
the length of its partial file; the first message carries the object's size and SHA-256. Memory
stays bounded by the chunk size on both sides.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from fedsynth.files import atomic_path, commit_file
from fedsynth.wire.bulk import ChunkFrame, DownloadFrame, UploadFrame
from fedsynth.wire.direct_file import DirectAppender
from fedsynth.wire.errors import describe_rpc_error
from fedsynth.wire.pipeline import PipelinedSink, ReadAhead
from fedsynth.wire.stubs import SupplierStub
from fedsynth.wire.v1 import common_pb2, supplier_pb2

DEFAULT_CHUNK_BYTES = 1024 * 1024
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.ABORTED})
DOWNLOAD_RETRYABLE = RETRYABLE | {grpc.StatusCode.DEADLINE_EXCEEDED}
"""A download whose deadline passes (a slow link, a paused client) resumes from the bytes
received, as after a dropped connection, rather than fail a pull that was making progress."""
FIRST_RETRY_PAUSE_S = 0.5
LONGEST_RETRY_PAUSE_S = 8.0
Progress = Callable[[int], None]


class TransferError(RuntimeError):
    """A transfer that cannot complete: hash mismatch, wrong size, or retries exhausted."""


class TransferIncomplete(TransferError):
    """The stream stopped before the end (retries exhausted, or it ended short): what arrived
    is sound and a later attempt may resume from it."""


@dataclass(frozen=True)
class ObjectDigest:
    """Size and hex SHA-256 of a whole object."""

    sha256: str
    size: int


def file_digest(path: str | Path, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> ObjectDigest:
    """SHA-256 and size of a file, read in chunks."""
    hasher, size = _hash_chunks(path, None, chunk_bytes)
    return ObjectDigest(hasher.hexdigest(), size)


def read_chunks(
    path: str | Path,
    offset: int = 0,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    end: int | None = None,
) -> Iterator[tuple[int, bytes]]:
    """Yield (offset, bytes) slices of a file from `offset`, up to `end` when given."""
    if end is not None and offset >= end:
        return
    with open(path, "rb") as fh:
        fh.seek(offset)
        while block := fh.read(chunk_bytes if end is None else min(chunk_bytes, end - offset)):
            yield offset, block
            offset += len(block)


def _hash_chunks(path: str | Path, end: int | None, chunk_bytes: int) -> tuple[hashlib._Hash, int]:
    """SHA-256 state and length of a file's first `end` bytes (all of it when None)."""
    hasher, size = hashlib.sha256(), 0
    for _, block in read_chunks(path, 0, chunk_bytes, end):
        hasher.update(block)
        size += len(block)
    return hasher, size


def upload_file(
    stub: SupplierStub,
    header: supplier_pb2.UploadHeader,
    path: str | Path,
    *,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    attempts: int = 5,
    on_progress: Progress | None = None,
    timeout: float | None = None,
) -> supplier_pb2.UploadStatus:
    """Upload `path` through a supplier stub, resuming after retryable failures.

    `header.size` is filled from the file when left empty. When `header.sha256` is empty too,
    the file is hashed while it streams and the hash declared on the final chunk, so the file
    is read once; raw and prepared rows are hashed first, as the broker encrypts them under
    their hash. `on_progress` gets the number of bytes the broker holds after each chunk sent.
    """
    if not header.size:
        header.size = Path(path).stat().st_size
    if not header.sha256 and header.kind in HASH_FIRST_KINDS:
        header.sha256 = file_digest(path, chunk_bytes).sha256
    last_error: grpc.RpcError | None = None
    for attempt in range(attempts):
        _pause_before(attempt)
        try:
            status = stub.BeginUpload(header, timeout=timeout)
            if on_progress:
                on_progress(status.received)
            if status.complete:
                _check_stored(header, status, path, chunk_bytes)
                return status
            with ReadAhead(_upload_messages(header, status, path, chunk_bytes)) as ahead:
                status = stub.Upload(_reporting(ahead, on_progress), timeout=timeout)
            if status.complete:
                return status
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE:
                raise
            last_error = exc
    raise TransferError(
        f"upload of {path} did not complete after {attempts} attempts: {_described(last_error)}"
    )


def _described(error: grpc.RpcError | None) -> str:
    """The last failed call of a transfer, in one line."""
    return "no call failed, yet none completed it" if error is None else describe_rpc_error(error)


def _pause_before(attempt: int) -> None:
    """Wait before retry `attempt` (none before the first), doubling up to a few seconds, so
    the attempts outlast a broker restart or a dropped connection instead of failing within
    milliseconds."""
    if attempt:
        time.sleep(min(FIRST_RETRY_PAUSE_S * 2 ** (attempt - 1), LONGEST_RETRY_PAUSE_S))


HASH_FIRST_KINDS = frozenset({supplier_pb2.UPLOAD_KIND_RAW, supplier_pb2.UPLOAD_KIND_PREPARED})


def _upload_messages(
    header: supplier_pb2.UploadHeader,
    status: supplier_pb2.UploadStatus,
    path: str | Path,
    chunk_bytes: int,
) -> Iterator[tuple[int, UploadFrame]]:
    """(end offset, chunk) from the broker's offset; without a declared hash, the last chunk
    carries it."""
    hasher = None if header.sha256 else _hash_chunks(path, status.received, chunk_bytes)[0]
    for at, block in read_chunks(path, status.received, chunk_bytes, header.size):
        end = at + len(block)
        sha256 = ""
        if hasher is not None:
            hasher.update(block)
            if end == header.size:
                sha256 = hasher.hexdigest()
        yield end, UploadFrame(status.upload_id, at, block, sha256)
        if end == header.size:
            return
    if hasher is not None and status.received == header.size:
        yield header.size, UploadFrame(status.upload_id, header.size, b"", hasher.hexdigest())


def _reporting(
    messages: Iterable[tuple[int, UploadFrame]], on_progress: Progress | None
) -> Iterator[UploadFrame]:
    """The chunks to send; `on_progress` learns each one's end offset once gRPC has taken it."""
    for end, message in messages:
        yield message
        if on_progress:
            on_progress(end)


def _check_stored(
    header: supplier_pb2.UploadHeader,
    status: supplier_pb2.UploadStatus,
    path: str | Path,
    chunk_bytes: int,
) -> None:
    """An upload completed earlier must hold this file's bytes, not another's of the same name."""
    expected = header.sha256 or file_digest(path, chunk_bytes).sha256
    if status.sha256 != expected:
        raise TransferError(
            f"the broker holds {header.name!r} with SHA-256 {status.sha256}, but {path} hashes "
            f"to {expected}: another object was uploaded under this name; rename the upload"
        )


OpenStream = Callable[[int], Iterable[DownloadFrame]]


def download_file(
    open_stream: OpenStream,
    destination: str | Path,
    *,
    expected_sha256: str | None = None,
    expected_size: int | None = None,
    max_size: int | None = None,
    attempts: int = 5,
    on_progress: Progress | None = None,
) -> ObjectDigest:
    """Stream an object into `destination`, resuming from the partial file after drops.

    `open_stream(offset)` starts a download at `offset`. The SHA-256 of the whole object must
    match the sender's and `expected_sha256` (when given, e.g. from a signed attestation) or
    nothing is written. The file appears atomically, complete, or not at all. An object the
    sender announces (or sends) larger than `max_size`, or of another size than
    `expected_size`, is refused before its first byte is written.

    With `expected_sha256`, the partial file is `resume_path(destination, expected_sha256)`
    and outlives an interrupted call (a dropped connection past the retries, Ctrl-C, a killed
    process): the next call for the same object and destination resumes from it, after hashing
    what it holds. A partial that proves inconsistent is deleted, and a resumed download
    whose whole hash does not match is fetched once more from the start before it is refused.
    """
    destination = Path(destination)
    if expected_sha256 is None:
        with atomic_path(destination) as partial:
            return _receive(open_stream, partial, attempts, on_progress, max_size, expected_size)
    partial = resume_path(destination, expected_sha256)
    partial.parent.mkdir(parents=True, exist_ok=True)
    if expected_size is not None and partial.exists() and partial.stat().st_size > expected_size:
        partial.unlink()
    resumed = partial.exists() and partial.stat().st_size > 0
    while True:
        try:
            digest = _receive(open_stream, partial, attempts, on_progress, max_size, expected_size)
            if digest.sha256 != expected_sha256:
                raise TransferError(
                    f"downloaded object has SHA-256 {digest.sha256}, expected {expected_sha256}: "
                    "the data was altered; nothing was written"
                )
            break
        except TransferIncomplete:
            raise
        except TransferError:
            partial.unlink(missing_ok=True)
            if not resumed:
                raise
            # The bytes kept from an earlier call may be what was damaged: fetch it all once.
            resumed = False
    commit_file(partial, destination)
    return digest


def resume_path(destination: str | Path, sha256: str) -> Path:
    """Where a download of the object `sha256` to `destination` keeps its received bytes."""
    destination = Path(destination)
    return destination.with_name(f".{destination.name}.{sha256[:16]}.part")


def _receive(
    open_stream: OpenStream,
    partial: Path,
    attempts: int,
    on_progress: Progress | None,
    max_size: int | None = None,
    expected_size: int | None = None,
) -> ObjectDigest:
    received = partial.stat().st_size if partial.exists() else 0
    hasher = (
        _hash_chunks(partial, received, DEFAULT_CHUNK_BYTES)[0] if received else hashlib.sha256()
    )
    info: common_pb2.ObjectInfo | None = None
    last_error: grpc.RpcError | None = None
    with DirectAppender(partial) as out, PipelinedSink(out.write, hasher) as sink:
        for attempt in range(attempts):
            _pause_before(attempt)
            try:
                for message in open_stream(received):
                    if isinstance(message, common_pb2.ObjectInfo):
                        if info is not None and message.sha256 != info.sha256:
                            raise TransferError("the object changed between resumed downloads")
                        if expected_size is not None and message.size != expected_size:
                            raise TransferError(
                                f"the sender announces {message.size} bytes, but {expected_size} "
                                "are expected"
                            )
                        if max_size is not None and message.size > max_size:
                            raise TransferError(
                                f"the sender announces {message.size} bytes; at most "
                                f"{max_size} are taken"
                            )
                        info = message
                        continue
                    if message.offset != received:
                        raise TransferError(f"chunk at {message.offset}, expected {received}")
                    if info is None or received + len(message.data) > info.size:
                        raise TransferError(
                            f"data runs past the {info.size if info else 0} bytes announced"
                        )
                    sink.put(message.data)
                    received += len(message.data)
                    if on_progress:
                        on_progress(received)
                break
            except grpc.RpcError as exc:
                if exc.code() not in DOWNLOAD_RETRYABLE:
                    raise
                last_error = exc
        else:
            raise TransferIncomplete(
                f"download did not complete after {attempts} attempts: {_described(last_error)}"
            )
    if info is None or received < info.size:
        raise TransferIncomplete(
            f"download ended at {received} bytes; the sender announced "
            f"{info.size if info else 'nothing'}"
        )
    if received != info.size:
        raise TransferError(
            f"download ended at {received} bytes; the sender announced "
            f"{info.size if info else 'nothing'}"
        )
    if hasher.hexdigest() != info.sha256:
        raise TransferError(
            f"downloaded bytes hash to {hasher.hexdigest()} but the sender announced "
            f"{info.sha256}: the data was altered or corrupted; nothing was written"
        )
    return ObjectDigest(info.sha256, received)


def stream_object(
    path: str | Path,
    digest: ObjectDigest,
    offset: int,
    *,
    media_type: str = "application/octet-stream",
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> Iterator[DownloadFrame]:
    """Sender side of a download: the object info, then chunks of `path` from `offset`."""
    if offset > digest.size:
        raise ValueError(f"offset {offset} is past the end of the object ({digest.size} bytes)")
    yield common_pb2.ObjectInfo(sha256=digest.sha256, size=digest.size, media_type=media_type)
    with ReadAhead(
        ChunkFrame(at, block) for at, block in read_chunks(path, offset, chunk_bytes)
    ) as ahead:
        yield from ahead
