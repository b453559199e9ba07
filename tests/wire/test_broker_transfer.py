"""Uploads and downloads through a real broker: chunked, hashed, resumable, bounded."""

from __future__ import annotations

import errno
import hashlib
import os
import resource
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broker.artifacts import ArtifactStore
from broker.state import BrokerState
from fedsynth.jobs import JobSpec
from fedsynth.security.atrest import load_key_file
from fedsynth.security.principals import Role
from fedsynth.wire.allocator import keep_large_buffers
from fedsynth.wire.bulk import ChunkFrame, DownloadFrame
from fedsynth.wire.channel import secure_channel
from fedsynth.wire.stubs import ConsumerStub, SupplierStub
from fedsynth.wire.transfer import (
    ObjectDigest,
    TransferError,
    TransferIncomplete,
    download_file,
    file_digest,
    resume_path,
    stream_object,
    upload_file,
)
from fedsynth.wire.v1 import (
    common_pb2,
    consumer_pb2,
    operator_pb2,
    operator_pb2_grpc,
    supplier_pb2,
)
from tests.wire.broker_harness import (
    SUPPLIERS,
    BrokerProcess,
    free_port,
    job_spec,
    released,
    submit_job,
)

TIMEOUT = 30
CHUNK = 64 * 1024


class DroppedConnection(grpc.RpcError):
    """What a client sees when the connection drops mid-call."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE


def queued_job(broker: BrokerProcess, topology: str) -> str:
    """A job of `topology` whose first step's tasks the broker has queued: an upload must be
    for one of the supplier's pending tasks, of the kind that task sends."""
    document = job_spec(f"transfer-{topology}").model_dump(mode="json", by_alias=True)
    spec = JobSpec.model_validate({**document, "topology": topology})
    stub = operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))
    job_id = stub.SubmitJob(
        operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json()), timeout=TIMEOUT
    ).job_id
    for name in SUPPLIERS:
        ref = supplier_pb2.TaskRef(supplier=name, task_id=task_of(job_id, name))
        while True:
            try:
                supplier_stub(broker, name).CheckTask(ref, timeout=TIMEOUT)
                break
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            time.sleep(0.02)
    return job_id


def task_of(job_id: str, supplier: str) -> str:
    """The task of `supplier` in the first step of job `job_id`."""
    return f"{job_id}.0.{supplier}"


@pytest.fixture
def job_id(broker: BrokerProcess) -> str:
    """A `local` job: its tasks upload synthetic rows, one file each (a test's own job)."""
    return queued_job(broker, "local")


@pytest.fixture
def raw_job_id(broker: BrokerProcess) -> str:
    """A `central` job: its tasks upload raw rows."""
    return queued_job(broker, "central")


@pytest.fixture
def prepared_job_id(broker: BrokerProcess) -> str:
    """A `prepared` job: its tasks upload prepared rows."""
    return queued_job(broker, "prepared")


def supplier_stub(broker: BrokerProcess, name: str = "hospital-a") -> SupplierStub:
    return SupplierStub(broker.channel(Role.SUPPLIER, name))


