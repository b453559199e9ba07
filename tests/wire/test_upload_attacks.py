"""A supplier's attacks on its upload and result path, tried against a real broker with real
certificates: each is refused with the right gRPC status and leaves nothing behind."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from broker.artifacts import ArtifactStore
from fedsynth.jobs import JobSpec
from fedsynth.security.principals import Role
from fedsynth.wire.v1 import operator_pb2, operator_pb2_grpc, supplier_pb2, supplier_pb2_grpc
from tests.wire.broker_harness import BrokerProcess, job_spec, running_broker

TIMEOUT = 20
CHUNK = 64 * 1024
POLL_S = 0.02
MAX_OPEN_UPLOADS = 3
MAX_OPEN_UPLOAD_BYTES = 2 * 1024 * 1024
STATISTICS_LIMIT = 4096


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    with running_broker(
        tmp_path_factory.mktemp("broker"),
        max_open_uploads=MAX_OPEN_UPLOADS,
        max_open_upload_bytes=MAX_OPEN_UPLOAD_BYTES,
        max_statistics_bytes=STATISTICS_LIMIT,
    ) as process:
        yield process


def supplier(
    broker: BrokerProcess, name: str = "hospital-a"
) -> supplier_pb2_grpc.SupplierServiceStub:
    return supplier_pb2_grpc.SupplierServiceStub(broker.channel(Role.SUPPLIER, name))


def operator(broker: BrokerProcess) -> operator_pb2_grpc.OperatorServiceStub:
    return operator_pb2_grpc.OperatorServiceStub(broker.channel(Role.OPERATOR, "ops"))


def submit(broker: BrokerProcess, topology: str, name: str = "attack") -> str:
    document = job_spec(f"{name}-{topology}").model_dump(mode="json", by_alias=True)
    spec = JobSpec.model_validate({**document, "topology": topology})
    reply = operator(broker).SubmitJob(
        operator_pb2.SubmitJobRequest(spec_json=spec.canonical_json()), timeout=TIMEOUT
    )
    return reply.job_id


def first_task(broker: BrokerProcess, job_id: str, name: str = "hospital-a") -> str:
    """The id of `name`'s task in the job's first step, once the broker has queued it."""
    task_id = f"{job_id}.0.{name}"
    ref = supplier_pb2.TaskRef(supplier=name, task_id=task_id)
    for _ in range(int(TIMEOUT / POLL_S)):
        try:
            supplier(broker, name).CheckTask(ref, timeout=TIMEOUT)
            return task_id
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                raise
        time.sleep(POLL_S)
    raise AssertionError(f"the broker never queued task {task_id}")


@pytest.fixture
def running_job(broker: BrokerProcess, request: pytest.FixtureRequest) -> Iterator[str]:
    """A job of the topology given by the test's parameter (default `local`), cancelled after
    the test so its unfinished uploads stop counting against the supplier's limits."""
    job_id = submit(broker, getattr(request, "param", "local"))
    first_task(broker, job_id)
    yield job_id
    cancel(broker, job_id)


def cancel(broker: BrokerProcess, job_id: str) -> None:
    """End a job unless it has ended already."""
    try:
        operator(broker).CancelJob(operator_pb2.JobRef(job_id=job_id), timeout=TIMEOUT)
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:
            raise


def header(
    job_id: str,
    task_id: str,
    data: bytes,
    *,
    kind: int = supplier_pb2.UPLOAD_KIND_SYNTHETIC,
    name: str = "synthetic.parquet",
    sha256: str | None = None,
) -> supplier_pb2.UploadHeader:
    return supplier_pb2.UploadHeader(
        supplier="hospital-a",
        job_id=job_id,
        task_id=task_id,
        name=name,
        kind=kind,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest() if sha256 is None else sha256,
    )


def chunks(upload_id: str, data: bytes, start: int = 0) -> Iterator[supplier_pb2.UploadChunk]:
    for offset in range(start, len(data), CHUNK):
        yield supplier_pb2.UploadChunk(
            upload_id=upload_id, offset=offset, data=data[offset : offset + CHUNK]
        )


def held_stream(
    upload_id: str, data: bytes, hold: threading.Event, *, sent: int
) -> Iterator[supplier_pb2.UploadChunk]:
    """Send the first `sent` bytes, keep the stream open until `hold` is set, send the rest."""
    yield from chunks(upload_id, data[:sent])
    hold.wait(TIMEOUT)
    yield from chunks(upload_id, data, sent)


def part_file(broker: BrokerProcess, upload_id: str) -> Path:
    return broker.state_dir / "uploads" / f"{upload_id}.part"


def wait_for_file(path: Path) -> None:
    """Block until the broker has created `path` (its stream holds the upload then)."""
    for _ in range(int(TIMEOUT / POLL_S)):
        if path.exists():
            return
        time.sleep(POLL_S)
    raise AssertionError(f"the broker never created {path}")


def stored(broker: BrokerProcess, sha256: str) -> Path:
    return broker.state_dir / "artifacts" / "sha256" / sha256[:2] / sha256


def refused(call: object, code: grpc.StatusCode) -> str:
    """Run `call`, assert it fails with `code`; its details."""
    assert callable(call)
    with pytest.raises(grpc.RpcError) as info:
        call()
    assert info.value.code() == code, info.value.details()
    return info.value.details() or ""


def test_a_new_object_under_an_upload_with_an_open_stream_is_aborted_and_the_hash_holds(
    broker: BrokerProcess, running_job: str
) -> None:
    """t2/t3: re-beginning an upload with another hash while its stream is open used to swap
    the partial file under the open stream, which then stored foreign bytes under its hash."""
    task_id = first_task(broker, running_job)
    genuine, forged = os.urandom(3 * CHUNK), os.urandom(3 * CHUNK)
    stub = supplier(broker)
    status = stub.BeginUpload(header(running_job, task_id, genuine), timeout=TIMEOUT)
    hold = threading.Event()
    stream = stub.Upload.future(
        held_stream(status.upload_id, genuine, hold, sent=len(genuine)), timeout=TIMEOUT
    )
    try:
        wait_for_file(part_file(broker, status.upload_id))
        details = refused(
            lambda: stub.BeginUpload(header(running_job, task_id, forged), timeout=TIMEOUT),
            grpc.StatusCode.ABORTED,
        )
        assert "still open" in details
    finally:
        hold.set()
    final = stream.result()
    sha256 = hashlib.sha256(genuine).hexdigest()
    assert final.complete and final.sha256 == sha256
    assert stored(broker, sha256).read_bytes() == genuine


def test_adopting_a_file_under_a_stored_objects_name_keeps_the_stored_object(
    tmp_path: Path,
) -> None:
    """A content-addressed name, once written, never changes: other bytes are discarded."""
    store = ArtifactStore(tmp_path / "artifacts", os.urandom(32))
    original = store.put_bytes(b"the audited candidate")
    impostor = tmp_path / "impostor.part"
    impostor.write_bytes(b"a swapped table")
    target = store.adopt(impostor, original.sha256, encrypted=False)
    assert target.read_bytes() == b"the audited candidate"
    assert not impostor.exists()