def random_file(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def header(
    job_id: str,
    path: Path,
    kind: int = supplier_pb2.UPLOAD_KIND_SYNTHETIC,
    supplier: str = "hospital-a",
) -> supplier_pb2.UploadHeader:
    digest = file_digest(path)
    return supplier_pb2.UploadHeader(
        supplier=supplier,
        job_id=job_id,
        task_id=task_of(job_id, supplier),
        name=path.name,
        kind=kind,
        size=digest.size,
        sha256=digest.sha256,
    )


def chunk_messages(
    upload_id: str, path: Path, first: int, last: int
) -> Iterator[supplier_pb2.UploadChunk]:
    data = path.read_bytes()
    for i in range(first, last):
        yield supplier_pb2.UploadChunk(
            upload_id=upload_id, offset=i * CHUNK, data=data[i * CHUNK : (i + 1) * CHUNK]
        )


def killed_after(
    messages: Iterator[supplier_pb2.UploadChunk],
) -> Iterator[supplier_pb2.UploadChunk]:
    yield from messages
    raise ConnectionError("client killed mid-stream")


def stored_plaintext(broker: BrokerProcess, sha: str) -> Iterator[bytes]:
    """Decrypt an encrypted artifact the way the broker does, with its at-rest key."""
    key = load_key_file(broker.state_dir / "at-rest.key")
    return ArtifactStore(broker.state_dir / "artifacts", key).read_encrypted(sha)


def artifact(broker: BrokerProcess, sha: str, suffix: str = "") -> Path:
    return broker.state_dir / "artifacts" / "sha256" / sha[:2] / (sha + suffix)


def test_upload_killed_mid_stream_resumes_to_an_identical_hash(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "synthetic.parquet", 10 * CHUNK + 123)
    stub = supplier_stub(broker)
    request = header(job_id, source)
    status = stub.BeginUpload(request, timeout=TIMEOUT)
    assert status.received == 0
    acknowledged = stub.Upload(chunk_messages(status.upload_id, source, 0, 4), timeout=TIMEOUT)
    assert (acknowledged.received, acknowledged.complete) == (4 * CHUNK, False)
    with pytest.raises(grpc.RpcError):
        stub.Upload(killed_after(chunk_messages(status.upload_id, source, 4, 8)), timeout=TIMEOUT)
    resumed = stub.BeginUpload(request, timeout=TIMEOUT)
    assert resumed.upload_id == status.upload_id
    assert 4 * CHUNK <= resumed.received <= 8 * CHUNK
    seen: list[int] = []
    final = upload_file(stub, request, source, chunk_bytes=CHUNK, on_progress=seen.append)
    assert final.complete and final.sha256 == request.sha256
    assert seen[0] == resumed.received
    stored = artifact(broker, request.sha256)
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == request.sha256


def test_raw_rows_are_encrypted_at_rest(
    broker: BrokerProcess, raw_job_id: str, tmp_path: Path
) -> None:
    source = tmp_path / "raw.csv"
    source.write_bytes(b"age,sex\n" + b"".join(b"%d,F\n" % i for i in range(20000)))
    request = header(raw_job_id, source, kind=supplier_pb2.UPLOAD_KIND_RAW)
    assert upload_file(supplier_stub(broker), request, source, chunk_bytes=CHUNK).complete
    stored = artifact(broker, request.sha256, ".enc")
    ciphertext = stored.read_bytes()
    assert b"age,sex" not in ciphertext and not artifact(broker, request.sha256).exists()
    assert b"".join(stored_plaintext(broker, request.sha256)) == source.read_bytes()


def test_tampered_chunk_is_rejected_and_nothing_is_stored(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "tampered.parquet", 3 * CHUNK)
    stub = supplier_stub(broker)
    request = header(job_id, source)
    status = stub.BeginUpload(request, timeout=TIMEOUT)
    data = bytearray(source.read_bytes())
    data[CHUNK + 7] ^= 0xFF
    messages = [
        supplier_pb2.UploadChunk(
            upload_id=status.upload_id, offset=o, data=bytes(data[o : o + CHUNK])
        )
        for o in range(0, len(data), CHUNK)
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(iter(messages), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    assert not artifact(broker, request.sha256).exists()
    assert stub.BeginUpload(request, timeout=TIMEOUT).received == 0


def test_oversized_message_is_refused(broker: BrokerProcess, job_id: str, tmp_path: Path) -> None:
    source = random_file(tmp_path / "big-chunk.parquet", 512 * 1024)
    stub = supplier_stub(broker)
    status = stub.BeginUpload(header(job_id, source), timeout=TIMEOUT)
    message = supplier_pb2.UploadChunk(
        upload_id=status.upload_id, offset=0, data=source.read_bytes()
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(iter([message]), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_upload_over_the_size_limit_is_refused_with_a_clear_status(
    broker: BrokerProcess, job_id: str
) -> None:
    request = supplier_pb2.UploadHeader(
        supplier="hospital-a",
        job_id=job_id,
        task_id="t",
        name="huge.parquet",
        kind=supplier_pb2.UPLOAD_KIND_SYNTHETIC,
        size=5 * 1024 * 1024,
        sha256="0" * 64,
    )
    with pytest.raises(grpc.RpcError) as info:
        supplier_stub(broker).BeginUpload(request, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_upload_bytes" in (info.value.details() or "")


def test_supplier_cannot_upload_in_another_suppliers_name(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "mine.parquet", CHUNK)
    with pytest.raises(grpc.RpcError) as info:
        supplier_stub(broker, "hospital-b").BeginUpload(
            header(job_id, source, supplier="hospital-a"), timeout=TIMEOUT
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_supplier_cannot_upload_to_a_job_it_takes_no_part_in(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    other_job = submit_job(broker, "only-a", suppliers=("hospital-a",))
    source = random_file(tmp_path / "intruding.parquet", CHUNK)
    with pytest.raises(grpc.RpcError) as info:
        supplier_stub(broker, "hospital-b").BeginUpload(
            header(other_job, source, supplier="hospital-b"), timeout=TIMEOUT
        )
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "takes no part" in (info.value.details() or "")


def test_supplier_cannot_write_into_another_suppliers_upload(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "victim.parquet", 2 * CHUNK)
    status = supplier_stub(broker, "hospital-a").BeginUpload(
        header(job_id, source), timeout=TIMEOUT
    )
    intruder = supplier_pb2.UploadChunk(upload_id=status.upload_id, offset=0, data=b"x" * 10)
    with pytest.raises(grpc.RpcError) as info:
        supplier_stub(broker, "hospital-b").Upload(iter([intruder]), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_download_resumes_after_a_dropped_connection(broker: BrokerProcess, tmp_path: Path) -> None:
    source = random_file(tmp_path / "object.bin", 5 * CHUNK + 11)
    digest = file_digest(source)
    offsets: list[int] = []

    def open_stream(offset: int) -> Iterator[DownloadFrame]:
        offsets.append(offset)
        for i, message in enumerate(stream_object(source, digest, offset, chunk_bytes=CHUNK)):
            if len(offsets) == 1 and i == 3:
                raise DroppedConnection()
            yield message

    target = tmp_path / "copy.bin"
    assert download_file(open_stream, target).sha256 == digest.sha256
    assert offsets == [0, 2 * CHUNK]
    assert target.read_bytes() == source.read_bytes()


def test_download_with_wrong_expected_hash_writes_nothing(tmp_path: Path) -> None:
    source = random_file(tmp_path / "object.bin", CHUNK)
    digest = file_digest(source)
    target = tmp_path / "out.bin"
    with pytest.raises(TransferError, match="altered"):
        download_file(lambda o: stream_object(source, digest, o), target, expected_sha256="a" * 64)
    assert not target.exists()


def test_a_failed_write_surfaces_from_the_download_and_leaves_no_file(tmp_path: Path) -> None:
    source = random_file(tmp_path / "object.bin", 12 * 1024 * 1024)
    digest = file_digest(source)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (8 * CHUNK, hard))
    try:
        with pytest.raises(OSError) as caught:
            download_file(
                lambda o: stream_object(source, digest, o, chunk_bytes=CHUNK), out_dir / "copy.bin"
            )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG
    assert list(out_dir.iterdir()) == []


def test_an_object_announced_larger_than_the_cap_is_refused_before_any_byte(
    tmp_path: Path,
) -> None:
    source = random_file(tmp_path / "big.bin", 4 * CHUNK)
    digest = file_digest(source)
    out = tmp_path / "out" / "copy.bin"
    with pytest.raises(TransferError, match=f"announces {4 * CHUNK} bytes; at most {CHUNK}"):
        download_file(
            lambda o: stream_object(source, digest, o, chunk_bytes=CHUNK),
            out,
            expected_sha256=digest.sha256,
            max_size=CHUNK,
        )
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_a_sender_streaming_past_its_announced_size_is_cut_off(tmp_path: Path) -> None:
    source = random_file(tmp_path / "liar.bin", 4 * CHUNK)
    understated = ObjectDigest(file_digest(source).sha256, CHUNK)
    sent: list[int] = []

    def stream(offset: int) -> Iterator[DownloadFrame]:
        for frame in stream_object(source, file_digest(source), offset, chunk_bytes=CHUNK):
            if isinstance(frame, ChunkFrame):
                sent.append(frame.offset)
                yield frame
            else:
                yield common_pb2.ObjectInfo(sha256=understated.sha256, size=understated.size)

    with pytest.raises(TransferError, match=f"runs past the {CHUNK} bytes announced"):
        download_file(stream, tmp_path / "copy.bin", max_size=2 * CHUNK)
    assert sent == [0, CHUNK]
    assert not (tmp_path / "copy.bin").exists()


def test_encrypted_upload_resumes_after_a_broker_restart(
    broker: BrokerProcess, prepared_job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "prepared.parquet", 6 * CHUNK + 5)
    stub = supplier_stub(broker)
    request = header(prepared_job_id, source, kind=supplier_pb2.UPLOAD_KIND_PREPARED)
    status = stub.BeginUpload(request, timeout=TIMEOUT)
    stub.Upload(chunk_messages(status.upload_id, source, 0, 3), timeout=TIMEOUT)
    broker.stop()
    broker.start()
    stub = supplier_stub(broker)
    assert stub.BeginUpload(request, timeout=TIMEOUT).received == 3 * CHUNK
    assert upload_file(stub, request, source, chunk_bytes=CHUNK).complete
    plain = b"".join(stored_plaintext(broker, request.sha256))
    assert hashlib.sha256(plain).hexdigest() == request.sha256


def test_an_upload_started_while_the_broker_restarts_waits_for_it_and_completes(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "during-restart.parquet", 3 * CHUNK)
    stub = supplier_stub(broker)
    broker.stop()
    restart = threading.Thread(target=broker.start)
    restart.start()
    try:
        status = upload_file(stub, header(job_id, source), source, chunk_bytes=CHUNK)
    finally:
        restart.join()
    assert status.complete
    assert hashlib.sha256(artifact(broker, status.sha256).read_bytes()).hexdigest() == (
        status.sha256
    )


def test_empty_upload_completes_at_begin_and_decrypts_to_nothing(
    broker: BrokerProcess, raw_job_id: str, tmp_path: Path
) -> None:
    source = tmp_path / "empty.csv"
    source.write_bytes(b"")
    request = header(raw_job_id, source, kind=supplier_pb2.UPLOAD_KIND_RAW)
    status = supplier_stub(broker).BeginUpload(request, timeout=TIMEOUT)
    assert status.complete and status.sha256 == hashlib.sha256(b"").hexdigest()
    assert b"".join(stored_plaintext(broker, request.sha256)) == b""


def undeclared(request: supplier_pb2.UploadHeader) -> supplier_pb2.UploadHeader:
    """The same header without the hash: the sender declares it on its final chunk."""
    copy = supplier_pb2.UploadHeader()
    copy.CopyFrom(request)
    copy.sha256 = ""
    return copy


def test_upload_without_a_declared_hash_reads_the_file_once_and_stores_it_verified(
    broker: BrokerProcess, job_id: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = random_file(tmp_path / "streamed.parquet", 7 * CHUNK + 5)
    expected = file_digest(source).sha256
    opened: list[str] = []
    real_open = open

    def counting_open(file: object, *args: object, **kwargs: object) -> object:
        if str(file) == str(source):
            opened.append(str(file))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    request = undeclared(header(job_id, source))
    monkeypatch.setattr("builtins.open", counting_open)
    final = upload_file(supplier_stub(broker), request, source, chunk_bytes=CHUNK)
    monkeypatch.undo()
    assert final.complete and final.sha256 == expected
    assert len(opened) == 1
    assert hashlib.sha256(artifact(broker, expected).read_bytes()).hexdigest() == expected


def test_upload_without_a_declared_hash_resumes_mid_stream_to_an_identical_hash(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "resumed-undeclared.parquet", 9 * CHUNK + 77)
    stub = supplier_stub(broker)
    request = undeclared(header(job_id, source))
    status = stub.BeginUpload(request, timeout=TIMEOUT)
    # A stream that ends early is acknowledged, so the kill below lands after known progress
    # (a kill right after sending may reach the broker before any chunk does).
    held = stub.Upload(chunk_messages(status.upload_id, source, 0, 3), timeout=TIMEOUT)
    assert (held.received, held.complete) == (3 * CHUNK, False)
    with pytest.raises(grpc.RpcError):
        stub.Upload(killed_after(chunk_messages(status.upload_id, source, 3, 5)), timeout=TIMEOUT)
    resumed = stub.BeginUpload(request, timeout=TIMEOUT)
    assert resumed.upload_id == status.upload_id and resumed.received >= 3 * CHUNK
    final = upload_file(stub, request, source, chunk_bytes=CHUNK)
    expected = file_digest(source).sha256
    assert final.complete and final.sha256 == expected
    assert hashlib.sha256(artifact(broker, expected).read_bytes()).hexdigest() == expected


def test_a_final_chunk_declaring_another_hash_is_rejected_and_nothing_is_stored(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "lying.parquet", 2 * CHUNK)
    stub = supplier_stub(broker)
    status = stub.BeginUpload(undeclared(header(job_id, source)), timeout=TIMEOUT)
    data = source.read_bytes()
    claimed = hashlib.sha256(b"some other object").hexdigest()
    messages = [
        supplier_pb2.UploadChunk(upload_id=status.upload_id, offset=0, data=data[:CHUNK]),
        supplier_pb2.UploadChunk(
            upload_id=status.upload_id, offset=CHUNK, data=data[CHUNK:], sha256=claimed
        ),
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(iter(messages), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.DATA_LOSS
    assert not artifact(broker, claimed).exists()
    assert not artifact(broker, file_digest(source).sha256).exists()


def test_all_bytes_without_any_declared_hash_are_held_until_one_is_declared(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "silent.parquet", 2 * CHUNK)
    stub = supplier_stub(broker)
    request = undeclared(header(job_id, source))
    status = stub.BeginUpload(request, timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as info:
        stub.Upload(chunk_messages(status.upload_id, source, 0, 2), timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no SHA-256 was declared" in info.value.details()
    final = upload_file(stub, request, source, chunk_bytes=CHUNK)
    assert final.complete and final.sha256 == file_digest(source).sha256


def test_raw_rows_without_a_declared_hash_are_refused(
    broker: BrokerProcess, raw_job_id: str, tmp_path: Path
) -> None:
    source = random_file(tmp_path / "raw-undeclared.csv", CHUNK)
    request = undeclared(header(raw_job_id, source, kind=supplier_pb2.UPLOAD_KIND_RAW))
    with pytest.raises(grpc.RpcError) as info:
        supplier_stub(broker).BeginUpload(request, timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "declare sha256" in info.value.details()
    assert upload_file(supplier_stub(broker), request, source, chunk_bytes=CHUNK).complete


def test_another_file_under_a_completed_uploads_name_is_refused_by_the_sender(
    broker: BrokerProcess, job_id: str, tmp_path: Path
) -> None:
    (tmp_path / "first").mkdir()
    first = random_file(tmp_path / "first" / "same.parquet", CHUNK)
    stub = supplier_stub(broker)
    assert upload_file(stub, undeclared(header(job_id, first)), first, chunk_bytes=CHUNK).complete
    (tmp_path / "second").mkdir()
    second = random_file(tmp_path / "second" / "same.parquet", CHUNK)
    with pytest.raises(TransferError, match="another object was uploaded under this name"):
        upload_file(stub, undeclared(header(job_id, second)), second, chunk_bytes=CHUNK)


def test_transfer_processes_keep_megabyte_buffers_in_the_heap() -> None:
    assert keep_large_buffers() is True


def test_a_download_whose_deadlines_keep_passing_stops_incomplete_in_one_line(
    broker: BrokerProcess, state: BrokerState, tmp_path: Path
) -> None:
    job = submit_job(broker, "deadlines")
    release = released(state, job, "deadlines", os.urandom(8 * 1024 * 1024))
    stub = ConsumerStub(broker.channel(Role.CONSUMER, "alice"))
    fresh: list[bool] = []

    def open_stream(offset: int) -> Iterator[DownloadFrame]:
        fresh.append(True)
        request = consumer_pb2.DownloadRequest(
            release_id=release.release_id, part=consumer_pb2.RELEASE_PART_DATASET, offset=offset
        )
        return stub.Download(request, timeout=0.5)

    def pause_at_each_first_chunk(done: int) -> None:
        if fresh:
            fresh.clear()
            time.sleep(1.0)

    sha256 = release.attestation["dataset"]["sha256"]
    out = tmp_path / "copy.bin"
    with pytest.raises(TransferIncomplete) as stopped:
        download_file(
            open_stream,
            out,
            expected_sha256=sha256,
            attempts=2,
            on_progress=pause_at_each_first_chunk,
        )
    assert str(stopped.value).startswith("download did not complete after 2 attempts: ")
    assert "did not answer in time" in str(stopped.value) and "\n" not in str(stopped.value)
    assert not out.exists() and resume_path(out, sha256).stat().st_size > 0


def test_an_upload_to_a_broker_nobody_answers_for_fails_in_one_line(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    nowhere = secure_channel(
        f"127.0.0.1:{free_port()}", **broker.identity(Role.SUPPLIER, "hospital-a")
    )
    source = random_file(tmp_path / "object.bin", CHUNK)
    with pytest.raises(TransferError) as failed:
        upload_file(SupplierStub(nowhere), header("job-x", source), source, attempts=2)
    assert "did not complete after 2 attempts: cannot reach the broker" in str(failed.value)
    assert "\n" not in str(failed.value)