@pytest.mark.parametrize("running_job", ["central"], indirect=True)
def test_rows_uploaded_under_a_plaintext_kind_are_refused(
    broker: BrokerProcess, running_job: str
) -> None:
    """t7: raw rows sent as STATISTICS were stored in plaintext and never purged."""
    task_id = first_task(broker, running_job)
    rows = b"age,sex\n42,F\n"
    details = refused(
        lambda: supplier(broker).BeginUpload(
            header(running_job, task_id, rows, kind=supplier_pb2.UPLOAD_KIND_STATISTICS),
            timeout=TIMEOUT,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "UPLOAD_KIND_RAW" in details
    accepted = supplier(broker).BeginUpload(
        header(running_job, task_id, rows, kind=supplier_pb2.UPLOAD_KIND_RAW), timeout=TIMEOUT
    )
    assert accepted.upload_id


def test_uploads_for_tasks_that_are_not_the_callers_are_refused(
    broker: BrokerProcess, running_job: str
) -> None:
    """t11: another supplier's task, a made-up one and one of another job were all accepted."""
    data = b"x" * 10
    theirs = first_task(broker, running_job, "hospital-b")
    other_job = submit(broker, "local")
    elsewhere = first_task(broker, other_job)
    stub = supplier(broker)
    try:
        for task_id, code in [
            (theirs, grpc.StatusCode.PERMISSION_DENIED),
            ("../../x", grpc.StatusCode.NOT_FOUND),
            (elsewhere, grpc.StatusCode.INVALID_ARGUMENT),
        ]:
            refused(
                lambda t=task_id: stub.BeginUpload(header(running_job, t, data), timeout=TIMEOUT),
                code,
            )
    finally:
        cancel(broker, other_job)


def test_an_upload_name_that_reads_as_a_path_is_refused(
    broker: BrokerProcess, running_job: str
) -> None:
    task_id = first_task(broker, running_job)
    for name in ["../../../x", "/etc/passwd", "a\nb", "a\\..\\b", "n" * 300]:
        refused(
            lambda n=name: supplier(broker).BeginUpload(
                header(running_job, task_id, b"x", name=n), timeout=TIMEOUT
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )


def test_an_upload_for_a_task_already_reported_is_refused(
    broker: BrokerProcess, running_job: str
) -> None:
    task_id = first_task(broker, running_job)
    stub = supplier(broker)
    result = supplier_pb2.TaskResult(supplier="hospital-a", task_id=task_id, ok=True)
    assert stub.ReportResult(result, timeout=TIMEOUT).accepted
    details = refused(
        lambda: stub.BeginUpload(header(running_job, task_id, b"late"), timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "no more uploads" in details


def test_an_idle_partial_plaintext_upload_is_deleted_when_its_job_ends(
    broker: BrokerProcess, running_job: str
) -> None:
    """t7: a half-sent synthetic upload stayed on the broker's disk after its job ended."""
    task_id = first_task(broker, running_job)
    data = os.urandom(4 * CHUNK)
    stub = supplier(broker)
    status = stub.BeginUpload(header(running_job, task_id, data), timeout=TIMEOUT)
    held = stub.Upload(chunks(status.upload_id, data[: 2 * CHUNK]), timeout=TIMEOUT)
    assert (held.received, held.complete) == (2 * CHUNK, False)
    assert part_file(broker, status.upload_id).exists()
    operator(broker).CancelJob(operator_pb2.JobRef(job_id=running_job), timeout=TIMEOUT)
    assert not part_file(broker, status.upload_id).exists()
    refused(
        lambda: stub.BeginUpload(header(running_job, task_id, data), timeout=TIMEOUT),
        grpc.StatusCode.FAILED_PRECONDITION,
    )


def test_an_upload_streaming_when_its_job_ends_is_not_stored_and_its_bytes_are_deleted(
    broker: BrokerProcess, running_job: str
) -> None:
    task_id = first_task(broker, running_job)
    data = os.urandom(4 * CHUNK)
    stub = supplier(broker)
    status = stub.BeginUpload(header(running_job, task_id, data), timeout=TIMEOUT)
    hold = threading.Event()
    stream = stub.Upload.future(held_stream(status.upload_id, data, hold, sent=CHUNK))
    try:
        wait_for_file(part_file(broker, status.upload_id))
        operator(broker).CancelJob(operator_pb2.JobRef(job_id=running_job), timeout=TIMEOUT)
    finally:
        hold.set()
    with pytest.raises(grpc.RpcError) as info:
        stream.result(timeout=TIMEOUT)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    assert not stored(broker, hashlib.sha256(data).hexdigest()).exists()
    assert not part_file(broker, status.upload_id).exists()


@pytest.fixture
def open_tasks(broker: BrokerProcess) -> Iterator[list[tuple[str, str]]]:
    """(job, task) of MAX_OPEN_UPLOADS + 1 running jobs, one task each: a task takes one
    upload, so the per-supplier limits are reached over several tasks."""
    jobs = [submit(broker, "local", f"limits-{i}") for i in range(MAX_OPEN_UPLOADS + 1)]
    yield [(job_id, first_task(broker, job_id)) for job_id in jobs]
    for job_id in jobs:
        cancel(broker, job_id)


def test_unfinished_uploads_past_the_per_supplier_count_are_refused(
    broker: BrokerProcess, open_tasks: list[tuple[str, str]]
) -> None:
    """t7/t11: a supplier could open any number of uploads and leave them unfinished."""
    stub = supplier(broker)
    headers = [header(job_id, task_id, b"x" * 10) for job_id, task_id in open_tasks]
    for request in headers[:MAX_OPEN_UPLOADS]:
        stub.BeginUpload(request, timeout=TIMEOUT)
    details = refused(
        lambda: stub.BeginUpload(headers[MAX_OPEN_UPLOADS], timeout=TIMEOUT),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "limits.max_open_uploads" in details
    assert stub.BeginUpload(headers[0], timeout=TIMEOUT).received == 0  # resuming counts once


def test_unfinished_uploads_past_the_per_supplier_bytes_are_refused(
    broker: BrokerProcess, open_tasks: list[tuple[str, str]]
) -> None:
    (first_job, first_id), (second_job, second_id) = open_tasks[:2]
    stub = supplier(broker)
    half = MAX_OPEN_UPLOAD_BYTES // 2
    stub.BeginUpload(header(first_job, first_id, b"a" * half), timeout=TIMEOUT)
    details = refused(
        lambda: stub.BeginUpload(header(second_job, second_id, b"b" * (half + 1)), timeout=TIMEOUT),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "limits.max_open_upload_bytes" in details


def test_a_task_takes_one_upload_so_finished_objects_cannot_pile_up(
    broker: BrokerProcess, running_job: str
) -> None:
    """A supplier finished 40 uploads under different names through one pending task: the
    open-upload limits count only unfinished ones, and the disk filled."""
    task_id = first_task(broker, running_job)
    stub = supplier(broker)
    data = os.urandom(CHUNK)
    first = header(running_job, task_id, data, name="synthetic.parquet")
    status = stub.BeginUpload(first, timeout=TIMEOUT)
    assert stub.Upload(chunks(status.upload_id, data), timeout=TIMEOUT).complete
    assert stub.BeginUpload(first, timeout=TIMEOUT).complete  # the same name answers again
    other = os.urandom(CHUNK)
    details = refused(
        lambda: stub.BeginUpload(
            header(running_job, task_id, other, name="more.parquet"), timeout=TIMEOUT
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
    )
    assert "already has its upload 'synthetic.parquet'" in details
    assert not stored(broker, hashlib.sha256(other).hexdigest()).exists()


def test_a_statistics_upload_past_its_limit_is_refused(
    broker: BrokerProcess, running_job: str
) -> None:
    task_id = first_task(broker, running_job)
    document = header(
        running_job, task_id, b"s", kind=supplier_pb2.UPLOAD_KIND_STATISTICS, name="stats.fsa"
    )
    document.size = STATISTICS_LIMIT + 1
    details = refused(
        lambda: supplier(broker).BeginUpload(document, timeout=TIMEOUT),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    )
    assert "limits.max_statistics_bytes" in details


def test_a_reported_error_is_cut_short_and_cannot_forge_lines(
    broker: BrokerProcess, running_job: str
) -> None:
    """t11: 200 kB of error text with newlines went verbatim into the job reason, the audit
    log and CheckTask replies."""
    task_id = first_task(broker, running_job)
    stub = supplier(broker)
    error = "boom\n[audit] job.released rel_fake\r\x1b[2K" + "E" * 200_000
    result = supplier_pb2.TaskResult(supplier="hospital-a", task_id=task_id, ok=False, error=error)
    assert stub.ReportResult(result, timeout=TIMEOUT).accepted
    reason = stub.CheckTask(
        supplier_pb2.TaskRef(supplier="hospital-a", task_id=task_id), timeout=TIMEOUT
    ).reason
    assert reason.startswith("boom\\n[audit] job.released rel_fake\\r\\x1b[2K")
    assert len(reason) < 1100
    assert reason.isprintable()


def audit_entries(broker: BrokerProcess, action: str) -> list[dict]:
    shown = broker.run_cli("audit-log", "show", "--action", action, "--json")
    assert shown.returncode == 0, shown.stderr
    return [json.loads(line) for line in shown.stdout.splitlines()]


def test_a_refused_impersonation_logs_a_bounded_claimed_name(broker: BrokerProcess) -> None:
    """A claimed name of 8 MiB was logged whole (JSON-escaped, six times larger) on every
    refusal: a few calls grew the audit log by hundreds of MiB."""
    claimed = "\x01" * 200_000
    ref = supplier_pb2.TaskRef(supplier=claimed, task_id="any")
    details = refused(
        lambda: supplier(broker).CheckTask(ref, timeout=TIMEOUT),
        grpc.StatusCode.PERMISSION_DENIED,
    )
    assert len(details) < 1000
    logged = audit_entries(broker, "access.refused")[-1]
    assert logged["subject"] == "impersonation"
    assert len(json.dumps(logged)) < 2000
    assert "characters sent" in logged["detail"]["claimed"]


def test_an_oversized_task_result_is_refused_and_not_stored(
    broker: BrokerProcess, running_job: str
) -> None:
    """A 7 MB `uploads` list went raw into the audit log, and any result_json was stored and
    parsed again on every pass of the job runner."""
    task_id = first_task(broker, running_job)
    stub = supplier(broker)
    ref = supplier_pb2.TaskRef(supplier="hospital-a", task_id=task_id)
    for result in (
        supplier_pb2.TaskResult(
            supplier="hospital-a", task_id=task_id, ok=True, result_json=b"{" + b" " * 70_000 + b"}"
        ),
        supplier_pb2.TaskResult(
            supplier="hospital-a", task_id=task_id, ok=True, uploads=["\x02" * 1000] * 100
        ),
    ):
        details = refused(
            lambda result=result: stub.ReportResult(result, timeout=TIMEOUT),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert "a task result holds at most" in details
    assert stub.CheckTask(ref, timeout=TIMEOUT).open
    listed = supplier_pb2.TaskResult(
        supplier="hospital-a", task_id=task_id, ok=False, error="no", uploads=["a\nb" * 500]
    )
    assert stub.ReportResult(listed, timeout=TIMEOUT).accepted
    logged = [e for e in audit_entries(broker, "task.result") if e["subject"] == task_id]
    (upload,) = logged[0]["detail"]["uploads"]
    assert upload.startswith("a\\nb") and upload.isprintable() and len(upload) < 200
